"""Restarting the bridge with calls in progress: clean ends, frozen records, nothing lost.

A bridge (``bridge.app.start``, the embedded carrier simulator, SQLite) carries five
answered calls from packet-level browsers (:class:`tests.webrtc_client.WebRtcClient`) when
:meth:`~bridge.app.RunningBridge.close` shuts it down. Each browser and each carrier-side
call must see a BYE; then a new bridge opens the same database and must hold every call's
CDR with end reason ``shutdown``, a frozen record with its legs and every journal event,
with an empty spill file.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

from bridge.app import start
from sip_gateway.devcerts import ensure_dev_pki
from tests.bridge.fault_support import DID, NUMBER, PASSWORD, USER, bridge_settings, client_config
from tests.userdb import add_users
from tests.webrtc_audio import pcmu_payloads, speech_8k
from tests.webrtc_client import ClientCall, PacketSource, WebRtcClient

CALLS = 5


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"))


async def test_shutdown_with_calls_up_ends_them_cleanly_and_loses_nothing(
    tmp_path: Path, pki: Any
) -> None:
    settings = bridge_settings(tmp_path, pki)
    await add_users(settings, [(USER, PASSWORD, (DID,))])
    running = await start(settings)
    client = WebRtcClient(client_config(running, settings, pki.ca_certificate))
    calls: list[ClientCall] = []
    try:
        await client.connect()
        assert (await client.register()).status_code == 200
        for _ in range(CALLS):
            call = await client.dial(NUMBER, codecs=("PCMU",))
            await call.wait_answered()
            call.play(PacketSource("PCMU", pcmu_payloads(speech_8k(2.0))))
            calls.append(call)
        for call in calls:
            await call.wait_media()
        assert running.orchestrator.active == CALLS
        assert running.carrier_sim is not None
        sim_calls = running.carrier_sim.calls
        call_ids = list(running.orchestrator.calls)
        async with asyncio.timeout(30):
            await running.close()
        # BYE both ways: every browser got one, every carrier-side call ended by one
        for call in calls:
            await call.wait_ended(5)
            assert call.ended_by == "remote BYE"
        assert len(sim_calls) == CALLS
        for sim_call in sim_calls:
            await sim_call.wait_ended()
            assert sim_call.end_reason == "remote-hangup", sim_call.end_reason
    finally:
        await client.close()
    spill = settings.node.var_dir / "cdr-spill.jsonl"
    assert not spill.exists() or spill.read_bytes() == b""

    again = await start(settings)  # the same database
    try:
        store = again.call_store
        assert store is not None
        for call_id in call_ids:
            record = await store.get_call(call_id)
            assert record is not None, call_id
            assert record["end_reason"] == "shutdown"
            assert record["ended_at"] is not None
            assert {leg["leg"] for leg in record["legs"]} == {"webrtc", "gateway", "pstn"}
            events = await store.call_events(call_id)
            seqs = [event["seq"] for event in events]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap
            names = [event["event"] for event in events]
            assert names[0] == "started" and names[-1] == "ended"
            assert {"answered", "ending", "leg-up"} <= set(names)
            assert events[-1]["final"] is True
    finally:
        await again.close()
    gc.collect()
