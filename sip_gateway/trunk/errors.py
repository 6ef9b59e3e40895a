"""Errors and outcome names of the trunk package.

Hierarchy::

    SipError (sip_gateway.sip.errors)
    +-- TrunkError               base of this package; carries ``status_code``
        +-- CallFailedError      an outbound call ended before it was answered (``failure``)
        +-- InvalidNumberError   a number cannot be written as E.164 (484)
        +-- TrunkUnavailableError  no trunk can take the call (503)

:class:`CallFailure` names why a call never got answered, :func:`classify_status` maps a
final SIP status to it (the table is the contract with the bridge), and :class:`EndReason`
names why an answered (or refused) call ended. Messages never carry secrets or SDP.
"""

from __future__ import annotations

from enum import StrEnum

from sip_gateway.sip.errors import SipError

__all__ = [
    "CallFailedError",
    "CallFailure",
    "EndReason",
    "InvalidNumberError",
    "TrunkError",
    "TrunkUnavailableError",
    "classify_status",
]


class CallFailure(StrEnum):
    """Why an outbound call was not answered."""

    BUSY = "busy"
    """486 Busy Here, 600 Busy Everywhere."""
    NO_ANSWER = "no-answer"
    """408 or 480 from the carrier, or our ring timeout."""
    REJECTED = "rejected"
    """403, 603 and every other 4xx-6xx without a more specific meaning (3xx too)."""
    NOT_FOUND = "not-found"
    """404 Not Found, 484 Address Incomplete, 604 Does Not Exist Anywhere."""
    UNREACHABLE = "unreachable"
    """No TLS connection, 503, or no final response in time."""
    ENCRYPTION_REFUSED = "encryption-refused"
    """488/606, or an SDP answer without an acceptable ``a=crypto`` line."""
    CANCELLED = "cancelled"
    """We cancelled the call (the caller hung up first)."""


_BY_STATUS = {
    404: CallFailure.NOT_FOUND,
    484: CallFailure.NOT_FOUND,
    604: CallFailure.NOT_FOUND,
    486: CallFailure.BUSY,
    600: CallFailure.BUSY,
    408: CallFailure.NO_ANSWER,
    480: CallFailure.NO_ANSWER,
    503: CallFailure.UNREACHABLE,
    488: CallFailure.ENCRYPTION_REFUSED,
    606: CallFailure.ENCRYPTION_REFUSED,
}


def classify_status(status_code: int) -> CallFailure:
    """The failure a final non-2xx response to our INVITE means.

    487 (Request Terminated) is only ever a reply to our CANCEL and maps to CANCELLED.
    """
    if status_code == 487:
        return CallFailure.CANCELLED
    return _BY_STATUS.get(status_code, CallFailure.REJECTED)


class EndReason(StrEnum):
    """Why a call leg ended (the ``end_reason`` of the call record uses these values)."""

    LOCAL_HANGUP = "local-hangup"
    """We sent BYE."""
    REMOTE_HANGUP = "remote-hangup"
    """The carrier sent BYE."""
    CANCELLED = "cancelled"
    """The call was cancelled before it was answered (by us or by the carrier)."""
    FAILED = "failed"
    """An outbound call got a final failure (see its :class:`CallFailure`)."""
    ENCRYPTION_REFUSED = "encryption-refused"
    """The peer's SDP had no acceptable crypto: refused with 488, or ACKed and hung up."""
    SESSION_EXPIRED = "session-expired"
    """No session refresh arrived in time (RFC 4028): we sent BYE."""
    REFRESH_FAILED = "refresh-failed"
    """Our session refresh got 408/481 or no answer: the dialog is gone."""
    ACK_TIMEOUT = "ack-timeout"
    """Our 2xx to an inbound INVITE was never ACKed (RFC 3261 13.3.1.4): we sent BYE."""
    REJECTED = "rejected"
    """An inbound call was refused (by routing, by policy or by an error)."""


class TrunkError(SipError):
    """Base class of the trunk package's errors.

    Attributes:
        status_code: the SIP status that best describes the problem to an upstream leg.
    """

    status_code = 500

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code


class CallFailedError(TrunkError):
    """An outbound call ended without being answered.

    Attributes:
        failure: the classified reason.
        status_code: the final status received, or the one our local condition stands for
            (408 time-out or ring timeout, 503 unreachable, 488 refused answer, 487 cancel).
        reason: the reason phrase received, or a short description.
    """

    def __init__(
        self, message: str, *, failure: CallFailure, status_code: int, reason: str = ""
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.failure = failure
        self.reason = reason


class InvalidNumberError(TrunkError):
    """A number cannot be written as E.164 (484 Address Incomplete)."""

    status_code = 484


class TrunkUnavailableError(TrunkError):
    """No configured trunk can carry the call (unknown name, or the trunk is down)."""

    status_code = 503
