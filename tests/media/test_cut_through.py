"""MediaSession(cut_through=True) and its helpers, sans-IO on a virtual clock."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.media.cut_through import (
    DUPLICATE,
    JUMP,
    LATE,
    MAX_GAP_SAMPLES,
    ForwardOrder,
    PayloadReceived,
    convert_g711,
)
from sip_gateway.media.dtmf import DtmfSender
from sip_gateway.media.errors import LocalMediaError
from sip_gateway.media.events import AudioReceived, DtmfReceived, MediaEvent, PacketDropped
from sip_gateway.media.g711 import G711Codec
from sip_gateway.media.rtcp import SenderReport, parse_rtcp
from sip_gateway.media.rtp import RtpPacket, RtpPacketizer, is_rtcp
from sip_gateway.media.session import MediaSession
from sip_gateway.media.srtp import SrtpSession
from sip_gateway.sdp.attributes import Direction
from sip_gateway.sdp.media_config import MediaConfig, SdesCrypto

from .test_session import A, config_pair, tone

PTIME = 0.02
PCMU = G711Codec("PCMU")


def session(config: MediaConfig, *, seed: int = 1, **kwargs: object) -> MediaSession:
    return MediaSession(
        config,
        local_ssrc=0xC0FFEE00 + seed,
        rng=random.Random(seed),
        cut_through=True,
        **kwargs,  # type: ignore[arg-type]
    )


class Sender:
    """The peer's side of a stream toward the session under test: SRTP packets by hand."""

    def __init__(self, config_of_peer: MediaConfig) -> None:
        assert isinstance(config_of_peer.crypto, SdesCrypto)
        self.srtp = SrtpSession(config_of_peer.crypto)
        self.packetizer = RtpPacketizer(0x5EED, 0, 8000, 65530, 1000)

    def audio(self, sequence: int, samples: int = 160, *, timestamp: int | None = None) -> bytes:
        ts = 1000 + (sequence - 65530) * 160 if timestamp is None else timestamp
        pcm = tone(500, ts, samples)
        packet = RtpPacket(
            payload_type=0,
            sequence=sequence & 0xFFFF,
            timestamp=ts & 0xFFFFFFFF,
            ssrc=0x5EED,
            payload=PCMU.encode(pcm),
        )
        return self.srtp.protect(packet.serialize())


def drain(s: MediaSession) -> list[MediaEvent]:
    events = []
    while (event := s.next_event()) is not None:
        events.append(event)
    return events


def audio_events(events: list[MediaEvent]) -> list[AudioReceived]:
    return [e for e in events if isinstance(e, AudioReceived)]


# --- receiving ----------------------------------------------------------------------------


def test_each_packet_is_reported_at_once_in_order() -> None:
    config_b, config_a = config_pair()  # b receives what a sends
    b = session(config_b)
    b.start(0.0)
    a = Sender(config_a)
    for k in range(10):
        b.receive_datagram(a.audio(65530 + k), A, 0.02 * k)
        events = audio_events(drain(b))
        assert len(events) == 1 and not events[0].concealed  # at once: no playout delay
        expected = PCMU.decode(PCMU.encode(tone(500, 1000 + 160 * k)))
        assert np.array_equal(events[0].pcm, expected)
    stats = b.stats()
    assert stats.packets_received == 10 and stats.dropped == {} and stats.late == 0
    assert stats.playout_delay_ms == 0.0 and stats.concealed == 0


def test_late_packet_is_dropped_and_its_slot_reported_as_a_gap() -> None:
    config_b, config_a = config_pair()
    b = session(config_b)
    b.start(0.0)
    a = Sender(config_a)
    order = [0, 1, 3, 2, 4, 5]
    reported: list[tuple[bool, int]] = []
    for step, k in enumerate(order):
        b.receive_datagram(a.audio(65530 + k), A, 0.02 * step)
        reported += [(e.concealed, len(e.pcm)) for e in audio_events(drain(b))]
    # 0, 1, then the gap where 2 should have been, 3, (2 is late: dropped), 4, 5
    assert reported == [(False, 160)] * 2 + [(True, 160)] + [(False, 160)] * 3
    stats = b.stats()
    assert stats.dropped == {"late": 1} and stats.late == 1 and stats.concealed == 1
    assert stats.packets_received == 6  # accepted by SRTP and latching, then not forwarded


def test_replayed_datagram_is_dropped() -> None:
    config_b, config_a = config_pair()
    b = session(config_b)
    b.start(0.0)
    data = Sender(config_a).audio(65530)
    b.receive_datagram(data, A, 0.0)
    b.receive_datagram(data, A, 0.01)
    assert len(audio_events(drain(b))) == 1
    assert b.stats().dropped == {"replayed": 1}  # SRTP sees it first


def test_sequence_wrap_and_a_silence_suppression_pause() -> None:
    config_b, config_a = config_pair()
    b = session(config_b)
    b.start(0.0)
    a = Sender(config_a)
    for k in range(8):  # 65530 .. 65535, 0, 1
        b.receive_datagram(a.audio(65530 + k), A, 0.02 * k)
    # a sender suppressing silence: the next packet in sequence, 1.5 s of timestamps later
    b.receive_datagram(a.audio(65538, timestamp=1000 + 8 * 160 + 12000), A, 1.66)
    events = audio_events(drain(b))
    assert len(events) == 8 + 2
    assert events[8].concealed and len(events[8].pcm) == 12000 and not events[8].pcm.any()
    assert not events[9].concealed
    # a jump beyond MAX_GAP_SAMPLES is a discontinuity: not reported
    b.receive_datagram(a.audio(65539, timestamp=1000 + MAX_GAP_SAMPLES * 3), A, 2.0)
    assert [e.concealed for e in audio_events(drain(b))] == [False]
    assert b.stats().dropped == {}


def test_dtmf_is_detected_and_its_time_comes_out_as_a_gap() -> None:
    config_b, config_a = config_pair()
    b = session(config_b)
    b.start(0.0)
    a = Sender(config_a)
    packetizer = a.packetizer
    events: list[MediaEvent] = []
    now = 0.0
    for _ in range(3):
        b.receive_datagram(a.srtp.protect(packetizer.packet_bytes(PCMU.silence(160), 160)), A, now)
        now += PTIME
    sender = DtmfSender(101, 8000, 20)
    for packet in sender.packets("9", packetizer, duration_ms=100):
        b.receive_datagram(a.srtp.protect(packet.serialize()), A, now)
        now += PTIME
    b.receive_datagram(a.srtp.protect(packetizer.packet_bytes(PCMU.silence(160), 160)), A, now)
    events = drain(b)
    assert [e.digit for e in events if isinstance(e, DtmfReceived)] == ["9"]
    audio = audio_events(events)
    assert [e.concealed for e in audio] == [False] * 3 + [True, False]
    assert len(audio[3].pcm) == 7 * 160  # the event's 5 updates and 2 end repeats
    assert b.stats().dtmf_received == 1


def test_the_timer_never_plays_audio() -> None:
    config_b, _ = config_pair()
    b = session(config_b)
    b.start(0.0)
    for k in range(50):
        b.handle_timer(0.02 * k)
    assert not audio_events(drain(b))
    assert b.ticks_due(1.0) == 0


def test_a_new_source_starts_a_new_order() -> None:
    config_b, config_a = config_pair()
    b = session(config_b)
    b.start(0.0)
    a = Sender(config_a)
    b.receive_datagram(a.audio(65535), A, 0.0)
    other = Sender(config_a)
    other.srtp = SrtpSession(config_a.crypto)  # type: ignore[arg-type]
    packet = RtpPacket(payload_type=0, sequence=5, timestamp=0, ssrc=0x0DD, payload=b"\xff" * 160)
    b.receive_datagram(other.srtp.protect(packet.serialize()), ("10.0.0.9", 4000), 2.0)
    assert len(audio_events(drain(b))) == 2  # the old source was silent: relatched


# --- ForwardOrder ------------------------------------------------------------------------


def test_forward_order_verdicts() -> None:
    assert ForwardOrder().extended_newest is None
    order = ForwardOrder()
    assert order.in_order(65535) == 0
    assert order.in_order(65535) == DUPLICATE
    assert order.in_order(0) == 0 and order.extended_newest == 65536
    assert order.in_order(65534) == LATE
    assert order.in_order(40) == 0  # loss within MAX_DROPOUT
    assert order.in_order(20000) == JUMP
    assert order.in_order(30) == LATE
    assert order.in_order(20002) == JUMP  # not 20001: still a jump
    assert order.in_order(41) == 0
    assert order.in_order(20003) == 0  # follows the jump: the sender restarted (A.1)
    assert order.extended_newest == 20003
    assert order.in_order(20002) == LATE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 40), min_size=1, max_size=120), st.integers(0, 65535))
def test_forwarded_sequence_numbers_only_increase(offsets: list[int], base: int) -> None:
    """Whatever the arrival order: each forwarded packet is newer than every one forwarded
    before it, none twice, and a packet newer than all before it is always forwarded."""
    order = ForwardOrder()
    forwarded: list[int] = []
    newest = None
    for offset in offsets:
        extended = base + offset
        verdict = order.in_order(extended & 0xFFFF)
        if newest is None or extended > newest:
            assert verdict == 0
            newest = extended
            forwarded.append(extended)
        else:
            assert verdict in (LATE, DUPLICATE)
    assert forwarded == sorted(set(forwarded))
    assert order.extended_newest is not None
    assert order.extended_newest - (order.extended_newest & 0xFFFF) >= 0


# --- sending -------------------------------------------------------------------------------


class Clock:
    """Runs one session on a virtual clock: actions at their times, the timer when due."""

    def __init__(self, s: MediaSession, start: float = 10.0) -> None:
        self.session = s
        self.now = start
        self.fired = 0
        self.sent: list[tuple[float, bytes]] = []
        s.start(start)
        self._collect()

    def _collect(self) -> None:
        for data, _dest in self.session.datagrams_to_send():
            self.sent.append((self.now, data))

    def until(self, when: float) -> None:
        while (timer := self.session.get_timer()) is not None and timer <= when:
            self.now = max(self.now, timer)
            self.session.handle_timer(self.now)
            self.fired += 1
            self._collect()
        self.now = max(self.now, when)

    def at(self, when: float, action: Callable[[float], None]) -> None:
        self.until(when)
        action(self.now)
        self._collect()

    def audio(self, when: float, pcm: np.ndarray) -> None:
        self.at(when, lambda now: self.session.send_audio_now(pcm, now))

    def rtp(self, config_of_peer: MediaConfig) -> list[tuple[float, RtpPacket]]:
        assert isinstance(config_of_peer.crypto, SdesCrypto)
        reader = SrtpSession(config_of_peer.crypto)
        out = []
        for t, data in self.sent:
            if is_rtcp(data):
                continue
            plain = reader.unprotect(data)
            assert plain is not None
            out.append((t, RtpPacket.parse(plain)))
        return out


def assert_timestamps_continuous(packets: list[RtpPacket], step: int = 160) -> None:
    """Each packet's timestamp follows from the one before: +step after a frame, the same
    within a digit, +duration (5 updates and 2 end repeats: 7 frames) after one."""
    for prev, cur in itertools.pairwise(packets):
        assert (cur.sequence - prev.sequence) % 65536 == 1
        delta = (cur.timestamp - prev.timestamp) % 2**32
        if prev.payload_type == 101 and cur.payload_type == 101:
            assert delta == 0
        elif cur.payload_type == 101:
            assert delta == step
        elif prev.payload_type == 101:
            assert delta == 7 * step  # the digit occupied 7 frames from its start
        else:
            assert delta == step


def test_audio_goes_out_at_once_with_continuous_timestamps() -> None:
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    jitter = random.Random(7)
    for k in range(50):
        clock.audio(10.005 + 0.02 * k + jitter.uniform(0, 0.008), tone(1000, 160 * k))
        assert clock.sent[-1][0] == clock.now  # sent in the same call
    clock.until(11.0)
    packets = clock.rtp(config_b)
    audio = [p for _, p in packets if p.payload_type != 101]
    assert_timestamps_continuous(audio)
    payloads = [p.payload for p in audio]
    assert payloads[0] == PCMU.silence(160)  # the first filler at start, before any audio
    assert payloads[1:51] == [PCMU.encode(tone(1000, 160 * k)) for k in range(50)]
    assert packets[0][1].marker and not any(p.marker for _, p in packets[1:])
    # no filler while audio flowed with up to 8 ms of jitter; fillers after it stopped
    stats = clock.session.stats()
    assert stats.silence_sent == 1 + len(payloads[51:])
    assert all(p == PCMU.silence(160) for p in payloads[51:])


def test_timer_wakes_only_for_rtcp_while_audio_flows() -> None:
    config_a, _ = config_pair()
    clock = Clock(session(config_a))
    for k in range(500):  # 10 s of audio at 50 frames a second, 3 ms late each
        clock.audio(10.003 + 0.02 * k, tone(1000, 160 * k))
    stats = clock.session.stats()
    assert stats.silence_sent == 1  # at start only
    assert clock.fired == 1 + stats.rtcp_sent  # the start filler, then RTCP only
    assert 1 <= stats.rtcp_sent <= 4


def test_comfort_silence_fills_a_pause_about_1_5_ptime_after_the_last_frame() -> None:
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    for k in range(10):
        clock.audio(10.01 + 0.02 * k, tone(1000, 160 * k))  # last frame at 10.19
    for k in range(10):
        clock.audio(10.5 + 0.02 * k, tone(1000, 160 * k))
    clock.until(10.7)
    packets = clock.rtp(config_b)
    times = [t for t, _ in packets]
    fills = [t for t, p in packets if p.payload == PCMU.silence(160) and 10.19 < t < 10.5]
    assert fills[0] == pytest.approx(10.19 + 1.5 * PTIME)
    assert np.allclose(np.diff(fills), PTIME)
    assert 10.5 - fills[-1] <= PTIME
    assert max(np.diff([t for t in times if t < 10.69])) <= 1.5 * PTIME + 1e-9
    assert_timestamps_continuous([p for _, p in packets])


def test_a_late_frame_costs_one_filler_then_the_schedule_has_slack() -> None:
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    times = [10.01 + 0.02 * k for k in range(100)]
    times[20] += 0.015  # one frame 15 ms late: a filler takes its slot
    for k in range(30, 100):
        times[k] += 0.025 * (k % 2)  # then every other frame 25 ms late
    for k, t in enumerate(sorted(times)):
        clock.audio(t, tone(1000, 160 * k))
    stats = clock.session.stats()
    # start, the late frame; then the schedule is a frame ahead: 25 ms late is in time
    assert stats.silence_sent == 1 + 1
    packets = clock.rtp(config_b)
    assert_timestamps_continuous([p for _, p in packets])
    last_t, last = packets[-1]
    media = (last.timestamp - packets[0][1].timestamp) % 2**32 / 8000
    assert media - (last_t - packets[0][0]) <= 3 * PTIME  # the stream never ran away


def test_digit_replaces_audio_and_keeps_its_timing() -> None:
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    for k in range(40):
        if k == 10:
            clock.at(10.195, lambda now: clock.session.send_dtmf("5", now))
        clock.audio(10.01 + 0.02 * k, tone(1000, 160 * k))
    clock.until(11.0)
    packets = clock.rtp(config_b)
    events = [(t, p) for t, p in packets if p.payload_type == 101]
    assert len(events) == 7  # 100 ms: 5 updates, then the end twice more
    assert events[0][0] == pytest.approx(10.21)  # in the next frame's place
    assert np.allclose(np.diff([t for t, _ in events]), PTIME)  # then one per ptime
    assert events[0][1].marker and all(p.payload[1] & 0x80 for _, p in events[4:])
    first_audio_after = next(t for t, p in packets if t > events[-1][0] and p.payload_type == 0)
    assert first_audio_after - events[-1][0] <= PTIME
    assert_timestamps_continuous([p for _, p in packets])
    session_ = clock.session
    # the frame whose place it took, and those that came before its last packet (10.33)
    assert session_.audio_suppressed == 6 and session_.stats().dtmf_sent == 1
    assert [t for t, p in packets if 10.2 < t < 10.32 and p.payload_type == 0] == []
    silence = PCMU.silence(160)
    fills = [t for t, p in packets if p.payload == silence and 10.0 < t < 10.79]
    assert fills == []  # the audio went on around it: no filler


def test_digits_while_idle_then_the_gap_between_two() -> None:
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    clock.at(10.105, lambda now: clock.session.send_dtmf("1", now))
    clock.at(10.105, lambda now: clock.session.send_dtmf("2", now))
    clock.until(11.0)
    packets = clock.rtp(config_b)
    kinds = [p.payload_type for t, p in packets if t > 10.105]
    assert kinds[:7] == [101] * 7 and kinds[7:10] == [0] * 3 and kinds[10:17] == [101] * 7
    assert np.allclose(np.diff([t for t, _ in packets]), PTIME)  # one packet per slot
    assert_timestamps_continuous([p for _, p in packets])
    digits = {p.timestamp for _, p in packets if p.payload_type == 101}
    assert len(digits) == 2


def test_long_and_short_frames_and_validation() -> None:
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    clock.audio(10.01, tone(1000, 0, samples=480))  # a 60 ms frame: three packets
    clock.audio(10.07, tone(1000, 480, samples=80))  # a short one: one short packet
    packets = [p for _, p in clock.rtp(config_b)][1:]
    assert [len(p.payload) for p in packets] == [160, 160, 160, 80]
    assert [(p.timestamp - packets[0].timestamp) % 2**32 for p in packets] == [0, 160, 320, 480]
    with pytest.raises(LocalMediaError):
        clock.session.send_audio_now(np.zeros(160, np.float32), clock.now)
    default = MediaSession(config_a, local_ssrc=1, rng=random.Random(0))
    default.start(0.0)
    with pytest.raises(LocalMediaError):
        default.send_audio_now(np.zeros(160, np.int16), 0.0)


def test_before_start_and_recvonly_nothing_is_sent() -> None:
    config_a, _ = config_pair()
    s = session(config_a)
    s.send_audio_now(np.zeros(160, np.int16), 0.0)  # not started: dropped
    assert s.datagrams_to_send() == [] and s.get_timer() is None
    recvonly = dataclasses.replace(config_a, direction=Direction.RECVONLY)
    clock = Clock(session(recvonly))
    for k in range(20):
        clock.audio(10.01 + 0.02 * k, tone(1000, 160 * k))
    clock.until(11.0)
    assert not [d for _, d in clock.sent if not is_rtcp(d)]


def test_stalled_timer_skips_old_slots_instead_of_bursting() -> None:
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    clock.until(10.0)
    clock.session.handle_timer(11.0)  # the loop stalled for a second
    clock.now = 11.0
    clock._collect()
    packets = [p for _, p in clock.rtp(config_b)]
    assert len(packets) == 1 + 10
    clock.audio(11.01, tone(1000, 0))
    last = clock.rtp(config_b)[-1][1]
    assert last.marker  # the skipped slots were a gap: a new talkspurt
    assert (last.timestamp - packets[-1].timestamp) % 2**32 == 160 * 41


def test_sender_report_maps_now_to_the_stream_timestamp() -> None:
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    for k in range(400):
        clock.audio(10.01 + 0.02 * k, tone(1000, 160 * k))
    assert isinstance(config_b.crypto, SdesCrypto)
    reader = SrtpSession(config_b.crypto)
    rtp = clock.rtp(config_b)
    reports = []
    for t, data in clock.sent:
        if is_rtcp(data):
            plain = reader.unprotect_rtcp(data)
            assert plain is not None
            reports += [(t, r) for r in parse_rtcp(plain) if isinstance(r, SenderReport)]
    assert reports
    for t, report in reports:
        sent_t, last = max((x for x in rtp if x[0] <= t), key=lambda x: x[0])
        expected = last.timestamp + round((t - sent_t) * 8000)
        assert abs(((report.rtp_timestamp - expected + 2**31) % 2**32) - 2**31) <= 160


def test_two_cut_through_sessions_carry_a_tone_with_no_added_delay() -> None:
    config_a, config_b = config_pair()
    a, b = session(config_a, seed=1), session(config_b, seed=2)
    a.start(0.0)
    b.start(0.0)
    a.datagrams_to_send()
    heard: list[tuple[float, AudioReceived]] = []
    for k in range(50):
        now = 0.01 + 0.02 * k
        a.send_audio_now(tone(1000, 160 * k), now)
        for data, _dest in a.datagrams_to_send():
            b.receive_datagram(data, A, now + 0.001)
        heard += [(now, e) for e in audio_events(drain(b))]
    assert len(heard) == 50 and not any(e.concealed for _, e in heard)
    audio = np.concatenate([e.pcm for _, e in heard])
    expected = PCMU.decode(PCMU.encode(tone(1000, 0, samples=8000)))
    assert np.array_equal(audio, expected)  # every frame, in order, at its own arrival
    assert not [e for e in drain(a) if isinstance(e, PacketDropped)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(0.0, 0.015),  # a frame, up to 15 ms late
            st.floats(0.05, 0.4).map(lambda x: -x),  # a pause
            st.just(None),  # a digit requested here
        ),
        min_size=5,
        max_size=120,
    )
)
def test_any_arrival_pattern_keeps_the_stream_regular(steps: list[float | None]) -> None:
    """A real-time source with jitter and pauses, digits anywhere: timestamps continuous,
    never more than 2.5 ptime without a packet, the stream's media time within a few
    frames of the wall clock, and every frame either sent or counted as suppressed."""
    config_a, config_b = config_pair()
    clock = Clock(session(config_a))
    nominal, last, frames = 10.0, 10.0, 0
    for step in steps:
        if step is None:
            clock.at(last, lambda t: clock.session.send_dtmf("3", t))
        elif step < 0:
            nominal -= step
        else:
            nominal += PTIME
            last = max(last, nominal + step)
            clock.audio(last, tone(700, 160 * frames))
            frames += 1
    clock.until(last + 0.5)
    packets = clock.rtp(config_b)
    assert_timestamps_continuous([p for _, p in packets])
    times = [t for t, _ in packets]
    assert max(np.diff(times)) <= 2.5 * PTIME + 1e-9
    t0, ts0 = packets[0][0], packets[0][1].timestamp
    for t, p in packets:
        if p.payload_type != 101:
            ahead = ((p.timestamp - ts0) % 2**32) / 8000 - (t - t0)
            assert -PTIME <= ahead <= 3 * PTIME
    silence = PCMU.silence(160)
    audio_sent = sum(1 for _, p in packets if p.payload_type == 0 and p.payload != silence)
    assert frames == audio_sent + clock.session.audio_suppressed


# --- G.711 codes passed on as they are (a relay) ------------------------------------------


def test_received_codes_are_reported_as_they_are() -> None:
    config_b, config_a = config_pair()
    b = session(config_b, report_payloads=True)
    b.start(0.0)
    a = Sender(config_a)
    reported: list[MediaEvent] = []
    for step, k in enumerate((0, 1, 3)):
        b.receive_datagram(a.audio(65530 + k), A, 0.02 * step)
        reported += [e for e in drain(b) if isinstance(e, PayloadReceived | AudioReceived)]
    assert [type(e) for e in reported] == [PayloadReceived] * 2 + [AudioReceived, PayloadReceived]
    first = reported[0]
    assert isinstance(first, PayloadReceived) and first.codec == "PCMU"
    assert first.payload == PCMU.encode(tone(500, 1000))
    assert "samples=160" in repr(first) and "\\x" not in repr(first)
    gap = reported[2]
    assert isinstance(gap, AudioReceived) and gap.concealed and len(gap.pcm) == 160


def test_a_payload_sink_gets_the_codes_at_once_and_a_gap_keeps_its_order() -> None:
    config_b, config_a = config_pair()
    sunk: list[tuple[bytes, str]] = []
    b = session(config_b, payload_sink=lambda payload, codec: sunk.append((payload, codec)))
    b.start(0.0)
    a = Sender(config_a)
    events: list[MediaEvent] = []
    for step, k in enumerate((0, 1, 3)):
        b.receive_datagram(a.audio(65530 + k), A, 0.02 * step)
        events += [e for e in drain(b) if isinstance(e, PayloadReceived | AudioReceived)]
    assert sunk == [(PCMU.encode(tone(500, 1000)), "PCMU"), (sunk[1][0], "PCMU")]
    # after the gap: the concealment and the payload as events, in that order
    assert [type(e) for e in events] == [AudioReceived, PayloadReceived]
    assert isinstance(events[0], AudioReceived) and events[0].concealed
    assert b.stats().packets_received == 3


@pytest.mark.parametrize(
    ("sent_as", "session_codec"), [("PCMU", "PCMU"), ("PCMA", "PCMU"), ("PCMU", "PCMA")]
)
def test_codes_sent_now_in_the_session_codec(sent_as: str, session_codec: str) -> None:
    config_a, config_b = config_pair(codec=session_codec)
    clock = Clock(session(config_a))
    pcm = tone(1000, 0, samples=320)
    codes = G711Codec(sent_as).encode(pcm)
    clock.at(10.01, lambda now: clock.session.send_payload_now(codes, sent_as, now))
    packets = [p for _, p in clock.rtp(config_b)][1:]  # after the start filler
    assert [len(p.payload) for p in packets] == [160, 160]  # a 40 ms block: two packets
    heard = G711Codec(session_codec).decode(b"".join(p.payload for p in packets))
    if sent_as == session_codec:
        assert b"".join(p.payload for p in packets) == codes
    else:  # PCMA to PCMU by a byte table: within G.711's own quantization
        assert np.max(np.abs(heard.astype(int) - pcm.astype(int))) <= np.max(np.abs(pcm)) // 16


def test_g711_law_conversion_round_trips() -> None:
    codes = bytes(range(256))
    assert convert_g711(codes, "PCMU", "PCMU") is codes
    there = convert_g711(codes, "PCMU", "PCMA")
    back = convert_g711(there, "PCMA", "PCMU")
    ulaw = G711Codec("PCMU")
    error = np.abs(ulaw.decode(back).astype(int) - ulaw.decode(codes).astype(int))
    assert np.max(error) <= np.max(np.abs(ulaw.decode(codes).astype(int))) // 16
