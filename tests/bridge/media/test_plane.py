"""Calls whose media runs in worker processes (``[media] workers = 2``): a real bridge, the
packet-level browser, the embedded carrier simulator; a worker killed mid-call; shutdown.

The bridge fixture and helpers are those of ``tests/bridge/test_calls.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.media.events import MediaMode
from bridge.media.pipeline import CallMedia, PipelineConfig
from bridge.media.plane import MediaPlane, MediaPlaneConfig
from bridge.media.remote import RemoteCallMedia
from bridge.media.webrtc_leg import WebRtcLegConfig, open_ice_sockets
from sip_gateway.aio.rtp import open_media_sockets
from sip_gateway.trunk import CallFailedError
from tests.bridge.test_calls import (
    DID,
    NUMBER,
    Harness,
    _answered_call,
    _assert_audio_crossed,
    _assert_security_record,
    _hang_up,
    _talk,
    bridge,
    pki,
)
from tests.webrtc_audio import opus_packets, pcmu_payloads, speech_8k, speech_48k
from tests.webrtc_client import ClientCall, DialFailedError, PacketSource

__all__ = ["bridge", "pki"]

WORKERS = {"media": {"workers": 2}}


@pytest.fixture(autouse=True)
def _workers_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests set [media] workers themselves (the variable would override it)."""
    monkeypatch.delenv("PSTN_BRIDGE_MEDIA__WORKERS", raising=False)


def _plane(harness: Harness) -> MediaPlane:
    plane = harness.running.plane
    assert plane is not None
    return plane


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, parent pid, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: it only waits for its parent to reap it
    return _stat(pid)[0] != "Z"


@pytest.mark.parametrize("workers", [2, 0])
async def test_a_call_through_a_worker_carries_speech_and_a_full_record(
    bridge: Any, workers: int
) -> None:
    harness = await bridge(sections={"media": {"workers": workers}})
    plane = harness.running.plane
    if workers == 0:  # media in the signaling process, as before the media plane
        assert plane is None and harness.running.orchestrator.plane is None
    else:
        assert plane is not None and len(plane.pids) == workers
        for pid in plane.pids:  # children of this (the bridge's) process
            assert int(_stat(pid)[1]) == os.getpid()
    client = await harness.client()
    call = await _answered_call(client, codecs=("opus", "PCMU"))
    bridged = next(iter(harness.running.orchestrator.calls.values()))
    assert isinstance(bridged.media, RemoteCallMedia if workers else CallMedia)
    assert bridged.media.mode is MediaMode.TRANSCODE
    if plane is not None:
        assert sum(slot.calls for slot in plane.slots) == 1
    reference = await _talk(call, "opus")
    await _until(lambda: bridged.media.stats().browser_audio_frames > 0)  # pushed by a worker
    sim_call = await _hang_up(harness, call)
    _assert_audio_crossed(reference, sim_call, call)
    assert call.security_records, "no security record INFO arrived"
    _assert_security_record(call.security_records[-1], webrtc_codec="opus/48000/2")
    assert harness.running.orchestrator.ended["caller-hangup"] == 1


async def _until(predicate: Any, within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - a bounded poll of plain state
            await asyncio.sleep(0.05)


async def _echo_grows(call: ClientCall) -> None:
    """The carrier's echo of what we send still arrives."""
    before = call.reception.count
    await asyncio.sleep(1.0)
    assert call.reception.count > before + 10, (before, call.reception.count)


async def test_a_killed_worker_ends_only_its_calls_cleanly_and_is_restarted(bridge: Any) -> None:
    harness = await bridge(sections=WORKERS | {"limits": {"max_concurrent_calls_per_user": 5}})
    plane, orchestrator = _plane(harness), harness.running.orchestrator
    calls = []
    for _ in range(3):  # least loaded: worker 0, worker 1, worker 0
        client = await harness.client()
        calls.append(await _answered_call(client, codecs=("PCMU",)))
    for call in calls:
        call.play(PacketSource("PCMU", pcmu_payloads(speech_8k(1.0)), loop=True))
    bridged = list(orchestrator.calls.values())
    victim = plane.slots[0]
    assert victim.process is not None and victim.channel is not None
    doomed = [i for i, b in enumerate(bridged) if b.media.channel is victim.channel]
    assert doomed == [0, 2]
    survivor = calls[1]
    await _echo_grows(survivor)
    old_pid = victim.process.pid

    os.kill(old_pid, signal.SIGKILL)
    for i in doomed:
        await calls[i].wait_ended(10)
        assert calls[i].ended_by == "remote BYE"
    await _until(lambda: victim.up and victim.restarts == 1)
    assert victim.process.pid != old_pid
    assert not _alive(old_pid)
    assert orchestrator.ended["media-worker-lost"] == 2
    assert list(orchestrator.calls.values()) == [bridged[1]]
    await _echo_grows(survivor)  # the other worker's call goes on

    store = harness.running.call_store
    assert store is not None
    await store.drain()
    for i in doomed:
        record = await store.get_call(bridged[i].call_id)
        assert record is not None
        assert record["end_reason"] == "media-worker-lost"
        assert record["ended_at"] is not None
        assert {leg["leg"] for leg in record["legs"]} == {"webrtc", "gateway", "pstn"}
        assert any(r["reason"] == "media-worker-lost" for r in record["policy_refusals"])
    sim_call = await _hang_up(harness, survivor)
    assert sim_call.recording is not None

    # later calls work, on either worker (the restarted one is the least loaded)
    client = await harness.client()
    call = await _answered_call(client, codecs=("opus", "PCMU"))
    assert next(iter(orchestrator.calls.values())).media.channel is victim.channel
    call.play(PacketSource("opus", opus_packets(speech_48k(1.0)), loop=True))
    await _echo_grows(call)  # audio both ways (the quality checks are the first test's)
    await _hang_up(harness, call)
    assert orchestrator.ended["caller-hangup"] == 2


async def test_shutdown_with_a_call_up_stops_every_worker(bridge: Any) -> None:
    harness = await bridge(sections=WORKERS)
    plane = _plane(harness)
    pids = plane.pids
    client = await harness.client()
    call = await _answered_call(client, codecs=("PCMU",))
    await harness.running.orchestrator.aclose()  # what RunningBridge.close does first
    await plane.aclose()
    await call.wait_ended(5)
    for pid in pids:
        assert not _alive(pid)
    assert plane.pids == []
    assert plane.resources().calls == 0


def _metrics(harness: Harness) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    ops = harness.running.ops
    assert ops is not None
    text = ops.metrics.exposition().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_add_the_workers_resources_and_show_each_worker(bridge: Any) -> None:
    harness = await bridge(sections=WORKERS)
    plane = _plane(harness)
    client = await harness.client()
    call = await _answered_call(client, codecs=("PCMU",))
    await _until(lambda: plane.resources().gateway_srtp >= 1 and plane.resources().calls == 1)
    held = plane.resources()
    assert held.rtp_sockets >= 2 and held.ice_sockets >= 1 and held.webrtc_srtp == 1
    samples = _metrics(harness)
    rtp = samples["pstn_bridge_udp_sockets", frozenset({("kind", "rtp")})]
    assert rtp == open_media_sockets() + held.rtp_sockets
    gateway_srtp = samples["pstn_bridge_srtp_sessions", frozenset({("leg", "gateway")})]
    assert gateway_srtp >= held.gateway_srtp
    assert samples["pstn_bridge_asyncio_tasks", frozenset()] > held.tasks
    calls = [samples["pstn_bridge_media_worker_calls", frozenset({("worker", w)})] for w in "01"]
    assert sorted(calls) == [0, 1]
    for worker in "01":
        assert samples["pstn_bridge_media_worker_up", frozenset({("worker", worker)})] == 1
        assert (
            samples["pstn_bridge_media_worker_restarts_total", frozenset({("worker", worker)})] == 0
        )
    await _hang_up(harness, call)
    left = plane.resources()  # pushed at the call's close
    assert (left.calls, left.rtp_sockets, left.ice_sockets) == (0, 0, 0)
    assert (left.gateway_srtp, left.webrtc_srtp) == (0, 0)
    samples = _metrics(harness)
    assert samples["pstn_bridge_udp_sockets", frozenset({("kind", "ice")})] == open_ice_sockets()


_ORPHAN_PARENT = """
import asyncio, sys
from bridge.media.plane import MediaPlane, MediaPlaneConfig
from bridge.media.pipeline import PipelineConfig
from bridge.media.webrtc_leg import WebRtcLegConfig

async def main():
    pipeline = PipelineConfig(webrtc=WebRtcLegConfig())
    plane = MediaPlane(MediaPlaneConfig(workers=1, pipeline=pipeline))
    await plane.start()
    print(plane.pids[0], flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_workers_die_with_a_killed_bridge() -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ORPHAN_PARENT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        async with asyncio.timeout(20):
            worker = int(await parent.stdout.readline())
        assert _alive(worker)
    finally:
        parent.kill()
        await parent.wait()
    await _until(lambda: not _alive(worker), within=10)


async def test_a_hung_worker_is_killed_and_replaced() -> None:
    config = MediaPlaneConfig(
        workers=1, pipeline=PipelineConfig(webrtc=WebRtcLegConfig()), hang_timeout=3.0
    )
    plane = MediaPlane(config)
    await plane.start()
    try:
        slot = plane.slots[0]
        assert slot.process is not None and slot.channel is not None
        media = plane.call_media("c-hung")
        await media.open()  # the worker is up and answering
        old = slot.process.pid
        os.kill(old, signal.SIGSTOP)
        await _until(lambda: slot.restarts == 1 and slot.up, within=20)
        assert not _alive(old)
        assert media.channel.alive is False
        fresh = plane.call_media("c-fresh")
        await fresh.open()
        await fresh.aclose()
        await media.aclose()
    finally:
        await plane.aclose()
    assert plane.pids == []


async def test_calls_while_no_worker_is_up_get_503_and_later_ones_work(bridge: Any) -> None:
    harness = await bridge(sections={"media": {"workers": 1}})
    plane = _plane(harness)
    plane.config = dataclasses.replace(plane.config, restart_delay=3.0)
    slot = plane.slots[0]
    assert slot.process is not None
    client = await harness.client()
    os.kill(slot.process.pid, signal.SIGKILL)
    await _until(lambda: not slot.up)
    refused_call = await client.dial(NUMBER)
    with pytest.raises(DialFailedError) as failed:
        await refused_call.wait_answered()
    assert failed.value.status == 503
    sim = harness.running.carrier_sim
    assert sim is not None
    with pytest.raises(CallFailedError) as refused:
        await sim.call(DID, "127.0.0.1", harness.running.sip_port)
    assert refused.value.status_code == 503
    await _until(lambda: slot.up)
    call = await _answered_call(client, codecs=("PCMU",))
    call.play(PacketSource("PCMU", pcmu_payloads(speech_8k(1.0)), loop=True))
    await _echo_grows(call)
    await _hang_up(harness, call)
