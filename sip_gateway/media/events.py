"""Events and statistics of a media session (see :mod:`sip_gateway.media.session`).

Theory of operation: :class:`~sip_gateway.media.session.MediaSession` reports what
happened as small frozen events in the past tense, one base class
(:class:`MediaEvent`), read with ``next_event()``; and what it counted as a
:class:`MediaStats` snapshot. Neither carries key material; audio samples appear only
in :class:`AudioReceived`, whose ``repr`` shows their count, not the samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .rtcp import RtcpPacket

__all__ = [
    "AudioReceived",
    "DtmfReceived",
    "MediaEvent",
    "MediaStats",
    "PacketDropped",
    "RtcpReceived",
    "SourceLatched",
]

Address = tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaEvent:
    """Base class of the media session's events."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class AudioReceived(MediaEvent):
    """One ptime of playout from the jitter buffer (8 kHz, mono).

    Attributes:
        pcm: ``int16`` samples: decoded audio, a concealment frame or silence.
        concealed: True when no packet was there to play (repeat or silence).
    """

    pcm: npt.NDArray[np.int16] = field(repr=False)
    concealed: bool = False

    def __repr__(self) -> str:
        return f"AudioReceived(samples={len(self.pcm)}, concealed={self.concealed})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived(MediaEvent):
    """An RFC 4733 digit the peer sent (reported once per event).

    Attributes:
        digit: ``0``-``9``, ``*``, ``#``, ``A``-``D``.
        duration_ms: the event's duration as the sender reported it so far.
    """

    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceLatched(MediaEvent):
    """Symmetric RTP: media now goes to where the peer's authenticated RTP came from.

    Attributes:
        address: the peer's actual RTP source, now our RTP destination.
        ssrc: the peer's SSRC.
        previous: where we sent before (the SDP address, or the previous source).
    """

    address: Address
    ssrc: int
    previous: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketDropped(MediaEvent):
    """Datagrams were dropped (aggregated: at most one event per reason per second).

    Attributes:
        reason: ``auth_failed``, ``replayed``, ``malformed``, ``wrong_source``,
            ``wrong_ssrc``, ``unknown_payload_type`` ...
        count: drops for this reason since the previous event for it.
        total: drops for this reason since the session started.
    """

    reason: str
    count: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpReceived(MediaEvent):
    """An authenticated compound RTCP packet from the peer.

    Attributes:
        packets: its packets (SR/RR, SDES, BYE, others kept opaque).
        round_trip_time: seconds, when it carried a report block about our SR.
    """

    packets: tuple[RtcpPacket, ...]
    round_trip_time: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaStats:
    """A snapshot of a media session's counters.

    Attributes:
        packets_sent: RTP packets sent (audio, comfort silence and DTMF).
        octets_sent: RTP payload octets sent.
        silence_sent: comfort-silence frames among ``packets_sent``.
        dtmf_sent: digits sent.
        rtcp_sent: compound RTCP packets sent.
        datagrams_received: datagrams handed to the session, good or bad.
        packets_received: RTP packets accepted (authenticated, right source).
        octets_received: RTP payload octets accepted.
        rtcp_received: compound RTCP packets accepted.
        dtmf_received: digits received.
        dropped: drops by reason.
        lost: packets lost according to RTP sequence numbers (RFC 3550 A.3).
        jitter_ms: interarrival jitter estimate (RFC 3550 A.8).
        concealed: playout ticks without a packet to play.
        late: packets that arrived after their playout tick (jitter buffer).
        playout_delay_ms: the jitter buffer's current playout delay.
        audio_overflow: samples of local audio discarded because the send queue was full.
        round_trip_time: the last RTCP round-trip estimate, in seconds.
        remote_address: where RTP goes now.
        latched: whether ``remote_address`` comes from an authenticated packet.
        suite: the SRTP suite.
    """

    packets_sent: int = 0
    octets_sent: int = 0
    silence_sent: int = 0
    dtmf_sent: int = 0
    rtcp_sent: int = 0
    datagrams_received: int = 0
    packets_received: int = 0
    octets_received: int = 0
    rtcp_received: int = 0
    dtmf_received: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    lost: int = 0
    jitter_ms: float = 0.0
    concealed: int = 0
    late: int = 0
    playout_delay_ms: float = 0.0
    audio_overflow: int = 0
    round_trip_time: float | None = None
    remote_address: Address | None = None
    latched: bool = False
    suite: str = ""
