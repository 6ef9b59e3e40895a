"""Errors of the call layer and the mapping of failures to SIP statuses and end reasons.

Hierarchy::

    CallError                 base; carries ``sip_status``, ``reason`` and ``end_reason``
    ├── CallStateError        a transition the call table does not have (a bug)
    └── CallRefusedError      a call refused before it reached a trunk (policy, routing,
                              limits, no registered browser); the status goes to the caller

:func:`failure_status` classifies a gateway leg's failure (``CallFailure`` and the
carrier's status) as the status the browser gets and the call's :class:`EndReason`.
Messages never carry SDP, keys or credentials.
"""

from __future__ import annotations

from enum import StrEnum

from sip_gateway.trunk import CallFailure

__all__ = [
    "CallError",
    "CallRefusedError",
    "CallStateError",
    "EndReason",
    "failure_status",
]


class EndReason(StrEnum):
    """Why a bridged call ended (the record's ``end_reason``)."""

    CALLER_HANGUP = "caller-hangup"
    CALLEE_HANGUP = "callee-hangup"
    CANCELLED = "cancelled"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    REJECTED = "rejected"
    DECLINED = "declined"
    NOT_FOUND = "not-found"
    UNREACHABLE = "unreachable"
    ENCRYPTION_REFUSED = "encryption-refused"
    POLICY_REFUSED = "policy-refused"
    LIMIT_REACHED = "limit-reached"
    NO_BROWSER = "no-registered-browser"
    BROWSER_GONE = "browser-connection-lost"
    MEDIA_FAILED = "media-failed"
    MEDIA_TIMEOUT = "media-timeout"
    MEDIA_WORKER_LOST = "media-worker-lost"
    SESSION_EXPIRED = "session-expired"
    SHUTDOWN = "shutdown"
    FAILED = "failed"


class CallError(Exception):
    """Base of the call layer's errors.

    Attributes:
        sip_status: the status a caller gets for it.
        reason: the reason phrase to send with it (None: the standard one).
        end_reason: how the call's record names it.
    """

    sip_status = 500
    end_reason = EndReason.FAILED

    def __init__(
        self,
        message: str,
        *,
        sip_status: int | None = None,
        reason: str | None = None,
        end_reason: EndReason | None = None,
    ) -> None:
        super().__init__(message)
        if sip_status is not None:
            self.sip_status = sip_status
        if end_reason is not None:
            self.end_reason = end_reason
        self.reason = reason


class CallStateError(CallError):
    """The call received an input its transition table does not allow."""


class CallRefusedError(CallError):
    """A call refused by policy, routing, limits or the absence of a browser.

    ``refusal`` names the policy that refused it for the record's ``policy_refusals``
    and the metrics (``destination-blocked``, ``no-fingerprint``, ``plain-rtp``, ...);
    it defaults to the end reason.
    """

    sip_status = 403
    end_reason = EndReason.POLICY_REFUSED

    def __init__(
        self,
        message: str,
        *,
        sip_status: int | None = None,
        reason: str | None = None,
        end_reason: EndReason | None = None,
        refusal: str | None = None,
    ) -> None:
        super().__init__(message, sip_status=sip_status, reason=reason, end_reason=end_reason)
        self.refusal = refusal or str(self.end_reason)


_FAILURES: dict[CallFailure, tuple[int, EndReason]] = {
    CallFailure.BUSY: (486, EndReason.BUSY),
    CallFailure.NO_ANSWER: (480, EndReason.NO_ANSWER),
    CallFailure.REJECTED: (603, EndReason.REJECTED),
    CallFailure.NOT_FOUND: (404, EndReason.NOT_FOUND),
    CallFailure.UNREACHABLE: (503, EndReason.UNREACHABLE),
    CallFailure.ENCRYPTION_REFUSED: (488, EndReason.ENCRYPTION_REFUSED),
    CallFailure.CANCELLED: (487, EndReason.CANCELLED),
}
_PASS_THROUGH = frozenset(
    {403, 404, 408, 410, 480, 484, 485, 486, 488, 500, 502, 503, 504, 600, 603, 604, 606}
)


def failure_status(failure: CallFailure, status_code: int | None) -> tuple[int, EndReason]:
    """The status for the other side and the end reason of a leg that was not answered.

    The called side's own status passes through when it means the same to a browser
    (486, 404, 480, 488, 503 ...); anything else maps by the failure class. Digest
    challenges and proxy errors of the carrier (401, 407, 5xx we do not know) never
    reach the browser as such.
    """
    status, reason = _FAILURES.get(failure, (500, EndReason.FAILED))
    if failure is not CallFailure.CANCELLED and status_code in _PASS_THROUGH:
        status = status_code
    if status_code == 603:
        reason = EndReason.DECLINED
    return status, reason
