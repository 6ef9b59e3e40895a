"""The life of one call leg on a trunk: states, the transition table, and its events.

Theory of operation: both directions share one small machine, named after RFC 3261's
INVITE dialog phases. An outbound leg starts in CALLING when its INVITE is sent, an inbound
one when the carrier's INVITE is accepted. A transition that is not in :data:`TRANSITIONS`
is a bug and raises :class:`~sip_gateway.sip.errors.LocalProtocolError`; "absorb" is an
explicit self-transition (a 2xx retransmission, a second hang-up).

What a leg reports to its owner are :class:`CallEvent` records (frozen, past tense): the
only way signaling tells the application about progress, media and the end of a call.
The media side is reached through the :class:`MediaPort` protocol only: the leg hands it
each negotiated :class:`~sip_gateway.sdp.MediaConfig` and closes it when the call ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Protocol, runtime_checkable

from sip_gateway.sdp import IceParameters, MediaConfig
from sip_gateway.sip.errors import LocalProtocolError

from .errors import CallFailure, EndReason

__all__ = [
    "TRANSITIONS",
    "CallAnswered",
    "CallEnded",
    "CallEvent",
    "CallInput",
    "CallProceeding",
    "CallRinging",
    "CallState",
    "EarlyMediaStarted",
    "IcePort",
    "MediaPort",
    "MediaUpdated",
    "SessionRefreshed",
    "advance",
]


class CallState(StrEnum):
    """Where a call leg is."""

    CALLING = "calling"
    """INVITE sent (outbound) or accepted (inbound); no provisional response yet."""
    PROCEEDING = "proceeding"
    """A provisional response was sent or received (ringing, early media)."""
    CANCELLING = "cancelling"
    """We asked to end the call before it was answered (CANCEL sent or pending)."""
    CONFIRMED = "confirmed"
    """The call was answered: the dialog is confirmed."""
    TERMINATING = "terminating"
    """Our BYE is on its way."""
    TERMINATED = "terminated"
    """The leg is over; :class:`CallEnded` was reported."""


class CallInput(Enum):
    """What can happen to a call leg."""

    PROVISIONAL = "1xx"
    ANSWERED = "2xx"
    FAILED = "final failure"
    CANCEL = "cancel"
    HANGUP = "hang up (BYE sent)"
    ENDED = "ended"


S = CallState
I = CallInput  # noqa: E741 - the table reads better with a short name

TRANSITIONS: dict[tuple[CallState, CallInput], CallState] = {
    (S.CALLING, I.PROVISIONAL): S.PROCEEDING,
    (S.CALLING, I.ANSWERED): S.CONFIRMED,
    (S.CALLING, I.FAILED): S.TERMINATED,
    (S.CALLING, I.CANCEL): S.CANCELLING,
    (S.PROCEEDING, I.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, I.ANSWERED): S.CONFIRMED,
    (S.PROCEEDING, I.FAILED): S.TERMINATED,
    (S.PROCEEDING, I.CANCEL): S.CANCELLING,
    (S.CANCELLING, I.PROVISIONAL): S.CANCELLING,
    (S.CANCELLING, I.CANCEL): S.CANCELLING,
    (S.CANCELLING, I.FAILED): S.TERMINATED,
    (S.CANCELLING, I.ANSWERED): S.TERMINATING,  # a 2xx raced our CANCEL: ACK, then BYE
    (S.CANCELLING, I.ENDED): S.TERMINATED,
    (S.CONFIRMED, I.ANSWERED): S.CONFIRMED,  # 2xx retransmission
    (S.CONFIRMED, I.HANGUP): S.TERMINATING,
    (S.CONFIRMED, I.ENDED): S.TERMINATED,
    (S.TERMINATING, I.ANSWERED): S.TERMINATING,
    (S.TERMINATING, I.HANGUP): S.TERMINATING,
    (S.TERMINATING, I.CANCEL): S.TERMINATING,
    (S.TERMINATING, I.ENDED): S.TERMINATED,
    (S.TERMINATED, I.ANSWERED): S.TERMINATED,
    (S.TERMINATED, I.CANCEL): S.TERMINATED,
    (S.TERMINATED, I.HANGUP): S.TERMINATED,
    (S.TERMINATED, I.ENDED): S.TERMINATED,
    (S.TERMINATED, I.FAILED): S.TERMINATED,
}


def advance(state: CallState, event: CallInput) -> CallState:
    """The state after ``event``.

    Raises:
        LocalProtocolError: the table has no such transition.
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(f"call leg cannot take {event.value} in state {state}") from None


@runtime_checkable
class IcePort(Protocol):
    """A media port that runs ICE (the WebRTC leg): its parameters go into our SDP."""

    @property
    def local_ice(self) -> IceParameters:
        """Our ICE credentials and candidates."""


class MediaPort(Protocol):
    """The media side of one call leg, as signaling sees it.

    The media helper's UDP adapter implements it; tests use a recorder.
    """

    @property
    def local_address(self) -> tuple[str, int]:
        """Our RTP address and port, announced in our SDP."""

    def apply(self, config: MediaConfig) -> None:
        """Start or update media with a negotiated configuration (early media, answer,
        re-INVITE). Called again only when the configuration changed."""

    def close(self) -> None:
        """Stop media and drop the keys; called once when the leg ends (idempotent)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent:
    """Base class of what a call leg reports."""

    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallProceeding(CallEvent):
    """The carrier took the INVITE (100 Trying or another 1xx without ringing)."""

    status_code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRinging(CallEvent):
    """180/181/182/183 received (outbound) or 180 sent (inbound)."""

    status_code: int
    early_media: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyMediaStarted(CallEvent):
    """A 183 with an acceptable SDP answer: media was applied before the answer."""

    media: MediaConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(CallEvent):
    """The call was answered with this negotiated media."""

    media: MediaConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaUpdated(CallEvent):
    """A re-INVITE or UPDATE changed the media (same keys unless the crypto line changed)."""

    media: MediaConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRefreshed(CallEvent):
    """A session refresh (RFC 4028) succeeded, sent by us or received."""

    interval: int | None
    by_us: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(CallEvent):
    """The leg is over.

    Attributes:
        reason: why it ended.
        failure: for an outbound call that was never answered, the classified failure.
        status_code: the final SIP status that ended it, when there was one.
        policy: the SDP policy that refused the peer's offer or answer (``plain-rtp``,
            ``no-crypto``, ... from :class:`~sip_gateway.sdp.SdpError`), when one did.
    """

    reason: EndReason
    failure: CallFailure | None = None
    status_code: int | None = None
    policy: str | None = None
