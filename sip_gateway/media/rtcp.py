"""RTCP (RFC 3550 section 6): compound packets and reception statistics.

Theory of operation: :func:`parse_rtcp` splits a compound datagram (after SRTCP
unprotect) into typed packets, one parser per packet type in a table: sender and
receiver reports, source description (CNAME and the other SDES items), BYE, and an
opaque :class:`RtcpUnknown` for everything else (APP, feedback, XR), so a peer's
extensions are skipped rather than refused. The RFC 3550 appendix A.2 validity checks
apply to the compound as a whole: version 2 everywhere, lengths that add up to the
datagram exactly, padding only on the last packet. Anything else raises
:class:`~sip_gateway.media.errors.MalformedPacketError`.

The statistics that fill the report blocks live in
:mod:`sip_gateway.media.reception`. No I/O, no clock: NTP timestamps are built from
the wall-clock seconds the caller provides.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from .errors import LocalMediaError, MalformedPacketError

__all__ = [
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "SDES_CNAME",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpUnknown",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "build_rtcp",
    "ntp_middle32",
    "ntp_timestamp",
    "parse_rtcp",
]

RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203
SDES_CNAME: Final = 1

NTP_UNIX_OFFSET: Final = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

_HEADER: Final = struct.Struct("!BBH")
_SSRC: Final = struct.Struct("!I")
_SENDER_INFO: Final = struct.Struct("!IQIII")
_BLOCK: Final = struct.Struct("!IIIIII")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """One reception report block (RFC 3550 section 6.4.1).

    Attributes:
        ssrc: the source this block reports on.
        fraction_lost: packets lost since the previous report, as a fraction of 256.
        cumulative_lost: packets lost since the start (signed 24 bits; duplicates can
            make it negative).
        highest_sequence: the extended highest sequence number received.
        jitter: interarrival jitter, in timestamp units.
        last_sr: LSR, the middle 32 bits of the last SR's NTP timestamp (0: none yet).
        delay_since_last_sr: DLSR, in units of 1/65536 s.
    """

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    last_sr: int = 0
    delay_since_last_sr: int = 0

    def _pack(self) -> bytes:
        lost = (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF)
        if not 0 <= self.fraction_lost <= 255 or not -(2**23) <= self.cumulative_lost < 2**23:
            raise LocalMediaError("report block loss fields out of range")
        return _BLOCK.pack(
            self.ssrc,
            lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )

    @classmethod
    def _unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        return cls(
            ssrc=ssrc,
            fraction_lost=lost >> 24,
            cumulative_lost=cumulative - 2**24 if cumulative & 0x800000 else cumulative,
            highest_sequence=highest,
            jitter=jitter,
            last_sr=lsr,
            delay_since_last_sr=dlsr,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpPacket:
    """Base class of the packets in a compound RTCP datagram."""

    def serialize(self) -> bytes:
        """The packet on the wire (no padding).

        Raises:
            LocalMediaError: a field is out of range.
        """
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport(RtcpPacket):
    """SR (PT 200): sender info and up to 31 report blocks.

    Attributes:
        ssrc: the sender.
        ntp_timestamp: 64-bit NTP wall-clock time of the report (see :func:`ntp_timestamp`).
        rtp_timestamp: the same instant in the sender's RTP timestamp units.
        packet_count: RTP packets sent so far.
        octet_count: RTP payload octets sent so far.
        reports: reception report blocks.
        extension: profile-specific extension bytes (opaque, a multiple of 4).
    """

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def serialize(self) -> bytes:
        info = _pack_or_raise(
            _SENDER_INFO,
            self.ssrc,
            self.ntp_timestamp,
            self.rtp_timestamp,
            self.packet_count,
            self.octet_count,
        )
        return _packet(RTCP_SR, len(self.reports), info + _pack_blocks(self) + self.extension)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport(RtcpPacket):
    """RR (PT 201): up to 31 report blocks from a participant that did not send."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def serialize(self) -> bytes:
        body = _pack_or_raise(_SSRC, self.ssrc) + _pack_blocks(self) + self.extension
        return _packet(RTCP_RR, len(self.reports), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """One SDES chunk: a source and its items.

    Attributes:
        ssrc: the source described.
        items: ``(item type, text)`` pairs; type 1 is CNAME (text decoded as UTF-8,
            undecodable bytes replaced).
    """

    ssrc: int
    items: tuple[tuple[int, str], ...] = ()

    @property
    def cname(self) -> str | None:
        """The CNAME item, if present."""
        return next((text for kind, text in self.items if kind == SDES_CNAME), None)

    def _pack(self) -> bytes:
        parts = [_pack_or_raise(_SSRC, self.ssrc)]
        for kind, text in self.items:
            raw = text.encode("utf-8")
            if not 1 <= kind <= 255 or len(raw) > 255:
                raise LocalMediaError("SDES item type or length out of range")
            parts.append(bytes((kind, len(raw))) + raw)
        size = sum(len(p) for p in parts)
        parts.append(bytes(4 - size % 4))  # END item plus padding to a word
        return b"".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription(RtcpPacket):
    """SDES (PT 202): up to 31 chunks."""

    chunks: tuple[SdesChunk, ...] = ()

    def serialize(self) -> bytes:
        if len(self.chunks) > 31:
            raise LocalMediaError("more than 31 SDES chunks")
        body = b"".join(chunk._pack() for chunk in self.chunks)
        return _packet(RTCP_SDES, len(self.chunks), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(RtcpPacket):
    """BYE (PT 203): the sources leave, with an optional reason."""

    sources: tuple[int, ...] = ()
    reason: str | None = None

    def serialize(self) -> bytes:
        if len(self.sources) > 31:
            raise LocalMediaError("more than 31 sources in a BYE")
        body = b"".join(_pack_or_raise(_SSRC, s) for s in self.sources)
        if self.reason is not None:
            raw = self.reason.encode("utf-8")
            if len(raw) > 255:
                raise LocalMediaError("BYE reason longer than 255 bytes")
            body += bytes((len(raw),)) + raw
            body += bytes(-len(body) % 4)
        return _packet(RTCP_BYE, len(self.sources), body)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpUnknown(RtcpPacket):
    """Any other packet type (APP, RTPFB, PSFB, XR ...), kept opaque.

    Attributes:
        packet_type: the PT byte.
        count: the 5-bit count/subtype field.
        body: the bytes after the 4-byte header, without padding.
    """

    packet_type: int
    count: int = 0
    body: bytes = b""

    def serialize(self) -> bytes:
        if not 0 <= self.count <= 31 or not 0 <= self.packet_type <= 255:
            raise LocalMediaError("RTCP count or packet type out of range")
        return _packet(self.packet_type, self.count, self.body + bytes(-len(self.body) % 4))


def _pack_or_raise(layout: struct.Struct, *values: int) -> bytes:
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise LocalMediaError(f"RTCP field out of range: {exc}") from None


def _pack_blocks(report: SenderReport | ReceiverReport) -> bytes:
    if len(report.reports) > 31:
        raise LocalMediaError("more than 31 report blocks")
    if len(report.extension) % 4:
        raise LocalMediaError("report extension is not a multiple of 4 bytes")
    try:
        return b"".join(block._pack() for block in report.reports)
    except struct.error as exc:
        raise LocalMediaError(f"report block field out of range: {exc}") from None


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4 or len(body) > 4 * 0xFFFF:
        raise LocalMediaError("RTCP body is not a whole number of words")
    return _HEADER.pack(0x80 | count, packet_type, len(body) // 4) + body


def build_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialize packets into one compound datagram (RFC 3550 6.1: put SR/RR first).

    Raises:
        LocalMediaError: a field is out of range.
    """
    return b"".join(packet.serialize() for packet in packets)


# --- parsing -----------------------------------------------------------------------------


def _parse_sr(count: int, body: bytes) -> RtcpPacket:
    end = 24 + 24 * count
    if len(body) < end:
        raise MalformedPacketError("RTCP SR shorter than its report blocks")
    _check_extension(body, end)
    ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
    blocks = tuple(ReportBlock._unpack(body, 24 + 24 * i) for i in range(count))
    return SenderReport(
        ssrc=ssrc,
        ntp_timestamp=ntp,
        rtp_timestamp=rtp_ts,
        packet_count=packets,
        octet_count=octets,
        reports=blocks,
        extension=body[end:],
    )


def _parse_rr(count: int, body: bytes) -> RtcpPacket:
    end = 4 + 24 * count
    if len(body) < end:
        raise MalformedPacketError("RTCP RR shorter than its report blocks")
    _check_extension(body, end)
    blocks = tuple(ReportBlock._unpack(body, 4 + 24 * i) for i in range(count))
    return ReceiverReport(ssrc=_SSRC.unpack_from(body)[0], reports=blocks, extension=body[end:])


def _check_extension(body: bytes, end: int) -> None:
    """A report's profile-specific extension is whole 32-bit words (RFC 3550 6.4.1).

    Only padding that is not a multiple of 4 can leave it ragged.
    """
    if (len(body) - end) % 4:
        raise MalformedPacketError("RTCP report extension is not a whole number of words")


def _parse_sdes(count: int, body: bytes) -> RtcpPacket:
    chunks: list[SdesChunk] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise MalformedPacketError("RTCP SDES chunk exceeds the packet")
        ssrc = _SSRC.unpack_from(body, offset)[0]
        offset += 4
        items: list[tuple[int, str]] = []
        while True:
            if offset >= len(body):
                raise MalformedPacketError("RTCP SDES chunk without END item")
            kind = body[offset]
            if kind == 0:
                offset += 4 - offset % 4  # END, then padding to the next word
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise MalformedPacketError("RTCP SDES item exceeds the packet")
            size = body[offset + 1]
            items.append((kind, body[offset + 2 : offset + 2 + size].decode("utf-8", "replace")))
            offset += 2 + size
        chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
    if offset > len(body):
        raise MalformedPacketError("RTCP SDES padding exceeds the packet")
    return SourceDescription(chunks=tuple(chunks))


def _parse_bye(count: int, body: bytes) -> RtcpPacket:
    end = 4 * count
    if len(body) < end:
        raise MalformedPacketError("RTCP BYE shorter than its source list")
    sources = tuple(_SSRC.unpack_from(body, 4 * i)[0] for i in range(count))
    reason = None
    if len(body) > end:
        size = body[end]
        if end + 1 + size > len(body):
            raise MalformedPacketError("RTCP BYE reason exceeds the packet")
        reason = body[end + 1 : end + 1 + size].decode("utf-8", "replace")
    return Bye(sources=sources, reason=reason)


_PARSERS: Final[dict[int, Callable[[int, bytes], RtcpPacket]]] = {
    RTCP_SR: _parse_sr,
    RTCP_RR: _parse_rr,
    RTCP_SDES: _parse_sdes,
    RTCP_BYE: _parse_bye,
}


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram into its packets, in order.

    Raises:
        MalformedPacketError: the datagram fails the RFC 3550 A.2 checks or a packet
            is shorter than its type requires.
    """
    raw = bytes(data)
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(raw):
        if len(raw) - offset < 4:
            raise MalformedPacketError("RTCP packet shorter than its header")
        first, packet_type, words = _HEADER.unpack_from(raw, offset)
        if first >> 6 != 2:
            raise MalformedPacketError("RTCP version is not 2")
        end = offset + 4 + 4 * words
        if end > len(raw):
            raise MalformedPacketError("RTCP length exceeds the datagram")
        body_end = end
        if first & 0x20:
            padding = raw[end - 1] if words else 0
            if end != len(raw) or padding == 0 or padding > 4 * words:
                raise MalformedPacketError("RTCP padding is not on the last packet or too long")
            body_end -= padding
        body, count = raw[offset + 4 : body_end], first & 0x1F
        parser = _PARSERS.get(packet_type)
        if parser is None:
            packets.append(RtcpUnknown(packet_type=packet_type, count=count, body=body))
        else:
            packets.append(parser(count, body))
        offset = end
    if not packets:
        raise MalformedPacketError("empty RTCP datagram")
    return packets


# --- time ----------------------------------------------------------------------------------


def ntp_timestamp(unix_seconds: float) -> int:
    """The 64-bit NTP timestamp (RFC 3550 4) of a wall-clock time in Unix seconds."""
    seconds = math.floor(unix_seconds)
    fraction = round((unix_seconds - seconds) * 2**32)
    return (((seconds + NTP_UNIX_OFFSET) << 32) + fraction) & 0xFFFFFFFFFFFFFFFF


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR of a report block."""
    return (ntp >> 16) & 0xFFFFFFFF
