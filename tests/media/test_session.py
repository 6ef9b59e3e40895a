"""MediaSession: two sans-IO sessions wired in memory on a virtual clock."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sip_gateway.media.errors import LocalMediaError, UnsupportedCodecError
from sip_gateway.media.events import (
    AudioReceived,
    DtmfReceived,
    MediaEvent,
    PacketDropped,
    RtcpReceived,
    SourceLatched,
)
from sip_gateway.media.g711 import G711Codec, ulaw_encode
from sip_gateway.media.rtcp import Bye, ReceiverReport, SenderReport, SourceDescription
from sip_gateway.media.rtp import RtpPacket, is_rtcp
from sip_gateway.media.session import MediaSession
from sip_gateway.media.srtp import SrtpSession
from sip_gateway.sdp.attributes import Direction
from sip_gateway.sdp.crypto import SUITES, CryptoAttribute
from sip_gateway.sdp.media_config import Codec, MediaConfig, SdesCrypto, TelephoneEvent

A = ("10.0.0.1", 40000)
B = ("10.0.0.2", 50000)
RATE = 8000


def sdes(suite: str, local: bytes, remote: bytes) -> SdesCrypto:
    return SdesCrypto(
        suite=suite,
        tag=1,
        local_key=local,
        remote_key=remote,
        local_attribute=CryptoAttribute.create(tag=1, suite=suite, key_salt=local),
        remote_attribute=CryptoAttribute.create(tag=1, suite=suite, key_salt=remote),
    )


def config_pair(
    *,
    suite: str = "AES_CM_128_HMAC_SHA1_80",
    codec: str = "PCMU",
    mux: bool = True,
    ptime: int = 20,
    a_sees_b: tuple[str, int] = B,
    b_sees_a: tuple[str, int] = A,
) -> tuple[MediaConfig, MediaConfig]:
    size = SUITES[suite].key_salt_length
    ka, kb = os.urandom(size), os.urandom(size)
    pt = {"PCMU": 0, "PCMA": 8}.get(codec, 96)

    def one(remote: tuple[str, int], local_key: bytes, remote_key: bytes) -> MediaConfig:
        return MediaConfig(
            codecs=(Codec(payload_type=pt, name=codec, clock_rate=RATE),),
            telephone_event=TelephoneEvent(payload_type=101, clock_rate=RATE),
            ptime=ptime,
            remote_address=remote,
            remote_rtcp_address=remote if mux else (remote[0], remote[1] + 1),
            rtcp_mux=mux,
            direction=Direction.SENDRECV,
            crypto=sdes(suite, local_key, remote_key),
        )

    return one(a_sees_b, ka, kb), one(b_sees_a, kb, ka)


def tone(hz: float, start: int, samples: int = 160, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(start, start + samples) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def dominant_hz(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@dataclasses.dataclass
class Side:
    session: MediaSession
    address: tuple[str, int]
    source: Callable[[int], np.ndarray | None] | None = None
    events: list[MediaEvent] = dataclasses.field(default_factory=list)
    sent: list[tuple[float, bytes, tuple[str, int]]] = dataclasses.field(default_factory=list)
    frames: int = 0

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class Net:
    """Both sessions, a virtual clock and an in-memory network with a fixed delay."""

    def __init__(self, config_a: MediaConfig, config_b: MediaConfig, *, delay: float = 0.01):
        self.now = 100.0
        self.delay = delay
        self.a = Side(MediaSession(config_a, local_ssrc=0xAAAA0001, rng=random.Random(1)), A)
        self.b = Side(MediaSession(config_b, local_ssrc=0xBBBB0002, rng=random.Random(2)), B)
        self.sides = (self.a, self.b)
        self.queue: list[tuple[float, int, bytes, tuple[str, int], tuple[str, int]]] = []
        self.seq = 0
        self.filter: Callable[[bytes, tuple[str, int]], bool] | None = None
        for side in self.sides:
            side.session.start(self.now, unix_offset=1_700_000_000.0)

    def inject(self, side: Side, data: bytes, source: tuple[str, int]) -> None:
        side.session.receive_datagram(data, source, self.now)
        self.collect(side)

    def collect(self, side: Side) -> None:
        for data, dest in side.session.datagrams_to_send():
            side.sent.append((self.now, data, dest))
            if self.filter is not None and not self.filter(data, dest):
                continue
            self.seq += 1
            src = side.address
            if is_rtcp(data) and not side.session.config.rtcp_mux:
                src = (src[0], src[1] + 1)
            heapq.heappush(self.queue, (self.now + self.delay, self.seq, data, src, dest))
        while (event := side.session.next_event()) is not None:
            side.events.append(event)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            timers = [s.session.get_timer() for s in self.sides]
            times = [t for t in timers if t is not None]
            if self.queue:
                times.append(self.queue[0][0])
            when = min(times)
            if when > end:
                self.now = end
                return
            self.now = max(self.now, when)
            while self.queue and self.queue[0][0] <= self.now:
                _, _, data, src, dest = heapq.heappop(self.queue)
                for side in self.sides:
                    if dest in (side.address, (side.address[0], side.address[1] + 1)):
                        side.session.receive_datagram(data, src, self.now)
                        self.collect(side)
            for side in self.sides:
                timer = side.session.get_timer()
                if timer is not None and timer <= self.now:
                    for _ in range(side.session.ticks_due(self.now)):
                        frame = side.source(side.frames) if side.source else None
                        side.frames += 1
                        if frame is not None:
                            side.session.send_audio(frame, self.now)
                    side.session.handle_timer(self.now)
                    self.collect(side)


def received_audio(side: Side) -> np.ndarray:
    frames = [e.pcm for e in side.of(AudioReceived)]
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)


def read_rtp(config: MediaConfig, datagrams: list[bytes]) -> list[RtpPacket]:
    """Decrypt what a side sent with the keys of the side it sent to."""
    assert isinstance(config.crypto, SdesCrypto)
    reader = SrtpSession(config.crypto)
    packets = []
    for data in datagrams:
        plain = reader.unprotect(data)
        assert plain is not None
        packets.append(RtpPacket.parse(plain))
    return packets


def rtp_sent(side: Side) -> list[tuple[float, bytes, tuple[str, int]]]:
    return [item for item in side.sent if not is_rtcp(item[1])]


# --- audio ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "codec"),
    [
        ("AES_CM_128_HMAC_SHA1_80", "PCMU"),
        ("AES_CM_128_HMAC_SHA1_32", "PCMA"),
        ("AEAD_AES_128_GCM", "PCMU"),
        ("AEAD_AES_256_GCM", "PCMA"),
    ],
)
def test_tone_arrives(suite: str, codec: str) -> None:
    net = Net(*config_pair(suite=suite, codec=codec))
    net.a.source = lambda n: tone(1000, n * 160)
    net.run(1.0)
    audio = received_audio(net.b)
    assert len(audio) >= 0.8 * RATE
    steady = audio[1600:9600] if len(audio) >= 9600 else audio[800:]
    assert abs(dominant_hz(steady) - 1000) < 10
    assert np.sqrt(np.mean(steady.astype(float) ** 2)) > 4000
    # the other way is comfort silence: audio events, all quiet
    back = received_audio(net.a)
    assert len(back) > 0 and np.max(np.abs(back)) < 100
    stats = net.b.session.stats()
    assert stats.dropped == {} and stats.lost == 0 and stats.suite == suite


def test_wire_is_srtp_not_g711() -> None:
    net = Net(*config_pair())
    net.a.source = lambda n: tone(1000, n * 160)
    net.run(0.2)
    plain = tone(1000, 0)
    # 1000 Hz at 8 kHz repeats every 8 samples: every frame is the same PCMU payload
    pcmu = ulaw_encode(plain)
    assert all(ulaw_encode(tone(1000, 160 * n)) == pcmu for n in range(10))
    sent = rtp_sent(net.a)
    assert len(sent) >= 9  # 50 packets a second for 0.2 s
    for _, data, _ in sent:
        assert len(data) == 12 + 160 + 10
        assert plain.tobytes()[:160] not in data
        assert pcmu[:16] not in data  # the G.711 payload itself never shows


def test_comfort_silence_at_50_pps_when_idle() -> None:
    net = Net(*config_pair())
    net.run(2.0)
    for side in net.sides:
        times = [t for t, _, _ in rtp_sent(side)]
        assert 99 <= len(times) <= 101
        gaps = np.diff(times)
        assert np.allclose(gaps, 0.02, atol=1e-6)
        assert side.session.stats().silence_sent == len(times)
    assert not net.a.of(PacketDropped) and not net.b.of(PacketDropped)


def test_rtp_timestamps_and_sequence_are_continuous() -> None:
    config_a, config_b = config_pair()
    net = Net(config_a, config_b)
    net.a.source = lambda n: tone(1000, n * 160) if n % 10 < 5 else None
    net.run(0.5)
    packets = read_rtp(config_b, [d for _, d, _ in rtp_sent(net.a)])
    seqs = [p.sequence for p in packets]
    stamps = [p.timestamp for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    assert all((b - a) % 2**32 == 160 for a, b in itertools.pairwise(stamps))
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert {p.ssrc for p in packets} == {0xAAAA0001}


def test_concealment_repeats_once_attenuated_then_silence() -> None:
    net = Net(*config_pair())
    net.a.source = lambda n: tone(1000, n * 160)
    count = {"n": 0}

    def lose_a_burst(data: bytes, dest: tuple[str, int]) -> bool:
        if is_rtcp(data) or dest != B:
            return True
        count["n"] += 1
        return not 20 <= count["n"] < 24  # lose 4 packets in a row

    net.filter = lose_a_burst
    net.run(1.0)
    events = net.b.of(AudioReceived)
    concealed = [i for i, e in enumerate(events) if e.concealed]
    starts = [i for i in concealed if i > 0 and not events[i - 1].concealed]
    assert len(starts) == 1, "one burst concealed (playout start aside)"
    first, before = events[starts[0]], events[starts[0] - 1]
    assert np.array_equal(first.pcm, (before.pcm.astype(np.float32) * 0.5).astype(np.int16))
    assert first.pcm.any()
    run = [i for i in concealed if i > starts[0]][:3]
    assert run == [starts[0] + 1, starts[0] + 2, starts[0] + 3]
    assert not any(events[i].pcm.any() for i in run)
    assert net.b.session.stats().concealed == len(concealed)


# --- DTMF ----------------------------------------------------------------------------------


def test_dtmf_digits_arrive_once_each() -> None:
    net = Net(*config_pair())
    net.a.source = lambda n: tone(1000, n * 160)
    net.run(0.2)
    for digit in "15#*9D":
        net.a.session.send_dtmf(digit, net.now)
    net.run(3.0)
    got = net.b.of(DtmfReceived)
    assert [d.digit for d in got] == list("15#*9D")
    assert all(95 <= d.duration_ms <= 105 for d in got)
    assert net.a.session.stats().dtmf_sent == 6
    stats = net.b.session.stats()
    assert stats.dtmf_received == 6
    assert stats.lost == 0 and stats.late == 0
    assert 10 <= stats.playout_delay_ms <= 50
    # each digit mutes 7 ticks (5 updates, 2 more end packets): concealed, never "lost"
    assert stats.concealed <= 6 * 7 + 2


def test_dtmf_suppresses_audio_and_keeps_ptime() -> None:
    config_a, config_b = config_pair()
    net = Net(config_a, config_b)
    net.a.source = lambda n: tone(1000, n * 160)
    net.run(0.1)
    start = len(rtp_sent(net.a))
    net.a.session.send_dtmf("7", net.now, duration_ms=120)
    net.run(0.5)
    sent = rtp_sent(net.a)
    packets = read_rtp(config_b, [d for _, d, _ in sent])
    kinds = [p.payload_type for p in packets[start:]]
    first = kinds.index(101)
    events = kinds[first:]
    assert events[: 6 + 2] == [101] * 8  # 120 ms = 6 updates (last is the first end) + 2 repeats
    assert events[8] == 0  # then audio again
    times = [t for t, _, _ in sent]
    assert np.allclose(np.diff(times), 0.02, atol=1e-6)
    ends = [p for p in packets if p.payload_type == 101 and p.payload[1] & 0x80]
    assert len(ends) == 3 and len({p.timestamp for p in ends}) == 1


def test_dtmf_without_telephone_event_refused() -> None:
    config_a, _ = config_pair()
    config_a = dataclasses.replace(config_a, telephone_event=None)
    session = MediaSession(config_a, local_ssrc=1, rng=random.Random(0))
    with pytest.raises(LocalMediaError):
        session.send_dtmf("1", 0.0)
    session2 = MediaSession(config_pair()[0], local_ssrc=1, rng=random.Random(0))
    with pytest.raises(LocalMediaError):
        session2.send_dtmf("X", 0.0)


# --- latching --------------------------------------------------------------------------------


def test_latches_to_the_authenticated_source_not_the_sdp_address() -> None:
    nat = ("192.0.2.7", 61000)  # what A's SDP claims; A really sends from A
    net = Net(*config_pair(b_sees_a=nat))
    net.a.source = lambda n: tone(1000, n * 160)
    net.b.source = lambda n: tone(440, n * 160)
    net.run(1.0)
    latched = net.b.of(SourceLatched)
    assert len(latched) == 1
    assert latched[0].address == A and latched[0].previous == nat
    assert latched[0].ssrc == 0xAAAA0001
    assert net.b.session.remote_address == A
    destinations = [dest for _, _, dest in rtp_sent(net.b)]
    assert destinations[0] == nat and destinations[-1] == A
    assert abs(dominant_hz(received_audio(net.a)[-4000:]) - 440) < 10


def test_never_latches_on_unauthenticated_packets() -> None:
    config_a, config_b = config_pair()
    net = Net(config_a, config_b)
    attacker = ("203.0.113.66", 12345)
    plain = RtpPacket(payload_type=0, sequence=1, timestamp=0, ssrc=0x66666666, payload=bytes(160))
    net.inject(net.b, plain.serialize(), attacker)
    other_keys = config_pair()[0].crypto
    assert isinstance(other_keys, SdesCrypto)
    forged = SrtpSession(other_keys).protect(plain.serialize())
    net.inject(net.b, forged, attacker)
    assert not net.b.of(SourceLatched)
    assert net.b.session.remote_address == A
    assert net.b.session.stats().dropped == {"auth_failed": 2}
    net.run(0.2)
    assert net.b.of(SourceLatched)[0].address == A


def test_other_source_or_ssrc_after_latch_dropped_then_relatch_after_silence() -> None:
    config_a, config_b = config_pair()
    net = Net(config_a, config_b)
    net.a.source = lambda n: tone(1000, n * 160)
    net.run(0.3)
    # a second sender holding A's key (a replaying middlebox, or a re-routed leg)
    twin = MediaSession(config_a, local_ssrc=0x7777, rng=random.Random(9))
    twin.start(net.now)
    twin.handle_timer(net.now)
    (data, _), *_ = twin.datagrams_to_send()
    other = ("10.0.0.99", 40000)
    net.inject(net.b, data, other)
    assert net.b.session.stats().dropped == {"wrong_source": 1}
    twin.handle_timer(net.now + 0.02)
    (data, _), *_ = twin.datagrams_to_send()
    net.inject(net.b, data, A)
    assert net.b.session.stats().dropped == {"wrong_source": 1, "wrong_ssrc": 1}
    # A goes silent for more than a second; the twin takes over
    net.filter = lambda data, dest: dest != B
    net.run(1.2)
    twin.handle_timer(net.now)
    for data, _ in twin.datagrams_to_send():
        net.inject(net.b, data, other)
    latched = net.b.of(SourceLatched)
    assert latched[-1].address == other and latched[-1].ssrc == 0x7777


# --- bad input --------------------------------------------------------------------------------


def test_tampered_replayed_garbage_dropped_counted_and_stream_goes_on() -> None:
    net = Net(*config_pair(mux=False))
    net.a.source = lambda n: tone(1000, n * 160)
    net.run(0.5)
    captured = rtp_sent(net.a)[-5][1]  # long received
    net.inject(net.b, captured, A)  # replayed
    tampered = bytearray(captured)
    tampered[3] ^= 0x40  # a sequence number not seen yet, so the tag is what fails
    net.inject(net.b, bytes(tampered), A)
    for junk in (
        b"",
        b"\x00",
        os.urandom(7),
        b"\x80" * 11,
        os.urandom(400),
        b"\x80\xc8" + os.urandom(60),
    ):
        net.inject(net.b, junk, ("198.51.100.1", 9))
    rtcp = [d for _, d, _ in net.a.sent if is_rtcp(d)]
    before = len(net.b.of(AudioReceived))
    net.run(0.5)
    assert len(net.b.of(AudioReceived)) - before >= 24
    dropped = net.b.session.stats().dropped
    assert dropped["replayed"] == 1
    assert dropped["auth_failed"] >= 1
    assert sum(dropped.values()) == 8
    reasons = {e.reason for e in net.b.of(PacketDropped)}
    assert reasons == set(dropped)
    assert net.b.session.remote_address == A  # nothing bad moved the latch
    del rtcp


def test_drop_events_are_aggregated() -> None:
    net = Net(*config_pair())
    for _ in range(500):
        net.inject(net.b, os.urandom(100), ("198.51.100.1", 9))
    net.run(1.5)
    events = net.b.of(PacketDropped)
    reasons = {e.reason for e in events}
    assert reasons <= {"malformed", "auth_failed"}
    for reason in reasons:
        mine = [e for e in events if e.reason == reason]
        assert len(mine) <= 2  # the first one at once, the rest a second later
        assert mine[-1].total == sum(e.count for e in mine)
    assert sum(e.count for e in events) == 500


def test_unknown_payload_type_counted() -> None:
    config_a, config_b = config_pair()
    net = Net(config_a, config_b)
    assert isinstance(config_a.crypto, SdesCrypto)
    writer = SrtpSession(config_a.crypto)
    packet = RtpPacket(payload_type=18, sequence=5, timestamp=0, ssrc=0xAAAA0001, payload=b"x" * 20)
    net.inject(net.b, writer.protect(packet.serialize()), A)
    assert net.b.session.stats().dropped == {"unknown_payload_type": 1}


# --- RTCP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mux", [True, False])
def test_rtcp_reports_exchanged_and_parsed(mux: bool) -> None:
    net = Net(*config_pair(mux=mux))
    net.a.source = lambda n: tone(1000, n * 160)
    net.run(12.0)
    for side, peer in ((net.a, net.b), (net.b, net.a)):
        reports = side.of(RtcpReceived)
        assert 2 <= len(reports) <= 8
        sent = [(t, d) for t, d, _ in peer.sent if is_rtcp(d)]
        assert len(sent) == len(reports)
        gaps = np.diff([t for t, _ in sent])
        assert all(1.0 < g < 7.0 for g in gaps)
        last = reports[-1].packets
        assert isinstance(last[0], SenderReport)
        assert isinstance(last[1], SourceDescription)
        assert last[1].chunks[0].cname == peer.session.cname
        block = last[0].reports[0]
        assert block.ssrc == side.session.local_ssrc
        assert block.cumulative_lost == 0
        rtt = side.session.stats().round_trip_time
        assert rtt is not None and 0.0 <= rtt < 0.1
        destinations = {dest for _, d, dest in peer.sent if is_rtcp(d)}
        expected = side.address if mux else (side.address[0], side.address[1] + 1)
        assert destinations == {expected}
    assert net.b.session.stats().rtcp_received >= 2


def test_close_sends_bye() -> None:
    net = Net(*config_pair())
    net.run(0.1)
    net.a.session.close(net.now)
    net.collect(net.a)
    assert net.a.session.get_timer() is None
    net.run(0.1)
    last = net.b.of(RtcpReceived)[-1].packets
    assert isinstance(last[-1], Bye) and last[-1].sources == (0xAAAA0001,)
    assert isinstance(last[0], SenderReport | ReceiverReport)


# --- direction and update ---------------------------------------------------------------------


def test_recvonly_sends_no_rtp_but_plays() -> None:
    config_a, config_b = config_pair()
    config_b = dataclasses.replace(config_b, direction=Direction.RECVONLY)
    net = Net(config_a, config_b)
    net.a.source = lambda n: tone(1000, n * 160)
    net.b.source = lambda n: tone(440, n * 160)
    net.run(0.5)
    assert not rtp_sent(net.b)
    assert len(received_audio(net.b)) > 0


def test_update_with_same_keys_keeps_srtp_state() -> None:
    config_a, config_b = config_pair()
    net = Net(config_a, config_b)
    net.run(0.3)
    captured = rtp_sent(net.a)[-5][1]  # long received
    net.b.session.update(dataclasses.replace(config_b, ptime=20), net.now)
    net.inject(net.b, captured, A)
    assert net.b.session.stats().dropped == {"replayed": 1}  # the replay window survived
    net.run(0.3)
    assert net.b.session.stats().dropped == {"replayed": 1}


def test_update_with_new_keys_and_codec() -> None:
    config_a, config_b = config_pair()
    net = Net(config_a, config_b)
    net.a.source = lambda n: tone(1000, n * 160)
    net.run(0.3)
    new_a, new_b = config_pair(codec="PCMA")
    new_a = dataclasses.replace(new_a, remote_address=B, remote_rtcp_address=B)
    new_b = dataclasses.replace(new_b, remote_address=A, remote_rtcp_address=A)
    net.a.session.update(new_a, net.now)
    net.b.session.update(new_b, net.now)
    net.run(0.6)
    tail = received_audio(net.b)[-2400:]
    assert abs(dominant_hz(tail) - 1000) < 10
    assert net.b.session.stats().dropped.get("auth_failed", 0) <= 2  # packets in flight


def test_ptime_30_runs_at_33_pps() -> None:
    net = Net(*config_pair(ptime=30))
    net.a.source = lambda n: tone(1000, n * 240, samples=240)
    net.run(1.5)
    assert 49 <= len(rtp_sent(net.a)) <= 51
    assert abs(dominant_hz(received_audio(net.b)[2400:]) - 1000) < 10


def test_bad_configs_refused() -> None:
    config_a, _ = config_pair()
    with pytest.raises(UnsupportedCodecError):
        opus = Codec(payload_type=111, name="opus", clock_rate=48000, channels=2)
        MediaSession(
            dataclasses.replace(config_a, codecs=(opus,)), local_ssrc=1, rng=random.Random()
        )
    with pytest.raises(LocalMediaError):
        crypto = config_a.crypto
        assert isinstance(crypto, SdesCrypto)
        f8 = sdes("F8_128_HMAC_SHA1_80", crypto.local_key, crypto.remote_key)
        MediaSession(dataclasses.replace(config_a, crypto=f8), local_ssrc=1, rng=random.Random())


def test_send_audio_validates_and_overflow_counted() -> None:
    session = MediaSession(config_pair()[0], local_ssrc=1, rng=random.Random(0))
    with pytest.raises(LocalMediaError):
        session.send_audio(np.zeros(160, dtype=np.float32), 0.0)
    session.send_audio(np.zeros(160 * 15, dtype=np.int16), 0.0)
    assert session.stats().audio_overflow == 160 * 5


def test_repr_has_no_keys() -> None:
    config_a, _ = config_pair()
    session = MediaSession(config_a, local_ssrc=0x1234, rng=random.Random(0))
    crypto = config_a.crypto
    assert isinstance(crypto, SdesCrypto)
    text = repr(session) + repr(session.stats()) + repr(config_a)
    for key in (crypto.local_key, crypto.remote_key):
        assert key.hex() not in text and repr(key) not in text


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(min_size=2, max_size=300).map(lambda b: b"\x80" + b[1:]),
        st.binary(min_size=2, max_size=300).map(lambda b: b"\x80\xc8" + b[2:]),
    ),
    port=st.integers(1, 65535),
)
def test_any_datagram_is_dropped_never_raises(data: bytes, port: int) -> None:
    session = _FUZZ_TARGET
    before = sum(session.stats().dropped.values())
    session.receive_datagram(data, ("198.51.100.9", port), 1.0)
    assert sum(session.stats().dropped.values()) == before + 1
    assert session.remote_address == A
    while session.next_event() is not None:
        pass


_FUZZ_TARGET = MediaSession(config_pair()[1], local_ssrc=5, rng=random.Random(5))


@settings(max_examples=200, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 181), st.integers(1, 255)), min_size=1, max_size=4))
def test_mutated_srtp_is_dropped(flips: list[tuple[int, int]]) -> None:
    config_a, config_b = _MUTATION_CONFIGS
    assert isinstance(config_a.crypto, SdesCrypto)
    writer = SrtpSession(config_a.crypto)
    session = MediaSession(config_b, local_ssrc=5, rng=random.Random(5))
    packet = RtpPacket(
        payload_type=0, sequence=100, timestamp=0, ssrc=0xAAAA0001, payload=bytes(160)
    )
    data = bytearray(writer.protect(packet.serialize()))
    original = bytes(data)
    for index, mask in flips:
        data[index] ^= mask
    assume(bytes(data) != original)
    session.receive_datagram(bytes(data), A, 1.0)
    assert session.stats().packets_received == 0
    assert sum(session.stats().dropped.values()) == 1


_MUTATION_CONFIGS = config_pair()


def test_late_timer_skips_old_ticks_instead_of_bursting() -> None:
    config_a, config_b = config_pair()
    session = MediaSession(config_a, local_ssrc=1, rng=random.Random(3))
    session.start(10.0)
    session.handle_timer(10.0)
    session.handle_timer(11.0)  # the loop stalled for a second: 50 ticks due
    sent = [d for d, _ in session.datagrams_to_send() if not is_rtcp(d)]
    assert len(sent) == 1 + 10
    packets = read_rtp(config_b, sent)
    assert (packets[1].timestamp - packets[0].timestamp) % 2**32 == 41 * 160  # time moved on
    assert packets[1].marker  # nothing was sent for the skipped ticks: a new talkspurt
    assert session.ticks_due(11.0) == 0 and session.get_timer() == pytest.approx(11.02)


def test_audio_of_any_chunk_size_is_reframed() -> None:
    config_a, config_b = config_pair()
    session = MediaSession(config_a, local_ssrc=1, rng=random.Random(3))
    pcm = tone(1000, 0, samples=360)
    for chunk in (pcm[:100], pcm[100:350], pcm[350:]):
        session.send_audio(chunk, 0.0)
    session.start(0.0)
    for k in range(4):
        session.handle_timer(k * 0.02)
    sent = [d for d, _ in session.datagrams_to_send() if not is_rtcp(d)]
    payloads = [p.payload for p in read_rtp(config_b, sent)]
    codec = G711Codec("PCMU")
    assert payloads[0] == codec.encode(pcm[:160]) and payloads[1] == codec.encode(pcm[160:320])
    assert payloads[2] == codec.encode(np.concatenate((pcm[320:], np.zeros(120, np.int16))))
    assert payloads[3] == codec.silence(160)
