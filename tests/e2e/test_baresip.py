"""A second carrier: the dialer page calls through the bridge to baresip with mandatory SRTP.

baresip 1.0 (PEERS.md section 4, the ``tests.interop`` fixture) is the only trunk: it listens
on SIP over TLS with a certificate from the interop test PKI (the bridge's trunk trusts that
CA), accepts only ``RTP/SAVP`` with SDES keys (``mediaenc=srtp-mand``), auto-answers, plays
a 440 Hz tone and records what it decrypts (``dump-*-dec.wav``, 8 kHz). The page places an
Opus call (transcoded by the bridge to G.711), speaks for 3 s and hangs up. Checks: baresip
enabled SRTP with the suite the bridge's record names, the page heard baresip's tone, and
baresip's recording is the page's microphone speech.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext

from bridge.media.events import MediaMode
from tests.interop.conftest import baresip, peer_stack, pki  # noqa: F401 - fixtures used here
from tests.interop.peer_baresip import Baresip
from tests.interop.peers import wait_log
from tests.pki import Pki

from .browser import dial, hang_up, open_and_register, read_state, wait_call_state, wait_state
from .calls import assert_speech, bridge_to_baresip, sample_inbound_audio, wait_bridge_idle
from .conftest import USERS, BridgeFactory

pytestmark = pytest.mark.interop

NUMBER = "+15551230001"
SPEAK_S = 3.0


async def test_opus_call_to_baresip_with_mandatory_srtp_carries_the_speech(
    chromium: BrowserContext,
    bridge_factory: BridgeFactory,
    baresip: Callable[..., Baresip],  # noqa: F811 - the imported fixture
    pki: Pki,  # noqa: F811 - the imported fixture
    mic_wav: Path,
) -> None:
    gateway = baresip("gw", NUMBER, tone_hz=440.0, tone_s=30.0)
    bridge = await bridge_to_baresip(bridge_factory, gateway, pki.ca)
    ctrl = await gateway.ctrl()
    page = await open_and_register(chromium, bridge.base_url, "alice", USERS["alice"])
    await dial(page, NUMBER)
    await wait_call_state(page, "answered", timeout=15)
    await ctrl.wait_event("CALL_ESTABLISHED", timeout=5)
    (call,) = bridge.running.orchestrator.calls.values()
    assert call.media.mode is MediaMode.TRANSCODE

    audio = await sample_inbound_audio(page, SPEAK_S)  # baresip's tone reaches the page
    assert audio.grew("packetsReceived") >= 0.7 * 50 * SPEAK_S, audio.stats
    assert audio.max_level > 0.05, [s["audioLevel"] for s in audio.stats]

    await wait_state(
        page,
        "s.record !== null && s.record.legs.length >= 3 && s.record.legs[1].encrypted === true",
        timeout=5,
        what="the security record with the gateway leg up",
    )
    gateway_leg = (await read_state(page))["record"]["legs"][1]
    suite = gateway_leg["media"]["crypto_suite"]
    assert gateway_leg["leg"] == "gateway" and suite
    assert gateway_leg["peer"] == f"127.0.0.1:{gateway.tls_port}"
    wait_log(gateway.log, f"SRTP is Enabled (cryptosuite={suite})", timeout=2)

    await hang_up(page)
    await ctrl.wait_event("CALL_CLOSED", timeout=5)
    await asyncio.sleep(0.2)  # sndfile closes its WAV as the call closes
    (recording,) = gateway.recordings("dec")
    assert_speech(recording, mic_wav)
    assert "failed to decrypt RTP" not in gateway.log.read_text()
    await wait_bridge_idle(bridge)
    assert bridge.running.orchestrator.ended == {"caller-hangup": 1}
