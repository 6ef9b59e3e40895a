"""The dialer page calls a phone number through the bridge; the carrier simulator answers.

One call per codec path, with every check made while that call is up or just after it:

* Opus (transcoded): the bridge transcodes Opus <-> PCMU. The simulator's recording is the
  fake microphone's speech; the simulator's echo reaches the page (getStats counters grow,
  ``audioLevel`` > 0); DTMF ``12`` by RFC 4733 then ``3#`` by SIP INFO reach the simulator
  as ``1 2 3 #``; the page's own view of DTLS-SRTP (getStats) agrees with the security
  record the bridge sent, which carries no key material.
* PCMU (relayed): the page offers PCMU first; the bridge relays G.711 without transcoding
  and the recording is still the mic's speech.

Afterwards the bridge holds no call, call task or UDP socket.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext

from bridge.media.events import MediaMode
from bridge.security import PSTN_CAVEAT, PSTN_CAVEAT_TEXT

from .browser import (
    browser_stats,
    dial,
    hang_up,
    open_and_register,
    read_state,
    send_dtmf,
    wait_call_state,
    wait_state,
)
from .calls import (
    DTLS_VERSIONS,
    assert_speech,
    sample_inbound_audio,
    srtp_profile,
    wait_bridge_idle,
    wait_until,
)
from .conftest import USERS, E2EBridge

NUMBER = "+15551230001"
SPEAK_S = 3.0
RECORD_COMPLETE = (
    "s.record !== null && s.record.legs.length >= 3"
    " && s.record.legs[0].media.srtp_profile !== null && s.record.legs[1].encrypted === true"
)
"""A record sent after both legs came up (DTLS facts and the gateway's SDES suite in it)."""


def _leg(record: dict[str, Any], name: str) -> dict[str, Any]:
    legs = [leg for leg in record["legs"] if leg["leg"] == name]
    assert len(legs) == 1, record["legs"]
    leg: dict[str, Any] = legs[0]
    return leg


def _only_call(bridge: E2EBridge) -> Any:
    calls = list(bridge.running.orchestrator.calls.values())
    assert len(calls) == 1, calls
    return calls[0]


async def test_opus_call_is_transcoded_and_audio_dtmf_and_security_check_out(
    chromium: BrowserContext, bridge: E2EBridge, mic_wav: Path
) -> None:
    page = await open_and_register(chromium, bridge.base_url, "alice", USERS["alice"])
    await dial(page, NUMBER)
    call = await wait_call_state(page, "answered", timeout=15)
    assert call["code"] == 200 and call["direction"] == "outbound"
    assert _only_call(bridge).media.mode is MediaMode.TRANSCODE

    # speech out, echo back in
    audio = await sample_inbound_audio(page, SPEAK_S)
    assert audio.grew("packetsReceived") >= 0.7 * 50 * SPEAK_S, audio.stats
    assert audio.grew("totalSamplesReceived") >= 0.7 * 48000 * SPEAK_S, audio.stats
    assert audio.max_level > 0.01, [s["audioLevel"] for s in audio.stats]
    (sim,) = bridge.carrier_sim.calls
    assert sim.answered and sim.number == NUMBER

    # DTMF: RFC 4733 from Chromium's insertDTMF, then SIP INFO; both arrive as RFC 4733
    await send_dtmf(page, "12", mode="RFC2833")
    await wait_until(lambda: len(sim.digits) >= 2, timeout=5, what="digits 1 2")
    await send_dtmf(page, "3#", mode="INFO")
    await wait_until(lambda: len(sim.digits) >= 4, timeout=5, what="digits 3 #")

    # the page's own view of the encryption against the record the bridge sent
    await wait_state(page, RECORD_COMPLETE, timeout=5, what="a complete security record")
    stats = await browser_stats(page)
    state = await read_state(page)
    _check_security(state["record"], stats, sim.suite)
    assert state["crossCheck"] == {"srtp": True, "dtlsVersion": True, "fingerprint": True}

    ended = await hang_up(page)
    assert ended["originator"] == "local"
    async with asyncio.timeout(5):
        await sim.wait_ended()

    assert sim.digits == ["1", "2", "3", "#"]
    assert state["dtmfSent"] == "123#"
    assert_speech(sim.recording, mic_wav, note=sim.media_stats())
    final = await read_state(page)
    for text in (json.dumps(final["records"]), "\n".join(final["log"])):
        assert "inline:" not in text  # no SDES key material reaches the browser
    await wait_bridge_idle(bridge)
    assert bridge.running.orchestrator.ended == {"caller-hangup": 1}


def _check_security(
    record: dict[str, Any], stats: dict[str, Any] | None, suite: str | None
) -> None:
    assert stats is not None
    webrtc = _leg(record, "webrtc")
    media = webrtc["media"]
    assert webrtc["encrypted"] is True
    assert media["protocol"] == "DTLS-SRTP"
    assert stats["dtlsState"] == "connected"
    assert srtp_profile(media["srtp_profile"]) == srtp_profile(stats["srtpCipher"])
    assert stats["tlsVersion"] == "FEFD"  # DTLS 1.2 on the wire (PEERS.md 7.3)
    assert media["dtls_version"] == DTLS_VERSIONS[stats["tlsVersion"]]
    # the certificate the bridge saw in DTLS is the browser's own one, and matched the SDP
    assert media["remote_fingerprint"].upper() == stats["localFingerprint"].upper()
    assert media["fingerprint_matches_signaling"] is True
    assert media["codec"] == stats["codecName"] == "opus/48000/2"
    assert webrtc["signaling"]["transport"] == "wss"
    assert webrtc["signaling"]["tls_version"].startswith("TLSv1.")

    gateway = _leg(record, "gateway")
    assert gateway["encrypted"] is True
    assert gateway["media"]["keying"] == "SDES"
    assert gateway["media"]["crypto_suite"] and gateway["media"]["crypto_suite"] == suite
    assert gateway["media"]["codec"] == "PCMU/8000"
    assert gateway["signaling"]["peer_certificate_verified"] is True

    pstn = _leg(record, "pstn")
    assert pstn["encrypted"] is None and pstn["status"] == "carrier-dependent"
    assert pstn["caveat"] == PSTN_CAVEAT_TEXT
    assert PSTN_CAVEAT in record["caveats"]
    assert record["end_to_end_encrypted"] is False
    assert record["direction"] == "outbound" and record["to"] == NUMBER


async def test_pcmu_call_is_relayed_and_the_speech_arrives(
    chromium: BrowserContext, bridge: E2EBridge, mic_wav: Path
) -> None:
    page = await open_and_register(chromium, bridge.base_url, "bob", USERS["bob"])
    await page.check("#prefer-pcmu")
    await dial(page, NUMBER)
    await wait_call_state(page, "answered", timeout=15)
    assert _only_call(bridge).media.mode is MediaMode.RELAY

    audio = await sample_inbound_audio(page, SPEAK_S)
    assert audio.grew("packetsReceived") >= 0.7 * 50 * SPEAK_S, audio.stats
    assert audio.max_level > 0.01, [s["audioLevel"] for s in audio.stats]
    assert audio.stats[-1]["codecName"] == "PCMU/8000"

    await wait_state(page, RECORD_COMPLETE, timeout=5, what="a complete security record")
    record = (await read_state(page))["record"]
    assert _leg(record, "webrtc")["media"]["codec"] == "PCMU/8000"
    assert _leg(record, "gateway")["media"]["codec"] == "PCMU/8000"

    await hang_up(page)
    (sim,) = bridge.carrier_sim.calls
    async with asyncio.timeout(5):
        await sim.wait_ended()
    assert_speech(sim.recording, mic_wav, note=sim.media_stats())
    await wait_bridge_idle(bridge)
