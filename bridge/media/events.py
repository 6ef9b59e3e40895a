"""What a call's media reports to the call layer (small frozen records, past tense).

``repr`` of each is safe to log: no payloads, no keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .webrtc_leg import DtlsFacts

__all__ = [
    "DigitRelayed",
    "MediaEvent",
    "MediaFailed",
    "MediaMode",
    "MediaWorkerLost",
    "WebRtcConnected",
]


class MediaMode(StrEnum):
    """How audio crosses the bridge."""

    TRANSCODE = "transcode"
    """Opus on the browser leg, G.711 on the gateway leg."""
    RELAY = "relay"
    """G.711 on both legs: no Opus, no resampling."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaEvent:
    """Base class of media events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcConnected(MediaEvent):
    """ICE and DTLS with the browser are up; SRTP flows."""

    facts: DtlsFacts


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaFailed(MediaEvent):
    """A media leg could not be set up or broke (``leg``: ``webrtc`` or ``gateway``)."""

    leg: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaWorkerLost(MediaFailed):
    """The media worker process hosting the call died (``leg`` is ``worker``): both
    legs' media is gone and the call ends with ``media-worker-lost``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitRelayed(MediaEvent):
    """A DTMF digit crossed the bridge.

    Attributes:
        digit: the digit.
        toward: the leg it was sent on (``gateway`` or ``webrtc``).
        via: how it arrived (``rtp``: RFC 4733; ``info``: SIP INFO).
    """

    digit: str
    toward: str
    via: str
