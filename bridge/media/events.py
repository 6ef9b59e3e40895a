"""What a call's media reports to the call layer (small frozen records, past tense).

``repr`` of each is safe to log: no payloads, no keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sip_gateway.sdp import Codec

    from .webrtc_leg import DtlsFacts

__all__ = [
    "DigitRelayed",
    "MediaEvent",
    "MediaFailed",
    "MediaMode",
    "MediaWorkerLost",
    "WebRtcConnected",
    "codec_label",
    "deliver",
]

log = logging.getLogger("bridge.media")


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


def deliver(sink: Callable[[MediaEvent], None] | None, event: MediaEvent) -> None:
    """Hand ``event`` to the call's ``sink`` (if any); a failing sink is logged, never
    raised into media code."""
    if sink is None:
        return
    try:
        sink(event)
    except Exception:
        log.exception("media event handler failed on %r", event)


def codec_label(codec: Codec) -> str:
    """The record's codec name: ``opus/48000/2``, ``PCMU/8000``."""
    channels = f"/{codec.channels}" if codec.channels != 1 else ""
    return f"{codec.name}/{codec.clock_rate}{channels}"
