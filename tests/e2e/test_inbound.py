"""A carrier (the simulator) calls a user's DID through the bridge; the dialer page rings.

* Answered: the page answers; the simulator plays a tone to the page and records what it
  receives. Audio flows both ways: the recording is the page's microphone speech and the
  page's inbound counters grow with ``audioLevel`` > 0. The bridge's security record reaches
  the page and agrees with its getStats view. The simulator hangs up; the page sees the end.
* Declined: the page declines; the simulator's call fails with 603.

Afterwards the bridge holds no call, call task or UDP socket.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext

from sip_gateway.carrier_sim import SimCall
from sip_gateway.trunk import CallFailedError

from .browser import answer, decline, open_and_register, read_state, wait_call_state, wait_state
from .calls import assert_speech, sample_inbound_audio, wait_bridge_idle
from .conftest import DIDS, USERS, E2EBridge

CALLER = "+15557654321"
SPEAK_S = 3.0


def _call_in(bridge: E2EBridge, user: str) -> asyncio.Task[SimCall]:
    """The simulator calls ``user``'s DID at the bridge (the task ends when it is answered)."""
    return asyncio.ensure_future(
        bridge.carrier_sim.call(
            DIDS[user], "127.0.0.1", bridge.running.sip_port, caller=CALLER, mode="tone"
        )
    )


async def test_inbound_call_rings_the_page_which_answers_and_audio_flows_both_ways(
    chromium: BrowserContext, bridge: E2EBridge, mic_wav: Path
) -> None:
    page = await open_and_register(chromium, bridge.base_url, "alice", USERS["alice"])
    placing = _call_in(bridge, "alice")
    await wait_call_state(page, "incoming", timeout=10)
    assert (await read_state(page))["call"]["remote"] == CALLER
    answered = await answer(page)
    assert answered["direction"] == "inbound"
    async with asyncio.timeout(5):
        sim = await placing
    assert sim.answered and sim.number == DIDS["alice"]

    audio = await sample_inbound_audio(page, SPEAK_S)  # the tone, while the page speaks
    assert audio.grew("packetsReceived") >= 0.7 * 50 * SPEAK_S, audio.stats
    assert audio.grew("totalSamplesReceived") >= 0.7 * 48000 * SPEAK_S, audio.stats
    assert audio.max_level > 0.05, [s["audioLevel"] for s in audio.stats]

    await wait_state(
        page,
        "s.record !== null && s.record.legs.length >= 3 && s.record.legs[1].encrypted === true"
        " && s.crossCheck !== null && s.crossCheck.srtp === true",
        timeout=5,
        what="the security record of the inbound call",
    )
    state = await read_state(page)
    record = state["record"]
    assert record["direction"] == "inbound" and record["to"] == DIDS["alice"]
    assert record["legs"][0]["encrypted"] is True and record["legs"][1]["encrypted"] is True
    assert record["legs"][1]["media"]["crypto_suite"] == sim.suite
    assert state["crossCheck"] == {"srtp": True, "dtlsVersion": True, "fingerprint": True}

    await sim.hangup()
    ended = await wait_call_state(page, "ended", timeout=5)
    assert ended["originator"] == "remote", ended
    assert_speech(sim.recording, mic_wav, note=sim.media_stats())
    await wait_bridge_idle(bridge)
    assert bridge.running.orchestrator.ended == {"caller-hangup": 1}


async def test_inbound_call_declined_by_the_page_fails_with_603(
    chromium: BrowserContext, bridge: E2EBridge
) -> None:
    page = await open_and_register(chromium, bridge.base_url, "bob", USERS["bob"])
    placing = _call_in(bridge, "bob")
    ended = await decline(page)
    assert ended["code"] == 603, ended
    with pytest.raises(CallFailedError) as failed:
        async with asyncio.timeout(5):
            await placing
    assert failed.value.status_code == 603
    (sim,) = bridge.carrier_sim.calls
    assert not sim.answered
    await wait_bridge_idle(bridge)
    assert bridge.running.orchestrator.ended == {"declined": 1}
