"""The per-packet fast paths agree with the record-based APIs they shortcut.

parse_fields vs RtpPacket.parse, G711Codec.encode_frame vs encode, the jitter buffer's
put_frame/put_non_audio/pop_frame vs put/pop, DtmfReceiver.feed_payload vs feed.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.media.dtmf import DtmfReceiver, DtmfSender
from sip_gateway.media.errors import MalformedPacketError
from sip_gateway.media.g711 import G711Codec
from sip_gateway.media.jitter import Concealment, JitterBuffer
from sip_gateway.media.rtp import RtpExtension, RtpPacket, RtpPacketizer, parse_fields

FUZZ = settings(max_examples=300, deadline=None)
PT = 101


def fields_of(packet: RtpPacket) -> tuple[int, int, int, int, bytes]:
    return packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc, packet.payload


@FUZZ
@given(st.binary(max_size=80))
def test_parse_fields_agrees_with_parse_on_any_bytes(data):
    try:
        expected = fields_of(RtpPacket.parse(data))
    except MalformedPacketError:
        with pytest.raises(MalformedPacketError):
            parse_fields(data)
        return
    assert parse_fields(data) == expected


@FUZZ
@given(
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=40),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=3).map(tuple),
    extension=st.none() | st.binary(max_size=8).map(lambda b: RtpExtension(0xBEDE, b * 4)),
    padding=st.sampled_from([0, 1, 4]),
)
def test_parse_fields_reads_every_header_shape(**fields):
    packet = RtpPacket(**fields)
    assert parse_fields(packet.serialize()) == fields_of(packet)


def test_parse_fields_payload_is_bytes():
    plain = RtpPacket(payload_type=0, sequence=1, timestamp=2, ssrc=3, payload=b"\xff" * 160)
    payload = parse_fields(plain.serialize())[4]
    assert type(payload) is bytes
    assert payload == b"\xff" * 160


@FUZZ
@given(st.lists(st.integers(-32768, 32767), max_size=400), st.sampled_from(["PCMU", "PCMA"]))
def test_encode_frame_equals_encode(samples, name):
    codec = G711Codec(name)
    pcm = np.array(samples, dtype=np.int16)
    assert codec.encode_frame(pcm) == codec.encode(pcm)
    assert codec.encode_frame(pcm[::2]) == codec.encode(pcm[::2])  # strided views too


def test_encode_and_decode_keep_their_checks():
    codec = G711Codec("PCMU")
    with pytest.raises(Exception, match="int16"):
        codec.encode(np.zeros(4, dtype=np.int32))
    assert codec.encode(np.zeros((2, 2), dtype=np.int16)) == b"\xff" * 4
    decoded = codec.decode(b"\xff\x00")
    assert decoded.dtype == np.int16
    assert decoded.flags.writeable


def stream(seed: int, count: int = 300) -> list[tuple[float, RtpPacket, bool]]:
    """(arrival, packet, audio) with jitter, loss, reordering, duplicates and events."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        is_event = 100 <= i % 150 < 110
        p = RtpPacket(
            payload_type=PT if is_event else 0,
            sequence=(60000 + i) & 0xFFFF,
            timestamp=(2**32 - 8000 + 160 * i) & 0xFFFFFFFF,
            ssrc=7,
            payload=i.to_bytes(4, "big"),
        )
        if rng.random() < 0.05:
            continue
        arrival = 0.02 * i + rng.random() * 0.08
        items.append((arrival, p, not is_event))
        if rng.random() < 0.03:
            items.append((arrival + 0.01, p, not is_event))
    items.sort(key=lambda item: item[0])
    return items


@pytest.mark.parametrize("seed", range(8))
def test_put_frame_and_pop_frame_match_put_and_pop(seed):
    by_packet, by_fields = JitterBuffer(8000, 20), JitterBuffer(8000, 20)
    items, position = stream(seed), 0
    for k in range(400):
        now = 0.005 + 0.02 * k
        while position < len(items) and items[position][0] <= now:
            arrival, p, audio = items[position]
            by_packet.put(p, arrival, audio=audio)
            if audio:
                by_fields.put_frame(p.sequence, p.timestamp, ("frame", p), arrival)
            else:
                by_fields.put_non_audio(p.sequence, p.timestamp)
            position += 1
        expected, got = by_packet.pop(now), by_fields.pop_frame(now)
        if isinstance(expected, RtpPacket):
            assert got == ("frame", expected)
        else:
            assert got == expected
            assert expected is None or isinstance(expected, Concealment)
    assert by_packet.stats() == by_fields.stats()
    assert by_packet.stats().played > 200


def test_dtmf_feed_payload_matches_feed():
    packetizer = RtpPacketizer(0xCAFE, 0, 8000, 65530, 2**32 - 800)
    sender = DtmfSender(PT)
    packets: list[RtpPacket] = []
    for digit in "1#9":
        packets += sender.packets(digit, packetizer, duration_ms=120)
        packets.append(packetizer.packet(b"\xff" * 160, 160))
    by_packet, by_fields = DtmfReceiver(PT), DtmfReceiver(PT)
    seen = []
    for p in packets:
        expected = by_packet.feed(p)
        assert by_fields.feed_payload(p.payload_type, p.timestamp, p.payload) == expected
        assert by_fields.active == by_packet.active
        seen += [d.digit for d in expected]
    assert seen == ["1", "#", "9"]


def test_dtmf_active_only_while_an_event_is_open():
    packetizer = RtpPacketizer(1, 0, 8000, 0, 0)
    packets = DtmfSender(PT).packets("5", packetizer, duration_ms=100)
    receiver = DtmfReceiver(PT)
    states = [receiver.active]
    for p in packets:
        receiver.feed(p)
        states.append(receiver.active)
    assert states[:2] == [False, True]  # open from the first packet
    assert states[-4:] == [True, False, False, False]  # closed by the first of 3 end packets
