"""Events the sans-IO SIP connection hands to its user (the transaction user, TU).

Theory of operation: :class:`~sip_gateway.sip.connection.SipConnection` turns bytes into
these events, one per ``next_event()`` call. They are small frozen records in the past
tense; none of them carries secrets beyond what the peer itself sent in the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import SipRequest, SipResponse

__all__ = [
    "AckReceived",
    "CancelReceived",
    "KeepAliveReceived",
    "MessageRejected",
    "RequestReceived",
    "ResponseReceived",
    "SipEvent",
    "TransactionTerminated",
    "TransactionTimedOut",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SipEvent:
    """Base class of every event of the SIP core."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived(SipEvent):
    """A new request arrived; answer it with ``send_response(transaction_id, ...)``."""

    transaction_id: str
    request: SipRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived(SipEvent):
    """An ACK for a 2xx arrived (RFC 3261 section 13.3.1.4: it is its own request)."""

    request: SipRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReceived(SipEvent):
    """A CANCEL matched a pending INVITE; the core already answered the CANCEL with 200.

    The TU should now answer the INVITE (``transaction_id``) with 487 Request Terminated.
    """

    transaction_id: str
    request: SipRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived(SipEvent):
    """A response matched one of our client transactions (or is a 2xx retransmission)."""

    transaction_id: str
    response: SipResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut(SipEvent):
    """A transaction gave up (Timer B, F, H or L); treat it as a 408 or a lost ACK."""

    transaction_id: str
    timer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated(SipEvent):
    """A transaction reached its Terminated state and was forgotten."""

    transaction_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRejected(SipEvent):
    """A message from the peer was invalid.

    When ``response_sent`` is true the core already answered it with ``status_code``.
    When ``fatal`` is true the byte stream cannot be resynchronised and the adapter must
    close the connection (after sending ``data_to_send()``).
    """

    status_code: int
    reason: str
    detail: str
    response_sent: bool
    fatal: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAliveReceived(SipEvent):
    """A CRLF keep-alive (RFC 5626 section 4.4.1) arrived; pings are answered by the core."""

    ping: bool
