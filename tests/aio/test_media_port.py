"""RtpMediaPort: two ports on 127.0.0.1 negotiated by real SDES offer/answer exchange SRTP."""

from __future__ import annotations

import asyncio
import random
import secrets
import socket

import numpy as np
import pytest

from sip_gateway.aio import RtpMediaPort
from sip_gateway.media.errors import LocalMediaError
from sip_gateway.media.events import AudioReceived, DtmfReceived, MediaEvent, SourceLatched
from sip_gateway.sdp import LocalMedia, MediaProfile, answer_offer, build_offer, process_answer
from tests.interop.peers import free_port_block

RATE = 8000
PROFILE = MediaProfile(crypto_suites=("AES_CM_128_HMAC_SHA1_80",))


def local(port: RtpMediaPort, session_id: int) -> LocalMedia:
    host, number = port.local_address
    return LocalMedia(address=host, port=number, session_id=session_id)


def negotiate(a: RtpMediaPort, b: RtpMediaPort, profile: MediaProfile = PROFILE):
    offer = build_offer(profile, local(a, 1), key_source=secrets.token_bytes)
    answer, b_config = answer_offer(offer, profile, local(b, 2), key_source=secrets.token_bytes)
    return process_answer(offer, answer, profile), b_config


def tone(hz: float):
    n = 0

    def source() -> np.ndarray:
        nonlocal n
        t = np.arange(n, n + 160) / RATE
        n += 160
        return (12000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)

    return source


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


async def eventually(predicate, timeout: float = 3.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_open_binds_before_anything_is_negotiated():
    port = await RtpMediaPort.open("127.0.0.1")
    try:
        host, number = port.local_address
        assert host == "127.0.0.1" and number > 0
        assert not port.started and port.config is None
        assert port.stats().packets_sent == 0
        assert "bound" in repr(port)
        with pytest.raises(LocalMediaError):
            port.send_dtmf("1")
    finally:
        port.close()
        port.close()  # idempotent
    assert port.closed
    await asyncio.sleep(0.01)  # the transport closes its socket on the next loop turn
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", number))  # released


async def test_port_range_and_separate_rtcp_socket():
    low = free_port_block(4, tcp=False)
    low += low % 2  # the range's even port
    port = await RtpMediaPort.open("127.0.0.1", port_range=(low, low + 1), rtcp_mux=False)
    try:
        assert port.local_address[1] == low and not port.socket.rtcp_mux
        assert port.socket.rtcp_port == low + 1
    finally:
        port.close()


async def test_audio_and_dtmf_both_ways_then_close():
    heard_a: list[np.ndarray] = []
    heard_b: list[np.ndarray] = []
    events_b: list[MediaEvent] = []
    a = await RtpMediaPort.open(
        "127.0.0.1", audio_source=tone(1000), audio_sink=heard_a.append, rng=random.Random(1)
    )
    b = await RtpMediaPort.open(
        "127.0.0.1",
        audio_source=tone(440),
        audio_sink=heard_b.append,
        on_event=events_b.append,
    )
    try:
        a_config, b_config = negotiate(a, b)
        b.apply(b_config)
        a.apply(a_config)
        assert a.started and a.config == a_config and "running" in repr(a)
        assert a.endpoint is not None
        assert a.endpoint.session.local_ssrc == random.Random(1).getrandbits(32)
        await asyncio.sleep(0.6)
        a.send_dtmf("1")
        a.send_dtmf("#")
        await eventually(lambda: sum(isinstance(e, DtmfReceived) for e in events_b) == 2)
        a.apply(a_config)  # unchanged: same SRTP contexts, media goes on
        await asyncio.sleep(0.2)
    finally:
        a.close()
        b.close()
    stats_a, stats_b = a.stats(), b.stats()  # readable after close
    assert [e.digit for e in events_b if isinstance(e, DtmfReceived)] == ["1", "#"]
    assert any(isinstance(e, SourceLatched) for e in events_b)
    assert sum(isinstance(e, AudioReceived) for e in events_b) == len(heard_b)
    assert abs(dominant_hz(np.concatenate(heard_b)[-2400:]) - 1000) < 20
    assert abs(dominant_hz(np.concatenate(heard_a)[-2400:]) - 440) < 20
    assert stats_a.suite == "AES_CM_128_HMAC_SHA1_80" and stats_a.dtmf_sent == 2
    assert stats_b.packets_received > 20 and not stats_b.dropped
    assert stats_a.packets_received > 20 and not stats_a.dropped
    with pytest.raises(LocalMediaError):
        a.apply(a_config)
    with pytest.raises(LocalMediaError):
        a.send_dtmf("2")


async def test_a_failing_sink_does_not_hide_events():
    events: list[MediaEvent] = []

    def broken(_pcm: np.ndarray) -> None:
        raise RuntimeError("sink broke")

    a = await RtpMediaPort.open("127.0.0.1", audio_source=tone(1000))
    b = await RtpMediaPort.open("127.0.0.1", audio_sink=broken, on_event=events.append)
    try:
        a_config, b_config = negotiate(a, b)
        b.apply(b_config)
        a.apply(a_config)
        await eventually(lambda: sum(isinstance(e, AudioReceived) for e in events) > 5)
    finally:
        a.close()
        b.close()


async def test_repr_and_logs_carry_no_keys(caplog):
    caplog.set_level("DEBUG")
    a = await RtpMediaPort.open("127.0.0.1")
    b = await RtpMediaPort.open("127.0.0.1")
    try:
        a_config, b_config = negotiate(a, b)
        a.apply(a_config)
        b.apply(b_config)
        await asyncio.sleep(0.1)
        assert a.endpoint is not None
        text = repr(a) + repr(a.endpoint.session) + repr(a.stats()) + caplog.text
    finally:
        a.close()
        b.close()
    for key in (a_config.crypto.local_key, a_config.crypto.remote_key):
        assert key.hex() not in text
        assert str(a_config.crypto.local_attribute).split("inline:")[1] not in text


async def test_cut_through_port_sends_at_once_and_reports_on_arrival():
    """A cut-through port (the bridge's gateway leg) facing a default one (a carrier):
    each frame handed to send_audio leaves in the same call, each received frame reaches
    the sink in the datagram's own callback; a pause is filled with comfort silence."""
    heard_cut: list[np.ndarray] = []
    heard_peer: list[np.ndarray] = []
    cut = await RtpMediaPort.open("127.0.0.1", audio_sink=heard_cut.append, cut_through=True)
    peer = await RtpMediaPort.open(
        "127.0.0.1", audio_source=tone(440), audio_sink=heard_peer.append
    )
    cut.send_audio(np.zeros(160, np.int16))  # before apply: dropped, no error
    try:
        cut_config, peer_config = negotiate(cut, peer)
        peer.apply(peer_config)
        cut.apply(cut_config)
        assert cut.endpoint is not None
        source = tone(1000)
        for _ in range(40):
            sent = cut.stats().packets_sent
            cut.send_audio(source())
            assert cut.stats().packets_sent == sent + 1  # out at once, not on a tick
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # a pause: comfort silence keeps the stream going
        cut.send_dtmf("5")
        await asyncio.sleep(0.3)
    finally:
        cut.close()
        peer.close()
    stats = cut.stats()
    assert stats.silence_sent >= 10 and stats.dtmf_sent == 1 and not stats.dropped
    assert stats.playout_delay_ms == 0 and stats.packets_received > 20
    toned = [pcm for pcm in heard_peer if np.abs(pcm).max() > 4000]
    assert len(toned) >= 35  # the 40 frames sent, give or take the peer's playout start
    assert abs(dominant_hz(np.concatenate(toned)) - 1000) < 20
    assert len(heard_cut) == stats.packets_received  # one frame per packet, no playout ticks
    assert abs(dominant_hz(np.concatenate(heard_cut)[-2400:]) - 440) < 20
    with pytest.raises(LocalMediaError):
        peer.send_audio(np.zeros(160, np.int16))  # not a cut-through port
