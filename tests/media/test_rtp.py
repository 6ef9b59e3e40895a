"""RTP parse/serialize, RFC 5761 demux and the packetizer."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.media.errors import LocalMediaError, MalformedPacketError, MediaError
from sip_gateway.media.rtp import RtpExtension, RtpPacket, RtpPacketizer, is_rtcp

FUZZ = settings(max_examples=400, deadline=None)

# A PCMU packet as a desk phone sends it: V=2, PT 0, seq 0x1234, ts 0x0001_e240, 160 bytes.
PLAIN = bytes.fromhex("80001234 0001e240 deadbeef") + bytes([0xFF]) * 160
# Mixer output: marker, PT 8, two CSRCs, an RFC 8285 one-byte extension (ssrc-audio-level
# id 1 = -0x7f dBov with V flag, then padding to a word), 4 bytes of RTP padding.
RICH = (
    bytes.fromhex("b2 88 ffff ffffff00 01020304")  # V=2 P=1 X=1 CC=2, M=1 PT=8
    + bytes.fromhex("0000000a 0000000b")  # CSRC list
    + bytes.fromhex("bede 0001 10ff0000")  # extension: profile 0xBEDE, 1 word
    + b"\xd5" * 160
    + bytes.fromhex("00000004")  # padding, count 4
)


def test_parse_plain_packet():
    packet = RtpPacket.parse(PLAIN)
    assert packet == RtpPacket(
        payload_type=0, sequence=0x1234, timestamp=123456, ssrc=0xDEADBEEF, payload=b"\xff" * 160
    )
    assert not packet.marker
    assert packet.version == 2
    assert packet.serialize() == PLAIN


def test_parse_packet_with_csrc_extension_and_padding():
    packet = RtpPacket.parse(RICH)
    assert packet.marker
    assert packet.payload_type == 8
    assert packet.sequence == 0xFFFF
    assert packet.timestamp == 0xFFFFFF00
    assert packet.ssrc == 0x01020304
    assert packet.csrc == (10, 11)
    assert packet.extension == RtpExtension(0xBEDE, bytes.fromhex("10ff0000"))
    assert packet.padding == 4
    assert packet.payload == b"\xd5" * 160
    assert packet.serialize() == RICH


def test_parse_accepts_buffers():
    assert RtpPacket.parse(memoryview(RICH)) == RtpPacket.parse(bytearray(RICH))
    assert isinstance(RtpPacket.parse(memoryview(PLAIN)).payload, bytes)


def test_header_only_and_padding_only_packets():
    assert RtpPacket.parse(PLAIN[:12]).payload == b""
    only_padding = bytes([0xA0]) + PLAIN[1:12] + b"\x00\x00\x03"
    packet = RtpPacket.parse(only_padding)
    assert (packet.payload, packet.padding) == (b"", 3)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "shorter"),
        (PLAIN[:11], "shorter"),
        (bytes([0x40]) + PLAIN[1:], "version"),
        (bytes([0x00]) + PLAIN[1:], "version"),
        (bytes([0x8F]) + PLAIN[1:12] + bytes(56), "CSRC"),
        (bytes([0x90]) + PLAIN[1:12] + b"\xbe\xde", "extension"),
        (bytes([0x90]) + PLAIN[1:12] + b"\xbe\xde\x00\x02" + bytes(4), "extension"),
        (bytes([0xA0]) + PLAIN[1:12] + b"\x00\x00", "padding"),
        (bytes([0xA0]) + PLAIN[1:12] + b"\x05", "padding"),
    ],
)
def test_malformed_packets_are_refused(data, why):
    with pytest.raises(MalformedPacketError, match=why) as info:
        RtpPacket.parse(data)
    assert info.value.reason == "malformed"


def test_serialize_refuses_out_of_range_fields():
    base: dict[str, Any] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    bad: list[dict[str, Any]] = [
        {"payload_type": 128},
        {"payload_type": -1},
        {"sequence": 65536},
        {"timestamp": 2**32},
        {"ssrc": -1},
        {"csrc": tuple(range(16))},
        {"csrc": (2**32,)},
        {"padding": 256},
        {"version": 1},
        {"extension": RtpExtension(0xBEDE, b"abc")},
        {"extension": RtpExtension(0x10000, b"")},
    ]
    for fields in bad:
        with pytest.raises(LocalMediaError):
            RtpPacket(**{**base, **fields}).serialize()


def test_is_rtcp_demultiplexes_by_second_byte():
    assert not is_rtcp(PLAIN)
    assert not is_rtcp(RICH)
    assert is_rtcp(bytes.fromhex("80c8 0006"))  # SR
    assert is_rtcp(bytes.fromhex("81c9 0007"))  # RR
    assert is_rtcp(bytes([0x80, 223]))
    assert not is_rtcp(bytes([0x80, 224]))
    assert not is_rtcp(bytes([0x80, 191]))
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(b"")


# --- packetizer -----------------------------------------------------------------------


def test_packetizer_advances_and_wraps():
    packetizer = RtpPacketizer(0x11223344, 0, 8000, 65534, 2**32 - 320)
    packets = [packetizer.packet(b"\xff" * 160, 160, marker=i == 0) for i in range(4)]
    assert [p.sequence for p in packets] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in packets] == [2**32 - 320, 2**32 - 160, 0, 160]
    assert [p.marker for p in packets] == [True, False, False, False]
    assert {p.ssrc for p in packets} == {0x11223344}
    assert (packetizer.sequence, packetizer.timestamp) == (2, 320)
    assert (packetizer.packet_count, packetizer.octet_count) == (4, 640)
    assert packetizer.last_timestamp == 160


def test_packet_bytes_matches_packet():
    one = RtpPacketizer(7, 8, 8000, 65535, 2**32 - 160)
    two = RtpPacketizer(7, 8, 8000, 65535, 2**32 - 160)
    for i in range(3):
        payload = bytes([i]) * 160
        assert (
            one.packet_bytes(payload, 160, marker=i == 1)
            == two.packet(payload, 160, marker=i == 1).serialize()
        )
    assert (one.sequence, one.timestamp, one.octet_count) == (two.sequence, two.timestamp, 480)


def test_event_packets_and_advance():
    packetizer = RtpPacketizer(7, 0, 8000, 10, 1000)
    event = packetizer.event_packet(
        b"\x01\x0a\x00\xa0", payload_type=101, timestamp=1000, marker=True
    )
    assert (event.sequence, event.timestamp, event.payload_type, event.marker) == (
        10,
        1000,
        101,
        True,
    )
    assert (packetizer.sequence, packetizer.timestamp) == (11, 1000)
    packetizer.advance(2**32 - 1000)
    assert packetizer.timestamp == 0
    assert packetizer.packet(b"", 160).timestamp == 0


def test_packetizer_refuses_bad_arguments():
    with pytest.raises(LocalMediaError):
        RtpPacketizer(2**32, 0, 8000, 0, 0)
    with pytest.raises(LocalMediaError):
        RtpPacketizer(1, 128, 8000, 0, 0)
    with pytest.raises(LocalMediaError):
        RtpPacketizer(1, 0, 0, 0, 0)


# --- Hypothesis -------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 65535),
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrc=st.lists(u32, max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        st.integers(0, 65535),
        st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4]),
    ),
    padding=st.integers(0, 255),
)


@FUZZ
@given(packets)
def test_generated_packets_round_trip(packet):
    wire = packet.serialize()
    assert RtpPacket.parse(wire) == packet
    assert RtpPacket.parse(wire).serialize() == wire
    assert not is_rtcp(wire) or (packet.marker and 64 <= packet.payload_type <= 95)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_malformed(data):
    try:
        packet = RtpPacket.parse(data)
    except MalformedPacketError:
        return
    except MediaError as exc:  # pragma: no cover - the assertion names the culprit
        raise AssertionError(f"unexpected error class {type(exc)}") from exc
    # Whatever parses serializes back to the same bytes once padding is zeroed.
    wire = packet.serialize()
    assert RtpPacket.parse(wire) == packet
    if not packet.padding:
        assert wire == data


@FUZZ
@given(st.binary(min_size=12, max_size=80), st.integers(0, 0x3F))
def test_header_bit_flips_parse_or_raise_malformed(body, flags):
    data = bytes([0x80 | flags]) + body[1:]
    with contextlib.suppress(MalformedPacketError):
        RtpPacket.parse(data)
