"""CallMedia's cut-through path on real legs: a WebRtcLeg as the browser (ICE, DTLS-SRTP on
loopback) and a default-mode RtpMediaPort as the carrier (SDES-SRTP), no signaling."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import struct
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from bridge.media.pipeline import CallMedia, PipelineConfig
from bridge.media.transcode import OpusEncoder, OpusEncoderConfig
from bridge.media.webrtc_leg import WebRtcLeg, WebRtcLegConfig
from sip_gateway.aio import RtpMediaPort
from sip_gateway.media.g711 import G711Codec
from sip_gateway.media.rtp import RtpPacket
from sip_gateway.sdp import (
    OPUS,
    PCMU,
    CodecSpec,
    LocalMedia,
    MediaConfig,
    MediaProfile,
    MediaSecurity,
    answer_offer,
    build_offer,
    parse_sdp,
    process_answer,
)
from tests.aio.test_media_port import negotiate as negotiate_sdes

RATE = 8000
CODEC = G711Codec("PCMU")


def tone(hz: float, start: int, samples: int = 160) -> np.ndarray:
    t = np.arange(start, start + samples) / RATE
    return (10000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def rtp(seq: int, payload: bytes, *, pt: int = 0, ssrc: int = 0xB0B) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + payload


def local_of(leg: WebRtcLeg) -> LocalMedia:
    address, port = leg.default_address
    return LocalMedia(address=address, port=port, session_id=1, ice=leg.local_ice)


def dtls_configs(
    browser: WebRtcLeg, bridge: WebRtcLeg, codec: CodecSpec = PCMU
) -> tuple[MediaConfig, MediaConfig]:
    """``codec`` + telephone-event offered by the browser and answered by the bridge."""

    def profile(leg: WebRtcLeg) -> MediaProfile:
        return MediaProfile(
            security=MediaSecurity.DTLS, codecs=(codec,), fingerprints=leg.fingerprints
        )

    offer = build_offer(profile(browser), local_of(browser), key_source=secrets.token_bytes)
    answer, bridge_config = answer_offer(
        parse_sdp(offer.to_bytes()),
        profile(bridge),
        local_of(bridge),
        key_source=secrets.token_bytes,
    )
    browser_config = process_answer(offer, parse_sdp(answer.to_bytes()), profile(browser))
    return browser_config, bridge_config


async def wait_for(condition: Callable[[], bool], within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling a plain predicate
            await asyncio.sleep(0.01)


class Call:
    """The pipeline between a browser leg and a carrier port, both real."""

    def __init__(self) -> None:
        self.from_bridge: list[RtpPacket] = []  # what the browser received
        self.at_carrier: list[np.ndarray] = []  # what the carrier played out
        self.carrier_source: Callable[[], np.ndarray | None] = lambda: None

    async def start(
        self, *, carrier_comfort_noise: bool = True, codec: CodecSpec = PCMU, ptime: int = 20
    ) -> None:
        self.media = CallMedia(PipelineConfig(webrtc=WebRtcLegConfig()))
        await self.media.open()
        port = await self.media.new_webrtc_port(controlling=False)
        self.browser = await WebRtcLeg.create(
            WebRtcLegConfig(),
            on_rtp=lambda data: self.from_bridge.append(RtpPacket.parse(data)),
            controlling=True,
        )
        browser_config, bridge_config = dtls_configs(self.browser, port.leg, codec)
        port.apply(bridge_config)
        await self.browser.connect(browser_config, controlling=True)
        await wait_for(lambda: port.leg.state == "connected")
        self.carrier = await RtpMediaPort.open(
            "127.0.0.1",
            audio_source=self._source,
            audio_sink=self.at_carrier.append,
            comfort_noise=carrier_comfort_noise,
        )
        profile = MediaProfile(crypto_suites=("AES_CM_128_HMAC_SHA1_80",), ptime=ptime)
        gateway_config, carrier_config = negotiate_sdes(
            self.media.gateway_port, self.carrier, profile
        )
        self.carrier.apply(carrier_config)
        self.media.gateway_port.apply(gateway_config)
        self.media.gateway_config_applied(gateway_config)

    def _source(self) -> np.ndarray | None:
        return self.carrier_source()  # looked up at each tick: a test swaps it

    async def close(self) -> None:
        self.carrier.close()
        await self.media.aclose()
        await self.browser.close()


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    made = Call()
    yield made
    await made.close()


async def test_browser_audio_goes_out_at_once_and_late_packets_are_dropped(call: Call) -> None:
    await call.start()
    gateway = call.media.gateway_port
    counters = call.media.counters
    sent: list[int] = []
    for count, seq in enumerate((1, 2, 4, 3, 5), start=1):
        call.browser.send_rtp(rtp(seq, CODEC.encode(tone(1000, 160 * seq))))
        await wait_for(lambda: counters.browser_packets == count)  # noqa: B023 - awaited here
        stats = gateway.stats()
        sent.append(stats.packets_sent - stats.silence_sent)
    # forwarded in the datagram's own callback: 1, 2, 4, then 3 is late, then 5
    assert sent == [1, 2, 3, 3, 4]
    assert (counters.browser_late, counters.browser_audio_frames) == (1, 4)
    call.browser.send_rtp(rtp(6, CODEC.encode(tone(1000, 960, samples=480))))  # 60 ms
    await wait_for(lambda: counters.browser_packets == 6)
    stats = gateway.stats()
    assert stats.packets_sent - stats.silence_sent == 4 + 3  # as three 20 ms packets
    await wait_for(lambda: sum(1 for pcm in call.at_carrier if np.abs(pcm).max() > 5000) >= 7)
    assert call.media.stats() == counters and call.media.stats() is not counters


async def test_carrier_audio_gaps_and_digits_reach_the_browser_in_time(call: Call) -> None:
    frames = iter(range(10_000))
    call.carrier_source = lambda: tone(440, 160 * next(frames))
    await call.start(carrier_comfort_noise=False)  # no audio: no packets, a timestamp gap
    await wait_for(lambda: len(call.from_bridge) >= 20)
    call.carrier_source = lambda: None  # a pause of about 200 ms
    await asyncio.sleep(0.2)
    call.carrier_source = lambda: tone(440, 160 * next(frames))
    await wait_for(lambda: call.media.counters.gateway_gaps == 1)
    call.carrier.send_dtmf("7")
    await wait_for(lambda: call.media.counters.gateway_digits == 1)
    await wait_for(lambda: sum(p.payload_type == 101 for p in call.from_bridge) == 7)
    await asyncio.sleep(0.1)
    packets = list(call.from_bridge)
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(packets))
    steps = [(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(packets)]
    kinds = [(a.payload_type, b.payload_type) for a, b in itertools.pairwise(packets)]
    pause = next(i for i, step in enumerate(steps) if step > 160 and kinds[i] == (0, 0))
    assert steps[pause] % 160 == 0 and 6 * 160 <= steps[pause] <= 15 * 160  # about 200 ms
    first_event = next(i for i, p in enumerate(packets) if p.payload_type == 101)
    # the digit starts after the gap the carrier's event packets left (7 frames), then
    # its own 7 packets share that timestamp and the audio after it is 7 frames later
    assert steps[first_event - 1] == 160 + 7 * 160
    assert steps[first_event : first_event + 6] == [0] * 6
    assert steps[first_event + 6] == 7 * 160
    others = [
        s for i, s in enumerate(steps) if i not in {pause, *range(first_event - 1, first_event + 7)}
    ]
    assert set(others) == {160}
    heard = np.concatenate([CODEC.decode(p.payload) for p in packets if p.payload_type == 0])
    spectrum = np.abs(np.fft.rfft(heard[-3200:].astype(float)))
    assert abs(np.argmax(spectrum) * RATE / 3200 - 440) < 10
    counters = call.media.counters
    assert counters.gateway_frames >= len(packets) - 7 and counters.gateway_digits == 1


async def test_opus_browser_and_a_carrier_sending_40_ms_packets(call: Call) -> None:
    """Transcoding: each 40 ms carrier packet becomes two 20 ms Opus packets at once, and
    each 20 ms Opus packet of the browser goes out at once (the gateway leg's ptime is 40:
    its packets carry what came, 20 ms each)."""
    frames = iter(range(10_000))
    call.carrier_source = lambda: tone(440, 320 * next(frames), samples=320)
    await call.start(codec=OPUS, ptime=40)
    assert call.media.mode is not None and call.media.mode.name == "TRANSCODE"
    await wait_for(lambda: len(call.from_bridge) >= 40)
    packets = list(call.from_bridge)
    assert {p.payload_type for p in packets} == {111}
    steps = {(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(packets)}
    assert steps == {960}  # 20 ms at 48 kHz each
    silence = OpusEncoder(OpusEncoderConfig()).encode(np.zeros(160, np.int16))
    for seq in range(1, 6):
        call.browser.send_rtp(rtp(seq, silence, pt=111))
    await wait_for(lambda: call.media.counters.browser_audio_frames == 5)
    stats = call.media.gateway_port.stats()
    assert stats.packets_sent - stats.silence_sent >= 5
