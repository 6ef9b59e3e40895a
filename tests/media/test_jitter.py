"""The adaptive jitter buffer, driven by scripted arrival times and ticks."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.media.dtmf import DtmfSender
from sip_gateway.media.errors import LocalMediaError
from sip_gateway.media.jitter import Concealment, JitterBuffer
from sip_gateway.media.rtp import RtpPacket, RtpPacketizer

PTIME = 0.02


Arrivals = list[tuple[float, RtpPacket]]
Outputs = list[tuple[float, RtpPacket | Concealment | None]]


def packet(index: int, *, seq0: int = 1000, ts0: int = 50_000, ssrc: int = 1) -> RtpPacket:
    return RtpPacket(
        payload_type=0,
        sequence=(seq0 + index) & 0xFFFF,
        timestamp=(ts0 + 160 * index) & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=index.to_bytes(4, "big"),
    )


def index_of(p: RtpPacket) -> int:
    return int.from_bytes(p.payload, "big")


def simulate(
    buffer: JitterBuffer,
    arrivals: Arrivals,
    *,
    ticks: int,
    phase: float = 0.007,
    audio: Callable[[RtpPacket], bool] | None = None,
) -> Outputs:
    """Feed (arrival, packet) pairs and tick every 20 ms; return (tick time, output) pairs."""
    pending = sorted(arrivals, key=lambda item: item[0])
    outputs: Outputs = []
    position = 0
    for k in range(ticks):
        now = phase + PTIME * k
        while position < len(pending) and pending[position][0] <= now:
            arrival, p = pending[position]
            buffer.put(p, arrival, audio=True if audio is None else audio(p))
            position += 1
        outputs.append((now, buffer.pop(now)))
    return outputs


def played(outputs: Outputs) -> list[int]:
    return [index_of(o) for _, o in outputs if isinstance(o, RtpPacket)]


def concealments(outputs: Outputs) -> list[Concealment]:
    """The concealments before the last packet played (an ended stream expands after)."""
    last = max(i for i, (_, o) in enumerate(outputs) if isinstance(o, RtpPacket))
    return [o for _, o in outputs[:last] if isinstance(o, Concealment)]


def steady(count: int, *, offset: float = 0.001, start: int = 0, **kw: int) -> Arrivals:
    return [(offset + PTIME * i, packet(i, **kw)) for i in range(start, start + count)]


def test_in_order_stream_plays_everything_once_after_the_minimum_delay():
    buffer = JitterBuffer()
    outputs = simulate(buffer, steady(50), ticks=60)
    assert played(outputs) == list(range(50))
    assert concealments(outputs) == []
    first = next(now for now, o in outputs if isinstance(o, RtpPacket))
    assert 0.001 + 0.020 <= first < 0.001 + 0.020 + PTIME
    stats = buffer.stats()
    assert (stats.received, stats.played, stats.lost, stats.late) == (50, 50, 0, 0)
    assert stats.target_delay_ms == pytest.approx(20)
    assert 20 <= stats.delay_ms < 40
    assert stats.buffered == 0
    # the stream ends: the empty buffer conceals three frames, then plays nothing
    last = max(i for i, (_, o) in enumerate(outputs) if isinstance(o, RtpPacket))
    tail = [o for _, o in outputs[last + 1 :]]
    assert [o.sequence for o in tail[:3] if isinstance(o, Concealment)] == [1050, 1051, 1052]
    assert tail[3:] == [None] * (len(tail) - 3)


def test_nothing_before_the_first_packet():
    buffer = JitterBuffer()
    assert buffer.pop(0.0) is None
    assert buffer.pop(1.0) is None


def test_reordering_within_the_depth():
    arrivals = steady(40)
    for i in (3, 10, 11, 25):  # packet i arrives just after packet i + 1
        (_, p1), (t2, p2) = arrivals[i], arrivals[i + 1]
        arrivals[i], arrivals[i + 1] = (t2 + 0.0005, p1), (t2, p2)
    buffer = JitterBuffer(min_delay_ms=40)
    outputs = simulate(buffer, arrivals, ticks=50)
    assert played(outputs) == list(range(40))
    assert concealments(outputs) == []
    assert buffer.stats().late == 0


def test_duplicates_are_dropped_whether_buffered_or_played():
    arrivals = steady(30)
    arrivals += [(0.001 + PTIME * 5 + 0.0001, packet(5))]  # while buffered
    arrivals += [(0.001 + PTIME * 12, packet(3))]  # long after it played
    buffer = JitterBuffer()
    outputs = simulate(buffer, arrivals, ticks=40)
    assert played(outputs) == list(range(30))
    stats = buffer.stats()
    assert (stats.duplicates, stats.late, stats.received) == (2, 0, 30)


def test_one_lost_packet_gives_exactly_one_concealment():
    arrivals = [item for item in steady(30) if index_of(item[1]) != 12]
    buffer = JitterBuffer()
    outputs = simulate(buffer, arrivals, ticks=40)
    assert played(outputs) == [i for i in range(30) if i != 12]
    [concealment] = concealments(outputs)
    assert concealment == Concealment(reason="lost", sequence=1012, timestamp=50_000 + 160 * 12)
    # it takes the lost frame's tick: between packets 11 and 12
    frames = [o for _, o in outputs if o is not None]
    assert frames.index(concealment) == 12
    assert buffer.stats().lost == 1


def test_burst_loss_gives_one_concealment_per_frame():
    arrivals = [item for item in steady(30) if not 10 <= index_of(item[1]) < 13]
    outputs = simulate(JitterBuffer(), arrivals, ticks=40)
    assert [c.sequence for c in concealments(outputs)] == [1010, 1011, 1012]
    assert played(outputs) == [i for i in range(30) if not 10 <= i < 13]


def test_late_packet_is_dropped_and_counted():
    arrivals = steady(30)
    arrivals[8] = (arrivals[8][0] + 0.3, arrivals[8][1])  # 300 ms late
    buffer = JitterBuffer(min_delay_ms=40, max_delay_ms=40)
    outputs = simulate(buffer, arrivals, ticks=40)
    assert played(outputs) == [i for i in range(30) if i != 8]
    assert [c.sequence for c in concealments(outputs)] == [1008]
    stats = buffer.stats()
    assert (stats.late, stats.lost, stats.resyncs) == (1, 1, 0)


def test_sequence_and_timestamp_wraparound():
    arrivals = steady(200, seq0=65_500, ts0=2**32 - 160 * 50)
    buffer = JitterBuffer()
    outputs = simulate(buffer, arrivals, ticks=210)
    assert played(outputs) == list(range(200))
    sequences = [o.sequence for _, o in outputs if isinstance(o, RtpPacket)]
    assert sequences[35:37] == [65_535, 0]
    assert concealments(outputs) == []
    assert buffer.stats().lost == 0


def test_flood_keeps_memory_bounded():
    buffer = JitterBuffer(max_packets=50)
    for i in range(10_000):
        buffer.put(packet(i), 0.0)
    stats = buffer.stats()
    assert stats.buffered == 50
    assert stats.overflow == 10_000 - 50
    # the newest packets are kept (the oldest go first): the flood's tail plays
    first = buffer.pop(10.0)
    assert isinstance(first, RtpPacket)
    assert index_of(first) >= 9_950 - 1


def test_adapts_delay_up_under_jitter_and_back_down():
    rng = random.Random(7)
    arrivals = []
    for i in range(750):  # 5 s steady, 5 s with up to 80 ms jitter, 5 s steady
        jitter = rng.uniform(0, 0.08) if 250 <= i < 500 else 0.0
        arrivals.append((0.001 + PTIME * i + jitter, packet(i)))
    buffer = JitterBuffer(min_delay_ms=20, max_delay_ms=200)
    targets: dict[int, float] = {}
    delays: dict[int, float] = {}
    outputs: Outputs = []
    for phase_end in (250, 500, 760):
        chunk = [a for a in arrivals if a[0] <= 0.0 + PTIME * phase_end]
        del arrivals[: len(chunk)]
        start = len(outputs)
        for k in range(start, phase_end):
            now = 0.007 + PTIME * k
            while chunk and chunk[0][0] <= now:
                buffer.put(chunk[0][1], chunk[0][0])
                chunk.pop(0)
            outputs.append((now, buffer.pop(now)))
        arrivals[:0] = chunk
        targets[phase_end], delays[phase_end] = buffer.target_delay, buffer.delay
    assert targets[250] == pytest.approx(0.020)
    assert delays[250] < 0.045
    assert targets[500] >= 0.070  # close to the 80 ms spread
    assert delays[500] >= targets[500]
    assert targets[760] == pytest.approx(0.020)  # the jittery packets left the window
    assert delays[760] < 0.045
    stats = buffer.stats()
    assert stats.stretched > 0
    assert stats.skipped > 0
    sequence = played(outputs)
    assert sequence == sorted(set(sequence))  # in order, never twice
    # with the delay adapted, only the first jittery packets can be late
    assert stats.late < 25


def test_silence_suppression_plays_the_next_talkspurt_on_time():
    first = steady(10)
    # the sender stops for 1 s (50 frames) without sequence gap, timestamps jump
    second = [(0.001 + PTIME * i, packet(i, seq0=1000 - 50)) for i in range(60, 70)]
    buffer = JitterBuffer()
    outputs = simulate(buffer, first + second, ticks=140)
    assert played(outputs) == [*range(10), *range(60, 70)]
    times = {index_of(o): now for now, o in outputs if isinstance(o, RtpPacket)}
    assert times[60] - times[9] == pytest.approx(PTIME * 51)
    between = [o for now, o in outputs if times[9] < now < times[60]]
    assert [type(o) for o in between[:4]] == [Concealment] * 3 + [type(None)]
    assert between[3:] == [None] * 47


def test_non_audio_packets_fill_their_sequence_numbers():
    packetizer = RtpPacketizer(1, 0, 8000, 65_530, 1000)
    sender = DtmfSender(101)
    stream = [packetizer.packet(bytes([i]) * 4, 160) for i in range(10)]
    stream += sender.packets("5", packetizer)
    stream += [packetizer.packet(bytes([i]) * 4, 160) for i in range(10, 20)]
    arrivals = [(0.001 + PTIME * i, p) for i, p in enumerate(stream)]
    buffer = JitterBuffer()
    outputs = simulate(buffer, arrivals, ticks=40, audio=lambda p: p.payload_type == 0)
    assert [o.payload[0] for _, o in outputs if isinstance(o, RtpPacket)] == list(range(20))
    assert concealments(outputs) == []
    stats = buffer.stats()
    assert (stats.lost, stats.late, stats.received) == (0, 0, 20)
    assert stats.target_delay_ms == pytest.approx(20)


def test_sequence_restart_resynchronises_after_two_packets():
    before = steady(20)
    after = [(0.001 + PTIME * i, packet(i, seq0=1000 - 30_000)) for i in range(20, 40)]
    buffer = JitterBuffer()
    outputs = simulate(buffer, before + after, ticks=50)
    sequence = played(outputs)
    assert sequence[:20] == list(range(20))
    assert sequence[-10:] == list(range(30, 40))
    stats = buffer.stats()
    assert stats.resyncs == 1
    assert stats.late == 1  # the first packet of the new numbering, alone, was suspect


def test_single_stray_packet_does_not_resynchronise():
    arrivals = steady(30)
    arrivals.append((0.001 + PTIME * 10.5, packet(5000)))  # far ahead, once
    arrivals.append((0.001 + PTIME * 15.5, packet(3, ts0=50_000 + 8000 * 60)))  # a minute off
    buffer = JitterBuffer()
    outputs = simulate(buffer, arrivals, ticks=40)
    assert played(outputs) == list(range(30))
    assert (buffer.stats().resyncs, buffer.stats().late) == (0, 2)


def test_reset_forgets_the_stream_but_keeps_counters():
    buffer = JitterBuffer()
    simulate(buffer, steady(10), ticks=15)
    buffer.reset()
    assert buffer.stats().buffered == 0
    assert buffer.stats().played == 10
    outputs = simulate(buffer, steady(10, offset=1.0, seq0=7, ts0=9), ticks=70)
    assert played(outputs) == list(range(10))


def test_bad_configuration_is_refused():
    with pytest.raises(LocalMediaError):
        JitterBuffer(min_delay_ms=100, max_delay_ms=50)
    with pytest.raises(LocalMediaError):
        JitterBuffer(max_packets=1)
    with pytest.raises(LocalMediaError):
        JitterBuffer(ptime_ms=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 65535),
            st.integers(0, 2**32 - 1) | st.integers(0, 400).map(lambda i: 160 * i),
            st.floats(0, 5, allow_nan=False),
            st.booleans(),
        ),
        max_size=120,
    ),
    st.lists(st.floats(0, 6, allow_nan=False), max_size=120),
)
def test_hostile_streams_never_break_the_buffer(items, ticks):
    buffer = JitterBuffer(max_packets=10)
    events: list[tuple[float, str, Any]] = [
        (t, "put", (seq, ts, audio)) for seq, ts, t, audio in items
    ]
    events += [(t, "pop", None) for t in ticks]
    returned = []
    for now, kind, data in sorted(events, key=lambda e: (e[0], e[1] == "pop")):
        if kind == "put":
            seq, ts, audio = data
            p = RtpPacket(payload_type=0, sequence=seq, timestamp=ts, ssrc=1)
            buffer.put(p, now, audio=audio)
        else:
            out = buffer.pop(now)
            assert out is None or isinstance(out, (RtpPacket, Concealment))
            if isinstance(out, RtpPacket):
                returned.append(out)
        assert buffer.stats().buffered <= 10
    assert len(returned) == buffer.stats().played
