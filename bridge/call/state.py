"""The life of a bridged call as a table (STYLE 3): phases, inputs, transitions.

Theory of operation: a :class:`~bridge.call.call.Call` joins a WebRTC leg and a gateway
leg; whatever happens on either leg becomes one :class:`CallInput`, and :func:`advance`
looks the next :class:`CallPhase` up in :data:`TRANSITIONS`. A pair that is not in the
table is a bug (:class:`~bridge.call.errors.CallStateError`); "absorb" is an explicit
self-transition. Each transition is reported as a :class:`CallTransition`, the event that
logs, the security record and (next) the CDR are built from. Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from .errors import CallStateError

__all__ = ["TRANSITIONS", "CallInput", "CallPhase", "CallTransition", "advance"]


class CallPhase(StrEnum):
    """Where a bridged call is."""

    DIALING = "dialing"
    """Both legs exist; the called side has not answered or rung yet."""
    EARLY_MEDIA = "early-media"
    """The called side sent early media (183 with SDP): audio flows before the answer."""
    RINGING = "ringing"
    """The called side rings (180), no early media."""
    ANSWERED = "answered"
    """Both legs are up."""
    ENDING = "ending"
    """One side hung up or failed; the other leg is being ended."""
    ENDED = "ended"
    """Both legs are over."""


class CallInput(Enum):
    """What can happen to a bridged call."""

    RINGING = "ringing"
    EARLY_MEDIA = "early media"
    ANSWERED = "answered"
    HANGUP = "hang-up"
    FAILED = "failed"
    LEGS_ENDED = "legs ended"


P = CallPhase
I = CallInput  # noqa: E741 - the table reads better with a short name

TRANSITIONS: dict[tuple[CallPhase, CallInput], CallPhase] = {
    (P.DIALING, I.RINGING): P.RINGING,
    (P.DIALING, I.EARLY_MEDIA): P.EARLY_MEDIA,
    (P.DIALING, I.ANSWERED): P.ANSWERED,
    (P.DIALING, I.HANGUP): P.ENDING,
    (P.DIALING, I.FAILED): P.ENDING,
    (P.RINGING, I.RINGING): P.RINGING,
    (P.RINGING, I.EARLY_MEDIA): P.EARLY_MEDIA,
    (P.RINGING, I.ANSWERED): P.ANSWERED,
    (P.RINGING, I.HANGUP): P.ENDING,
    (P.RINGING, I.FAILED): P.ENDING,
    (P.EARLY_MEDIA, I.RINGING): P.EARLY_MEDIA,  # a 180 after the 183 keeps the media
    (P.EARLY_MEDIA, I.EARLY_MEDIA): P.EARLY_MEDIA,
    (P.EARLY_MEDIA, I.ANSWERED): P.ANSWERED,
    (P.EARLY_MEDIA, I.HANGUP): P.ENDING,
    (P.EARLY_MEDIA, I.FAILED): P.ENDING,
    (P.ANSWERED, I.ANSWERED): P.ANSWERED,  # the other leg confirming
    (P.ANSWERED, I.HANGUP): P.ENDING,
    (P.ANSWERED, I.FAILED): P.ENDING,
    (P.ENDING, I.RINGING): P.ENDING,
    (P.ENDING, I.EARLY_MEDIA): P.ENDING,
    (P.ENDING, I.ANSWERED): P.ENDING,  # an answer racing the hang-up is hung up too
    (P.ENDING, I.HANGUP): P.ENDING,
    (P.ENDING, I.FAILED): P.ENDING,
    (P.ENDING, I.LEGS_ENDED): P.ENDED,
    (P.ENDED, I.HANGUP): P.ENDED,
    (P.ENDED, I.FAILED): P.ENDED,
    (P.ENDED, I.LEGS_ENDED): P.ENDED,
}


def advance(phase: CallPhase, event: CallInput) -> CallPhase:
    """The phase after ``event``.

    Raises:
        CallStateError: the table has no such transition.
    """
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise CallStateError(f"a call cannot take {event.value!r} while {phase}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransition:
    """One step of a call, for logs, the security record and the CDR.

    Attributes:
        call_id: the bridge's call id.
        old: the phase before.
        new: the phase after.
        cause: what caused it (``trunk 180``, ``browser BYE``, ``busy`` ...).
        at: wall-clock time (Unix seconds).
    """

    call_id: str
    old: CallPhase
    new: CallPhase
    cause: str
    at: float
