"""MediaSocket and MediaEndpoint: two real UDP legs on 127.0.0.1 exchanging SRTP."""

from __future__ import annotations

import asyncio
import os
import random
import socket

import numpy as np
import pytest

from sip_gateway.aio.rtp import MediaEndpoint, MediaSocket
from sip_gateway.media.events import AudioReceived, DtmfReceived, MediaEvent, RtcpReceived
from sip_gateway.media.rtcp import Bye
from sip_gateway.media.rtp import RtpPacket
from sip_gateway.media.session import MediaSession
from sip_gateway.sdp.attributes import Direction
from sip_gateway.sdp.crypto import CryptoAttribute
from sip_gateway.sdp.media_config import Codec, MediaConfig, SdesCrypto, TelephoneEvent

SUITE = "AEAD_AES_128_GCM"
RATE = 8000


def crypto(local: bytes, remote: bytes) -> SdesCrypto:
    return SdesCrypto(
        suite=SUITE,
        tag=1,
        local_key=local,
        remote_key=remote,
        local_attribute=CryptoAttribute.create(tag=1, suite=SUITE, key_salt=local),
        remote_attribute=CryptoAttribute.create(tag=1, suite=SUITE, key_salt=remote),
    )


def config(remote: MediaSocket, local_key: bytes, remote_key: bytes) -> MediaConfig:
    return MediaConfig(
        codecs=(Codec(payload_type=0, name="PCMU", clock_rate=RATE),),
        telephone_event=TelephoneEvent(payload_type=101, clock_rate=RATE),
        ptime=20,
        remote_address=("127.0.0.1", remote.port),
        remote_rtcp_address=("127.0.0.1", remote.rtcp_port),
        rtcp_mux=remote.rtcp_mux,
        direction=Direction.SENDRECV,
        crypto=crypto(local_key, remote_key),
    )


class ToneSource:
    def __init__(self, hz: float) -> None:
        self.hz, self.n = hz, 0

    def __call__(self) -> np.ndarray:
        t = np.arange(self.n, self.n + 160) / RATE
        self.n += 160
        return (8000 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


async def leg_pair(
    mux: bool,
) -> tuple[MediaEndpoint, MediaEndpoint, list[MediaEvent], list[MediaEvent]]:
    sock_a = await MediaSocket.open("127.0.0.1", rtcp_mux=mux)
    sock_b = await MediaSocket.open("127.0.0.1", rtcp_mux=mux)
    ka, kb = os.urandom(28), os.urandom(28)
    events_a: list[MediaEvent] = []
    events_b: list[MediaEvent] = []
    session_a = MediaSession(config(sock_b, ka, kb), local_ssrc=0xA, rng=random.Random(1))
    session_b = MediaSession(config(sock_a, kb, ka), local_ssrc=0xB, rng=random.Random(2))
    a = MediaEndpoint(session_a, sock_a, audio_source=ToneSource(1000), on_event=events_a.append)
    b = MediaEndpoint(session_b, sock_b, audio_source=ToneSource(440), on_event=events_b.append)
    a.start()
    b.start()
    return a, b, events_a, events_b


def audio(events: list[MediaEvent]) -> np.ndarray:
    return np.concatenate([e.pcm for e in events if isinstance(e, AudioReceived)])


@pytest.mark.parametrize("mux", [True, False])
async def test_two_legs_exchange_srtp_tones(mux: bool) -> None:
    a, b, events_a, events_b = await leg_pair(mux)
    try:
        await asyncio.sleep(0.5)
        # a plain RTP datagram from a stranger: dropped and counted, nothing else changes
        intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        plain = RtpPacket(payload_type=0, sequence=9, timestamp=0, ssrc=0x666, payload=bytes(160))
        intruder.sendto(plain.serialize(), ("127.0.0.1", b.socket.port))
        intruder.close()
        a.send_dtmf("5")
        await asyncio.sleep(0.6)
        a.close()  # sends an SRTCP BYE
        await asyncio.sleep(0.05)
    finally:
        a.close()
        b.close()
    got_b, got_a = audio(events_b), audio(events_a)
    assert len(got_b) >= 0.8 * RATE and len(got_a) >= 0.8 * RATE
    assert abs(dominant_hz(got_b[-4000:]) - 1000) < 15
    assert abs(dominant_hz(got_a[-4000:]) - 440) < 15
    stats = b.session.stats()
    assert stats.dropped == {"auth_failed": 1}
    assert stats.remote_address == ("127.0.0.1", a.socket.port) and stats.latched
    assert 45 <= stats.packets_sent <= 60  # ~1.1 s at 50 pps
    assert [e.digit for e in events_b if isinstance(e, DtmfReceived)] == ["5"]
    assert a.socket.rtcp_mux is mux
    assert (a.socket.rtcp_port == a.socket.port) is mux
    reports = [e for e in events_b if isinstance(e, RtcpReceived)]
    assert reports and isinstance(reports[-1].packets[-1], Bye)


async def test_close_is_idempotent_and_stops_the_timer() -> None:
    a, b, _, _ = await leg_pair(True)
    await asyncio.sleep(0.1)
    a.close()
    a.close()
    sent = a.session.stats().packets_sent
    await asyncio.sleep(0.1)
    assert a.session.stats().packets_sent == sent and a.closed
    b.close()


async def test_open_in_a_port_range_and_refuse_a_taken_port() -> None:
    first = await MediaSocket.open("127.0.0.1", rtcp_mux=False)
    try:
        with pytest.raises(OSError):
            await MediaSocket.open("127.0.0.1", port=first.port)
        low = first.port + 2 - first.port % 2
        ranged = await MediaSocket.open("127.0.0.1", port_range=(low, low + 40), rtcp_mux=False)
        try:
            assert low <= ranged.port <= low + 40 and ranged.port % 2 == 0
            assert ranged.rtcp_port == ranged.port + 1
        finally:
            ranged.close()
    finally:
        first.close()


async def test_callback_errors_are_logged_and_media_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sock_a = await MediaSocket.open("127.0.0.1")
    sock_b = await MediaSocket.open("127.0.0.1")
    ka, kb = os.urandom(28), os.urandom(28)
    calls = {"n": 0}

    def broken() -> np.ndarray:
        calls["n"] += 1
        raise RuntimeError("app bug")

    a = MediaEndpoint(
        MediaSession(config(sock_b, ka, kb), local_ssrc=1, rng=random.Random(1)),
        sock_a,
        audio_source=broken,
    )
    b = MediaEndpoint(
        MediaSession(config(sock_a, kb, ka), local_ssrc=2, rng=random.Random(2)), sock_b
    )
    a.start()
    b.start()
    await asyncio.sleep(0.2)
    a.close()
    b.close()
    assert calls["n"] >= 5
    assert b.session.stats().packets_received >= 5  # comfort silence went on
    assert "media callback failed" in caplog.text
    for key in (ka, kb):
        assert key.hex() not in caplog.text


async def test_a_send_the_kernel_refuses_is_counted_and_media_goes_on() -> None:
    a, b, _, _ = await leg_pair(True)
    refused = {"n": 0}
    send = a.socket.send_rtp

    def full(data: bytes, address: tuple[str, int]) -> object:
        refused["n"] += 1
        if refused["n"] <= 3:
            raise BlockingIOError("send buffer full")
        return send(data, address)

    a.socket.send_rtp = full
    try:
        await asyncio.sleep(0.3)
    finally:
        a.close()
        b.close()
    assert a.socket.send_errors == 3
    assert b.session.stats().packets_received >= 5  # the later packets went out
    a.socket.send_rtp(b"late", ("127.0.0.1", 9))  # closed: dropped, nothing raised


async def test_a_failing_payload_sink_is_logged_and_media_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sock_a = await MediaSocket.open("127.0.0.1")
    sock_b = await MediaSocket.open("127.0.0.1")
    ka, kb = os.urandom(28), os.urandom(28)
    sunk: list[str] = []

    def sink(payload: bytes, codec: str) -> None:
        sunk.append(codec)
        if len(sunk) == 1:
            raise RuntimeError("relay bug")

    a = MediaEndpoint(
        MediaSession(config(sock_b, ka, kb), local_ssrc=1, rng=random.Random(1)),
        sock_a,
        audio_source=ToneSource(440),
    )
    session_b = MediaSession(
        config(sock_a, kb, ka),
        local_ssrc=2,
        rng=random.Random(2),
        cut_through=True,
        payload_sink=sink,
    )
    b = MediaEndpoint(session_b, sock_b)
    a.start()
    b.start()
    await asyncio.sleep(0.2)
    a.close()
    b.close()
    assert len(sunk) >= 5 and set(sunk) == {"PCMU"}
    assert "media callback failed" in caplog.text
