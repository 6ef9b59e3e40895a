"""Our media engine (MediaSession on a real UDP socket) against baresip over SDES-SRTP.

Signaling is :class:`tests.interop.ua.TestUserAgent` (SIP over TLS, SDES offer); media is
:class:`sip_gateway.aio.rtp.MediaEndpoint` running :class:`sip_gateway.media.session.MediaSession`
with the negotiated :class:`MediaConfig`. baresip (the gateway, ``srtp-mand``) auto-answers
and plays a 440 Hz tone; we send 1 kHz. Checks: we decrypt and measure 440 Hz, baresip's
``-dec.wav`` recording of what it decrypted measures 1 kHz, RFC 4733 digits cross both ways
(each reported once), baresip decrypts our closing SRTCP sender report (its ``CALL_RTCP``
event quotes our packet count), and we latched to baresip's SDP address.
"""

from __future__ import annotations

import asyncio
import random
import wave

import numpy as np
import pytest

from sip_gateway.aio.rtp import MediaEndpoint, MediaSocket
from sip_gateway.media.events import AudioReceived, DtmfReceived, MediaEvent
from sip_gateway.media.session import MediaSession
from sip_gateway.sdp import MediaProfile, SdesCrypto

from .peers import free_port, wait_log
from .ua import TestUserAgent

pytestmark = pytest.mark.interop

GATEWAY = "+15551230001"
RATE = 8000
LIMIT = 9.0


def dominant_hz(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


class Tone:
    """The audio source: 1 kHz at half scale, one 20 ms frame per call."""

    def __init__(self, hz: float = 1000.0) -> None:
        self.hz, self.n = hz, 0

    def __call__(self) -> np.ndarray:
        t = np.arange(self.n, self.n + 160) / RATE
        self.n += 160
        return (16000 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)


def read_wav(path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


@pytest.mark.parametrize("suite", ["AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"])
async def test_srtp_audio_both_ways_with_baresip(pki, baresip, suite):
    gw = baresip("gw", GATEWAY, tone_hz=440.0, tone_s=10.0)
    sock = await MediaSocket.open("127.0.0.1", rtcp_mux=False)  # baresip: rtcp_mux no
    ua = TestUserAgent(
        server_context=pki.server_context(),
        client_context=pki.client_context(),
        media_port=sock.port,
        profile=MediaProfile(crypto_suites=(suite,)),
    )
    await ua.listen(free_port())
    events: list[MediaEvent] = []
    endpoint = None
    try:
        async with asyncio.timeout(LIMIT):
            ctrl = await gw.ctrl()
            call = await ua.call(gw.uri())
            assert isinstance(call.media.crypto, SdesCrypto)
            assert call.media.crypto.suite == suite
            session = MediaSession(
                call.media, local_ssrc=random.getrandbits(32), rng=random.Random()
            )
            endpoint = MediaEndpoint(session, sock, audio_source=Tone(), on_event=events.append)
            endpoint.start()
            await ctrl.wait_event("CALL_ESTABLISHED", timeout=5)
            await asyncio.sleep(1.2)
            endpoint.send_dtmf("7")
            dtmf = await ctrl.wait_event("CALL_DTMF_START", timeout=3)
            await ctrl.command("sndcode", "3#")  # baresip -> us, RFC 4733
            await asyncio.sleep(0.8)
            stats = session.stats()
            endpoint.close()  # sends SR + SDES + BYE over SRTCP
            rtcp = await ctrl.wait_event(
                "CALL_RTCP",
                timeout=2,
                match=lambda m: abs(m["rtcp_stats"]["rx"]["sent"] - stats.packets_sent) <= 2,
            )
            await ua.hangup(call)
            await ctrl.wait_event("CALL_CLOSED", timeout=5)
            wait_log(gw.log, f"SRTP is Enabled (cryptosuite={suite})", timeout=2)
    finally:
        if endpoint is not None:
            endpoint.close()
        else:
            sock.close()
        await ua.aclose()

    # what we received from baresip: 440 Hz, after SRTP and G.711
    received = np.concatenate([e.pcm for e in events if isinstance(e, AudioReceived)])
    assert len(received) >= 1.2 * RATE
    steady = received[-RATE:]
    assert abs(dominant_hz(steady) - 440) < 10
    assert np.sqrt(np.mean(steady.astype(float) ** 2)) > 0.2 * 32767
    assert stats.latched and stats.remote_address == call.media.remote_address
    assert stats.dropped.get("auth_failed", 0) == 0 and stats.dropped.get("replayed", 0) == 0
    assert dtmf["param"] == "7"
    assert [e.digit for e in events if isinstance(e, DtmfReceived)] == ["3", "#"]

    # what baresip decrypted and decoded from us: 1 kHz
    (recording,) = gw.recordings("dec")
    heard = read_wav(recording)
    assert len(heard) >= 1.0 * RATE
    middle = heard[RATE // 2 : RATE // 2 + RATE]
    assert abs(dominant_hz(middle) - 1000) < 10
    assert np.sqrt(np.mean(middle.astype(float) ** 2)) > 0.2 * 32767

    # baresip decrypted our closing SRTCP sender report: it quotes our packet count
    assert rtcp["rtcp_stats"]["rx"]["lost"] == 0, rtcp
    assert "failed to decrypt RTP" not in gw.log.read_text()
