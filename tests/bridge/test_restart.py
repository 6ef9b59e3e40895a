"""Restarting the bridge with calls in progress: clean ends, frozen records, nothing lost.

A bridge (``bridge.app.start``, the embedded carrier simulator, SQLite) carries five
answered calls from packet-level browsers (:class:`tests.webrtc_client.WebRtcClient`) when
:meth:`~bridge.app.RunningBridge.close` shuts it down; a ``pstn-bridge serve`` process
(its trunk a carrier simulator in the test) carries three when it gets SIGTERM. Each
browser and each carrier-side call must see a BYE; then the same database (read by a new
bridge, or by a :class:`~bridge.store.CallStore`) must hold every call's CDR with end
reason ``shutdown``, a frozen record and every journal event, with an empty spill file.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.app import start
from bridge.settings import load_settings
from bridge.store import CallStore, StoreConfig
from bridge.users import sqlite_url
from sip_gateway.carrier_sim import CarrierSimConfig, CarrierSimulator
from sip_gateway.devcerts import ensure_dev_pki
from sip_gateway.tls import TlsClientConfig, client_context
from tests.bridge.fault_support import DID, NUMBER, PASSWORD, USER, bridge_settings, client_config
from tests.interop.peers import free_port
from tests.userdb import add_users
from tests.webrtc_audio import pcmu_payloads, speech_8k
from tests.webrtc_client import ClientCall, ClientConfig, PacketSource, WebRtcClient

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


def _serve_config(tmp_path: Path, pki: Any, sim_port: int) -> tuple[Path, int]:
    """A config file for ``pstn-bridge serve`` whose trunk is a simulator in the test."""
    https_port = free_port()
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[node]
var_dir = "{tmp_path / "var"}"
[tls]
cert_file = "{pki.server_certificate}"
key_file = "{pki.server_key}"
ca_file = "{pki.ca_certificate}"
[sip]
listen_port = {free_port()}
[http]
listen_port = {https_port}
[users]
demo_user = ""
[carrier_sim]
enabled = false
[limits]
max_concurrent_calls_per_user = 100
max_calls_per_minute_per_user = 1000
[[trunks]]
name = "sim"
host = "127.0.0.1"
port = {sim_port}
ca_file = "{pki.ca_certificate}"
allowed_sources = ["127.0.0.1/32"]
options_interval = 0
"""
    )
    return path, https_port


async def test_sigterm_of_pstn_bridge_serve_with_calls_up_ends_them_cleanly(
    tmp_path: Path, pki: Any
) -> None:
    sim = CarrierSimulator(
        CarrierSimConfig(
            listen_port=free_port(),
            certificate=pki.server_certificate,
            private_key=pki.server_key,
            ca_file=pki.ca_certificate,
            ring_time=0.05,
        )
    )
    await sim.start()
    config, https_port = _serve_config(tmp_path, pki, sim.port)
    settings = load_settings(config)
    await add_users(settings, [(USER, PASSWORD, (DID,))])
    with (tmp_path / "serve.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bridge.ops.cli", "serve", "--config", str(config)),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = WebRtcClient(
        ClientConfig(
            url=f"wss://127.0.0.1:{https_port}/sip",
            ssl=client_context(TlsClientConfig(ca_file=pki.ca_certificate)),
            user=USER,
            password=PASSWORD,
            domain=settings.sip.realm,
        )
    )
    try:
        for _ in range(150):  # the bridge is up when its HTTPS listener takes a connection
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", https_port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            break
        await client.connect()
        calls = []
        for _ in range(3):
            call = await client.dial(NUMBER, codecs=("PCMU",))
            await call.wait_answered()
            call.play(PacketSource("PCMU", pcmu_payloads(speech_8k(1.0))))
            calls.append(call)
        for call in calls:
            await call.wait_media()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        for call in calls:
            await call.wait_ended(5)
            assert call.ended_by == "remote BYE"
        assert len(sim.calls) == 3
        for sim_call in sim.calls:
            await sim_call.wait_ended()
            assert sim_call.end_reason == "remote-hangup", sim_call.end_reason
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await client.close()
        await sim.aclose()
    spill = settings.node.var_dir / "cdr-spill.jsonl"
    assert not spill.exists() or spill.read_bytes() == b""
    store = await CallStore.open(
        sqlite_url(settings.node.var_dir / "bridge.db"),
        StoreConfig(spill_file=tmp_path / "reader-spill.jsonl"),
    )
    try:
        records = await store.list_calls()
        assert len(records) == 3
        for record in records:
            assert record["end_reason"] == "shutdown"
            assert record["ended_at"] is not None
            events = await store.call_events(record["call_id"])
            assert events[-1]["event"] == "ended" and events[-1]["final"] is True
    finally:
        await store.aclose()
