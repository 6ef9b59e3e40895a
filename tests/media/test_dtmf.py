"""RFC 4733 DTMF: what the sender emits and what the receiver detects."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.media.dtmf import (
    DTMF_DIGITS,
    DtmfDigit,
    DtmfReceiver,
    DtmfSender,
    EventPayload,
    pack_event,
    unpack_event,
)
from sip_gateway.media.errors import LocalMediaError
from sip_gateway.media.rtp import RtpPacket, RtpPacketizer

PT = 101


def make_packetizer(sequence: int = 65533, timestamp: int = 2**32 - 480) -> RtpPacketizer:
    return RtpPacketizer(0xCAFE, 0, 8000, sequence, timestamp)


def events(packets: list[RtpPacket]) -> list[EventPayload]:
    decoded = [unpack_event(p.payload) for p in packets]
    assert all(e is not None for e in decoded)
    return decoded  # type: ignore[return-value]


def test_sender_packets_follow_rfc4733():
    packetizer = make_packetizer()
    start_seq, start_ts = packetizer.sequence, packetizer.timestamp
    packets = DtmfSender(PT).packets("5", packetizer)
    assert len(packets) == 7
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {start_ts}
    assert {p.payload_type for p in packets} == {PT}
    assert {p.ssrc for p in packets} == {0xCAFE}
    assert [p.sequence for p in packets] == [(start_seq + i) & 0xFFFF for i in range(7)]
    payloads = events(packets)
    assert {e.event for e in payloads} == {5}
    assert {e.volume for e in payloads} == {10}
    assert [e.duration for e in payloads] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in payloads] == [False] * 4 + [True] * 3
    # the audio that follows continues in step with the ticks the event occupied
    audio = packetizer.packet(b"\xff" * 160, 160)
    assert audio.sequence == (start_seq + 7) & 0xFFFF
    assert audio.timestamp == (start_ts + 7 * 160) & 0xFFFFFFFF


@pytest.mark.parametrize(
    ("duration_ms", "durations"),
    [
        (90, [160, 320, 480, 640, 720, 720, 720]),
        (20, [160, 160, 160]),
        (5, [40, 40, 40]),
        (40, [160, 320, 320, 320]),
    ],
)
def test_sender_durations(duration_ms, durations):
    packets = DtmfSender(PT).packets("#", make_packetizer(), duration_ms=duration_ms)
    assert [e.duration for e in events(packets)] == durations
    assert [e.end for e in events(packets)][-3:] == [True] * 3
    assert packets[0].marker


def test_sender_options_and_every_digit():
    sender = DtmfSender(PT, 8000, 30, duration_ms=120, volume=7)
    for code, digit in enumerate(DTMF_DIGITS):
        for spelled in {digit, digit.lower()}:
            payloads = events(sender.packets(spelled, make_packetizer()))
            assert {e.event for e in payloads} == {code}
            assert {e.volume for e in payloads} == {7}
            assert [e.duration for e in payloads] == [240, 480, 720, 960, 960, 960]


@pytest.mark.parametrize("digit", ["", "E", "55", "x", " "])
def test_sender_refuses_non_digits(digit):
    with pytest.raises(LocalMediaError):
        DtmfSender(PT).packets(digit, make_packetizer())


def test_sender_refuses_bad_settings():
    with pytest.raises(LocalMediaError):
        DtmfSender(128)
    with pytest.raises(LocalMediaError):
        DtmfSender(PT, volume=64)
    with pytest.raises(LocalMediaError):
        DtmfSender(PT, ptime_ms=0)
    with pytest.raises(LocalMediaError):
        DtmfSender(PT).packets("1", make_packetizer(), duration_ms=0)
    with pytest.raises(LocalMediaError):
        pack_event(1, end=False, volume=10, duration=0x10000)


def test_event_payload_codec():
    payload = pack_event(11, end=True, volume=63, duration=0xFFFF)
    assert payload == bytes.fromhex("0bbfffff")
    assert unpack_event(payload) == EventPayload(11, True, 63, 0xFFFF)
    assert unpack_event(payload + b"extra") == EventPayload(11, True, 63, 0xFFFF)
    assert unpack_event(b"\x01\x02\x03") is None


# --- receiver -----------------------------------------------------------------------------


def feed_all(receiver: DtmfReceiver, packets: list[RtpPacket]) -> list[DtmfDigit]:
    digits: list[DtmfDigit] = []
    for packet in packets:
        digits.extend(receiver.feed(packet))
    return digits


def test_receiver_reports_a_digit_once_at_its_end():
    receiver = DtmfReceiver(PT)
    packets = DtmfSender(PT).packets("7", make_packetizer())
    reported = [receiver.feed(p) for p in packets]
    assert [len(r) for r in reported] == [0, 0, 0, 0, 1, 0, 0]
    digit = reported[4][0]
    assert digit == DtmfDigit(
        digit="7",
        event=7,
        duration=800,
        duration_ms=100,
        timestamp=packets[0].timestamp,
        volume=10,
        ended=True,
    )
    assert receiver.ignored == 2  # the two redundant end packets
    assert receiver.flush() is None


def test_receiver_does_not_need_the_marker_bit():
    receiver = DtmfReceiver(PT)
    packets = DtmfSender(PT).packets("1", make_packetizer())
    stripped = [dataclasses.replace(p, marker=False) for p in packets]
    assert [d.digit for d in feed_all(receiver, stripped)] == ["1"]


def test_back_to_back_digits_and_repeated_digits():
    packetizer = make_packetizer()
    sender = DtmfSender(PT)
    packets = [p for digit in "1255#" for p in sender.packets(digit, packetizer)]
    digits = feed_all(DtmfReceiver(PT), packets)
    assert [d.digit for d in digits] == list("1255#")
    assert all(d.ended and d.duration_ms == 100 for d in digits)
    # without marker bits and without end packets, the next event still separates them
    no_end = [dataclasses.replace(p, marker=False) for p in packets if not events([p])[0].end]
    receiver = DtmfReceiver(PT)
    digits = feed_all(receiver, no_end)
    last = receiver.flush()
    assert last is not None
    digits.append(last)
    assert [d.digit for d in digits] == list("1255#")
    assert [(d.ended, d.duration) for d in digits] == [(False, 640)] * 5


def test_lost_end_packets_complete_when_audio_resumes():
    packetizer = make_packetizer()
    packets = DtmfSender(PT).packets("9", packetizer)[:4]
    receiver = DtmfReceiver(PT)
    assert feed_all(receiver, packets) == []
    audio = [packetizer.packet(b"\xff" * 160, 160) for _ in range(20)]
    outputs = [receiver.feed(p) for p in audio]
    reported = [i for i, out in enumerate(outputs) if out]
    assert len(reported) == 1
    digit = outputs[reported[0]][0]
    assert (digit.digit, digit.duration, digit.ended) == ("9", 640, False)
    # audio resumed at +1120 samples; the event's last update said 640 (+200 ms slack)
    assert (audio[reported[0]].timestamp - packets[0].timestamp) & 0xFFFFFFFF > 640 + 1600


def test_first_packets_lost_end_only():
    packets = DtmfSender(PT).packets("*", make_packetizer())
    digits = feed_all(DtmfReceiver(PT), packets[5:])
    assert [(d.digit, d.duration, d.ended) for d in digits] == [("*", 800, True)]


def test_reordered_packets():
    packetizer = make_packetizer()
    sender = DtmfSender(PT)
    one, two = sender.packets("1", packetizer), sender.packets("2", packetizer)
    order = [one[1], one[0], one[3], one[2], one[5], one[4], two[0], one[6], two[2], two[1]]
    order += two[3:]
    digits = feed_all(DtmfReceiver(PT), order)
    assert [(d.digit, d.duration, d.ended) for d in digits] == [("1", 800, True), ("2", 800, True)]
    # the end packets of "1" arrive only after "2" began: "1" is still reported once
    late_end = one[:4] + two[:2] + one[4:] + two[2:]
    receiver = DtmfReceiver(PT)
    digits = feed_all(receiver, late_end)
    assert [(d.digit, d.ended) for d in digits] == [("1", False), ("2", True)]
    assert receiver.ignored == 3 + 2


def test_long_press():
    packets = DtmfSender(PT).packets("0", make_packetizer(), duration_ms=2000)
    assert len(packets) == 100 + 2
    assert [e.duration for e in events(packets)][-3:] == [16000] * 3
    digits = feed_all(DtmfReceiver(PT), packets)
    assert [(d.digit, d.duration_ms) for d in digits] == [("0", 2000)]


def test_very_long_press_is_segmented():
    packetizer = make_packetizer(timestamp=2**32 - 1000)
    start = packetizer.timestamp
    packets = DtmfSender(PT).packets("A", packetizer, duration_ms=20_000)
    segment = 65535 // 160 * 160
    stamps = sorted({(p.timestamp - start) & 0xFFFFFFFF for p in packets})
    assert stamps == [0, segment, 2 * segment]
    assert sum(p.marker for p in packets) == 1
    assert all(e.duration <= 0xFFFF for e in events(packets))
    assert [e.end for e in events(packets)].count(True) == 3
    digits = feed_all(DtmfReceiver(PT), packets)
    assert [(d.digit, d.duration, d.timestamp) for d in digits] == [("A", 160_000, start)]


def test_malformed_and_foreign_events_are_counted():
    receiver = DtmfReceiver(PT)
    short = RtpPacket(payload_type=PT, sequence=1, timestamp=0, ssrc=1, payload=b"\x01")
    flash = RtpPacket(
        payload_type=PT,
        sequence=2,
        timestamp=0,
        ssrc=1,
        payload=pack_event(16, end=True, volume=0, duration=800),
    )
    assert receiver.feed(short) == ()
    assert receiver.feed(flash) == ()
    assert (receiver.malformed, receiver.ignored) == (1, 1)


# --- property: loss, reordering and audio around digits ------------------------------------


@st.composite
def streams(draw):
    """A call: audio, digits (some back to back), then more audio; what arrives of it."""
    packetizer = make_packetizer(draw(st.integers(0, 65535)), draw(st.integers(0, 2**32 - 1)))
    sender = DtmfSender(PT)
    digits = draw(st.text(alphabet=DTMF_DIGITS, min_size=1, max_size=5))
    sent: list[tuple[int | None, RtpPacket]] = []  # (digit index, None for audio; packet)
    for index, digit in enumerate(digits):
        for _ in range(draw(st.integers(0, 3))):
            sent.append((None, packetizer.packet(b"\xff" * 160, 160)))
        duration = draw(st.sampled_from([40, 100, 250]))
        sent.extend((index, p) for p in sender.packets(digit, packetizer, duration_ms=duration))
    sent.extend((None, packetizer.packet(b"\xff" * 160, 160)) for _ in range(15))
    kept = [item for item in sent if draw(st.integers(0, 99)) >= 25]  # 25% loss
    for _ in range(draw(st.integers(0, 6))):  # a few swaps of neighbours
        if len(kept) > 1:
            i = draw(st.integers(0, len(kept) - 2))
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
    if draw(st.booleans()):
        kept = [(i, dataclasses.replace(p, marker=False)) for i, p in kept]
    return digits, kept


@settings(max_examples=300, deadline=None)
@given(streams())
def test_each_digit_is_detected_exactly_once(stream):
    digits, arrived = stream
    receiver = DtmfReceiver(PT)
    reported = [d.digit for _, packet in arrived for d in receiver.feed(packet)]
    last = receiver.flush()
    if last is not None:
        reported.append(last.digit)
    # A digit is detectable when one of its packets arrives before any of a later digit.
    expected, newest = [], -1
    for index, _ in arrived:
        if index is not None and index > newest:
            expected.append(digits[index])
            newest = index
    assert reported == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, PT]),
            st.integers(0, 2**32 - 1),
            st.booleans(),
            st.binary(max_size=6),
        ),
        max_size=30,
    )
)
def test_receiver_survives_arbitrary_packets(items):
    receiver = DtmfReceiver(PT)
    seen = set()
    for pt, timestamp, marker, payload in items:
        packet = RtpPacket(
            payload_type=pt, sequence=0, timestamp=timestamp, ssrc=1, payload=payload, marker=marker
        )
        for digit in receiver.feed(packet):
            assert digit.digit in DTMF_DIGITS
            assert (digit.timestamp, digit.event) not in seen
            seen.add((digit.timestamp, digit.event))
    receiver.flush()
