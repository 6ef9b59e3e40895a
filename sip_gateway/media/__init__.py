"""Sans-IO media for the gateway leg: RTP, RTCP, G.711, RFC 4733 DTMF, jitter buffer.

Bytes and numpy frames in, bytes and events out: no sockets, asyncio, clocks or
randomness (times are arguments; initial sequence numbers, timestamps and SSRCs come
from the caller's injected source). Every parser raises
:class:`MalformedPacketError` (a :class:`MediaError`) on hostile input, never
anything else; the session drops and counts such packets.

The core (per RTP stream)::

    codec = G711Codec("PCMU")
    packetizer = RtpPacketizer(ssrc, codec.payload_type, 8000, first_seq, first_ts)
    wire = packetizer.packet_bytes(codec.encode(pcm), samples=160)     # then SRTP protect

    packet = RtpPacket.parse(plain)                                    # after SRTP unprotect
    jitter.put(packet, now, audio=packet.payload_type != event_pt)
    digits = dtmf_receiver.feed(packet)
    frame = jitter.pop(now)        # each ptime tick: RtpPacket | Concealment | None

The session's per-packet path skips the records (a frozen dataclass per packet costs
about a microsecond): ``codec.encode_frame(pcm)``, ``parse_fields(plain)``,
``jitter.put_frame(seq, ts, frame, now)`` / ``put_non_audio`` / ``pop_frame(now)`` and
``dtmf_receiver.feed_payload(pt, ts, payload)`` do the same work field by field.
"""

from .dtmf import DTMF_DIGITS, DtmfDigit, DtmfReceiver, DtmfSender, EventPayload
from .errors import (
    LocalMediaError,
    MalformedPacketError,
    MediaError,
    RemoteMediaError,
    UnsupportedCodecError,
)
from .events import (
    AudioReceived,
    DtmfReceived,
    MediaEvent,
    MediaStats,
    PacketDropped,
    RtcpReceived,
    SourceLatched,
)
from .g711 import G711Codec, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .jitter import Concealment, JitterBuffer, JitterStats
from .reception import ReceptionStats, round_trip_time, rtcp_interval
from .rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpUnknown,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_middle32,
    ntp_timestamp,
    parse_rtcp,
)
from .rtp import RtpExtension, RtpPacket, RtpPacketizer, is_rtcp, parse_fields
from .session import RELATCH_AFTER, MediaSession, RandomSource
from .srtp import DROP_REASONS, SRTP_PROFILES, SrtpCounters, SrtpSession, new_sdes_key

__all__ = [
    "DROP_REASONS",
    "DTMF_DIGITS",
    "RELATCH_AFTER",
    "SRTP_PROFILES",
    "AudioReceived",
    "Bye",
    "Concealment",
    "DtmfDigit",
    "DtmfReceived",
    "DtmfReceiver",
    "DtmfSender",
    "EventPayload",
    "G711Codec",
    "JitterBuffer",
    "JitterStats",
    "LocalMediaError",
    "MalformedPacketError",
    "MediaError",
    "MediaEvent",
    "MediaSession",
    "MediaStats",
    "PacketDropped",
    "RandomSource",
    "ReceiverReport",
    "ReceptionStats",
    "RemoteMediaError",
    "ReportBlock",
    "RtcpPacket",
    "RtcpReceived",
    "RtcpUnknown",
    "RtpExtension",
    "RtpPacket",
    "RtpPacketizer",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "SourceLatched",
    "SrtpCounters",
    "SrtpSession",
    "UnsupportedCodecError",
    "alaw_decode",
    "alaw_encode",
    "build_rtcp",
    "is_rtcp",
    "new_sdes_key",
    "ntp_middle32",
    "ntp_timestamp",
    "parse_fields",
    "parse_rtcp",
    "round_trip_time",
    "rtcp_interval",
    "ulaw_decode",
    "ulaw_encode",
]
