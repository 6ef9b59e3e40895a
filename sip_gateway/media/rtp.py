"""RTP packets (RFC 3550 section 5): parse, serialize, packetize.

Theory of operation: :class:`RtpPacket` is the one per-packet object of the media
path, a frozen record parsed with :mod:`struct` straight from the datagram (after SRTP
unprotect) and serialized back the same way. :meth:`RtpPacket.parse` checks only what
the header itself promises (version 2, CSRC list, header extension and padding inside
the datagram) and raises :class:`~sip_gateway.media.errors.MalformedPacketError` for
anything else: a hostile datagram is dropped and counted, never crashes the leg.
Stream-level checks (expected SSRC and payload types, sequence validation) belong to
the session and the jitter buffer.

:func:`is_rtcp` demultiplexes RTP and RTCP on one port (rtcp-mux, RFC 5761 section 4)
by the second byte. :class:`RtpPacketizer` owns a sending stream's SSRC, sequence
number and timestamp (both wrap modulo 2**16 and 2**32) and the SR sender counters.

No I/O, no clock, no randomness: the initial sequence number and timestamp are
arguments (RFC 3550 wants them random; the caller draws them from its injected source).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

from .errors import LocalMediaError, MalformedPacketError

__all__ = ["RTP_VERSION", "RtpExtension", "RtpPacket", "RtpPacketizer", "is_rtcp", "parse_fields"]

RTP_VERSION: Final = 2
_HEADER: Final = struct.Struct("!BBHII")
_AFTER_FIRST: Final = struct.Struct("!BHII")  # the header without its first byte
_EXTENSION_HEADER: Final = struct.Struct("!HH")
_CSRC: Final = tuple(struct.Struct(f"!{n}I") for n in range(16))


class RtpExtension(NamedTuple):
    """The RFC 3550 section 5.3.1 header extension, kept opaque.

    Attributes:
        profile: the 16 "defined by profile" bits (0xBEDE for RFC 8285 one-byte headers).
        data: the extension body, a multiple of 4 bytes.
    """

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet.

    Attributes:
        payload_type: 0..127.
        sequence: 0..65535.
        timestamp: 0..2**32-1, in the payload's clock rate.
        ssrc: synchronization source.
        payload: the payload, without padding.
        marker: the M bit (first packet of a talkspurt; first packet of an RFC 4733 event).
        csrc: contributing sources (at most 15).
        extension: the header extension, if the X bit is set.
        padding: the number of padding bytes (0: P bit clear), 1..255 including the count
            byte itself; serialization writes zero bytes followed by the count.
        version: always 2 for parsed packets.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0
    version: int = RTP_VERSION

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one RTP packet (a whole datagram).

        Raises:
            MalformedPacketError: the bytes are not a valid RTP packet.
        """
        size = len(data)
        if size < 12:
            raise MalformedPacketError("RTP packet shorter than its 12-byte header")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise MalformedPacketError("RTP version is not 2")
        if first & 0x3F == 0:  # the common case: no padding, extension or CSRC
            return cls(
                payload_type=second & 0x7F,
                sequence=sequence,
                timestamp=timestamp,
                ssrc=ssrc,
                payload=bytes(data[12:]),
                marker=second > 0x7F,
            )
        offset, csrc, extension = _parse_optional_header(data, first, size)
        end, padding = size, 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0 or offset + padding > size:
                raise MalformedPacketError("RTP padding count is zero or exceeds the packet")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=second > 0x7F,
            csrc=csrc,
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """The packet as it goes on the wire (before SRTP protect).

        Raises:
            LocalMediaError: a field is out of range (payload type, CSRC count,
                extension length, padding).
        """
        first = RTP_VERSION << 6 if self.version == RTP_VERSION else 0x100
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        first |= len(self.csrc)
        second = self.payload_type | 0x80 if self.marker else self.payload_type
        try:
            if first == RTP_VERSION << 6 and second < 0x100 and self.payload_type < 0x80:
                header = _HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)
                return header + self.payload
            self._check_ranges()
            header = _HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)
            parts = [header, _CSRC[len(self.csrc)].pack(*self.csrc)]
            if self.extension is not None:
                profile, body = self.extension
                parts.append(_EXTENSION_HEADER.pack(profile, len(body) // 4))
                parts.append(body)
        except struct.error as exc:
            raise LocalMediaError(f"RTP header field out of range: {exc}") from None
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)

    def _check_ranges(self) -> None:
        if self.version != RTP_VERSION:
            raise LocalMediaError("only RTP version 2 is serialized")
        if not 0 <= self.payload_type <= 127:
            raise LocalMediaError(f"RTP payload type out of range: {self.payload_type}")
        if len(self.csrc) > 15:
            raise LocalMediaError("more than 15 CSRC identifiers")
        if not 0 <= self.padding <= 255:
            raise LocalMediaError(f"RTP padding out of range: {self.padding}")
        if self.extension is not None:
            size = len(self.extension.data)
            if size % 4 or size > 4 * 0xFFFF:
                raise LocalMediaError("RTP header extension is not a multiple of 4 bytes")


def _parse_optional_header(
    data: bytes | bytearray | memoryview, first: int, size: int
) -> tuple[int, tuple[int, ...], RtpExtension | None]:
    """Parse the CSRC list and the header extension; return the payload offset."""
    count = first & 0x0F
    offset = 12 + 4 * count
    if offset > size:
        raise MalformedPacketError("RTP CSRC list exceeds the packet")
    csrc: tuple[int, ...] = _CSRC[count].unpack_from(data, 12) if count else ()
    extension = None
    if first & 0x10:
        if offset + 4 > size:
            raise MalformedPacketError("RTP header extension exceeds the packet")
        profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
        start, offset = offset + 4, offset + 4 + 4 * words
        if offset > size:
            raise MalformedPacketError("RTP header extension exceeds the packet")
        extension = RtpExtension(profile, bytes(data[start:offset]))
    return offset, csrc, extension


def parse_fields(data: bytes) -> tuple[int, int, int, int, bytes]:
    """Parse one RTP packet into (payload type, sequence, timestamp, SSRC, payload).

    The per-packet path of a receiver: the same checks as :meth:`RtpPacket.parse`
    without building the record (a frozen dataclass costs about a microsecond).

    Raises:
        MalformedPacketError: the bytes are not a valid RTP packet.
    """
    if data[:1] == b"\x80" and len(data) >= 12:  # V=2, no padding, extension or CSRC
        second, sequence, timestamp, ssrc = _AFTER_FIRST.unpack_from(data, 1)
        return second & 0x7F, sequence, timestamp, ssrc, data[12:]
    packet = RtpPacket.parse(data)
    return packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc, packet.payload


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """Whether a datagram on a multiplexed port is RTCP (RFC 5761 section 4).

    RTCP packet types 192..223 sit where RTP would have marker + payload types 64..95,
    which RFC 5761 forbids for RTP on a muxed port.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


class RtpPacketizer:
    """The sending side of one RTP stream: SSRC, sequence number, timestamp, counters.

    Attributes:
        ssrc: our synchronization source.
        payload_type: the default payload type (the negotiated codec).
        clock_rate: the RTP clock rate of that payload type, in Hz.
        packet_count: packets produced so far (RFC 3550 SR sender's packet count).
        octet_count: payload octets produced so far (SR sender's octet count).
        last_timestamp: the RTP timestamp of the last packet produced, or None.
    """

    __slots__ = (
        "_sequence",
        "_timestamp",
        "clock_rate",
        "last_timestamp",
        "octet_count",
        "packet_count",
        "payload_type",
        "ssrc",
    )

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        clock_rate: int,
        first_sequence: int,
        first_timestamp: int,
    ) -> None:
        """Start a stream; draw ``first_sequence`` and ``first_timestamp`` at random.

        Raises:
            LocalMediaError: a value is out of its RTP range.
        """
        if not 0 <= ssrc <= 0xFFFFFFFF or not 0 <= payload_type <= 127 or clock_rate <= 0:
            raise LocalMediaError("SSRC, payload type or clock rate out of range")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self._sequence = first_sequence & 0xFFFF
        self._timestamp = first_timestamp & 0xFFFFFFFF
        self.packet_count = 0
        self.octet_count = 0
        self.last_timestamp: int | None = None

    @property
    def sequence(self) -> int:
        """The sequence number the next packet will carry."""
        return self._sequence

    @property
    def timestamp(self) -> int:
        """The timestamp the next media packet will carry."""
        return self._timestamp

    def packet(self, payload: bytes, samples: int, marker: bool = False) -> RtpPacket:
        """The next media packet; then advance the timestamp by ``samples``."""
        packet = RtpPacket(
            payload_type=self.payload_type,
            sequence=self._sequence,
            timestamp=self._timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )
        self._sent(len(payload), self._timestamp)
        self._timestamp = (self._timestamp + samples) & 0xFFFFFFFF
        return packet

    def packet_bytes(self, payload: bytes, samples: int, marker: bool = False) -> bytes:
        """Like :meth:`packet` but serialized directly (the per-frame hot path)."""
        sequence, timestamp = self._sequence, self._timestamp
        second = self.payload_type | 0x80 if marker else self.payload_type
        packet = _HEADER.pack(0x80, second, sequence, timestamp, self.ssrc) + payload
        # _sent inlined: this runs once per packet sent
        self._sequence = (sequence + 1) & 0xFFFF
        self.packet_count = (self.packet_count + 1) & 0xFFFFFFFF
        self.octet_count = (self.octet_count + len(payload)) & 0xFFFFFFFF
        self.last_timestamp = timestamp
        self._timestamp = (timestamp + samples) & 0xFFFFFFFF
        return packet

    def event_packet(
        self, payload: bytes, *, payload_type: int, timestamp: int, marker: bool = False
    ) -> RtpPacket:
        """A packet with its own payload type and timestamp (RFC 4733 events).

        Consumes a sequence number only; the media timestamp does not move (use
        :meth:`advance` for the time the event occupied).
        """
        packet = RtpPacket(
            payload_type=payload_type,
            sequence=self._sequence,
            timestamp=timestamp & 0xFFFFFFFF,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )
        self._sent(len(payload), packet.timestamp)
        return packet

    def advance(self, samples: int) -> None:
        """Move the media timestamp by ``samples`` without sending (a gap in the stream)."""
        self._timestamp = (self._timestamp + samples) & 0xFFFFFFFF

    def _sent(self, octets: int, timestamp: int) -> None:
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.packet_count = (self.packet_count + 1) & 0xFFFFFFFF
        self.octet_count = (self.octet_count + octets) & 0xFFFFFFFF
        self.last_timestamp = timestamp
