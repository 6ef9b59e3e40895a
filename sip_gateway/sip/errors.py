"""Errors of the sans-IO SIP core.

Hierarchy::

    SipError                      base of every error raised by sip_gateway.sip
    +-- LocalProtocolError        we were asked to do something the protocol forbids
    +-- RemoteProtocolError       the peer sent something invalid; carries the SIP status to answer
        +-- MessageTooLargeError       framing refused an oversize message (513)

Every remote error carries its wire meaning: ``status_code`` is the response a UAS
should send (400, 505, 501, 416, 420, 483, 513 ...) and ``reason`` the phrase. The
message text never contains secrets (passwords, digest responses, keys).
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "MessageTooLargeError", "RemoteProtocolError", "SipError"]

_REASONS: dict[int, str] = {
    400: "Bad Request",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    483: "Too Many Hops",
    488: "Not Acceptable Here",
    501: "Not Implemented",
    505: "Version Not Supported",
    513: "Message Too Large",
}


class SipError(Exception):
    """Base class of the SIP core's errors."""


class LocalProtocolError(SipError):
    """Raised when the local side tries something the protocol forbids."""


class RemoteProtocolError(SipError):
    """Raised when the peer sent something invalid.

    Attributes:
        status_code: the SIP response a UAS should answer with.
        reason: the reason phrase for that response.
        headers: extra header fields for that response, e.g. ``("Unsupported", "foo")``
            for a 420 (RFC 3261 8.2.2.3).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason or _REASONS.get(status_code, "Bad Request")
        self.headers = headers


class MessageTooLargeError(RemoteProtocolError):
    """Raised when a message exceeds the configured size limit (513 Message Too Large)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=513)
