"""Errors of the asyncio SIP transports.

Hierarchy::

    SipError (sip_gateway.sip.errors)
    +-- SipTransportError             a connection failed a request (503, RFC 3261 8.1.3.1)
        +-- SipConnectError           no connection could be made (TCP connect or TLS handshake)
        +-- SipConnectionClosedError  the connection closed before the final response arrived
        +-- SipRequestTimeoutError    no final response in time (408): our timeout or Timer B/F

Every error carries ``status_code``: the response a transaction user should act on, as if
the peer had sent it. Messages name the peer address, never message bodies or secrets.
"""

from __future__ import annotations

from sip_gateway.sip.errors import SipError

__all__ = [
    "SipConnectError",
    "SipConnectionClosedError",
    "SipRequestTimeoutError",
    "SipTransportError",
]


class SipTransportError(SipError):
    """Raised when a SIP connection fails a request.

    Attributes:
        status_code: 503 (RFC 3261 8.1.3.1 treats a transport error as 503).
    """

    status_code = 503


class SipConnectError(SipTransportError):
    """Raised when a TLS connection to a peer cannot be made (refused, unreachable, handshake)."""


class SipConnectionClosedError(SipTransportError):
    """Raised when the connection closed while a request was waiting for its response."""


class SipRequestTimeoutError(SipTransportError, TimeoutError):
    """Raised when a request got no final response in time.

    Attributes:
        status_code: 408 (RFC 3261 8.1.3.1: a transaction time-out is a 408).
    """

    status_code = 408
