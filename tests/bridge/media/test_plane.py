"""Calls whose media runs in worker processes (``[media] workers = 2``): a real bridge, the
packet-level browser, the embedded carrier simulator; a worker killed mid-call; shutdown.

The bridge fixture and helpers are those of ``tests/bridge/test_calls.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bridge.media.events import MediaMode
from bridge.media.plane import MediaPlane
from bridge.media.remote import RemoteCallMedia
from tests.bridge.test_calls import (
    Harness,
    _answered_call,
    _assert_audio_crossed,
    _assert_security_record,
    _hang_up,
    _talk,
    bridge,
    pki,
)

__all__ = ["bridge", "pki"]

WORKERS = {"media": {"workers": 2}}


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


async def test_a_call_through_a_worker_carries_speech_and_a_full_record(bridge: Any) -> None:
    harness = await bridge(sections=WORKERS)
    plane = _plane(harness)
    assert len(plane.pids) == 2
    for pid in plane.pids:  # children of this (the bridge's) process
        assert int(_stat(pid)[1]) == os.getpid()
    client = await harness.client()
    call = await _answered_call(client, codecs=("opus", "PCMU"))
    bridged = next(iter(harness.running.orchestrator.calls.values()))
    assert isinstance(bridged.media, RemoteCallMedia)
    assert bridged.media.mode is MediaMode.TRANSCODE
    assert sum(slot.calls for slot in plane.slots) == 1
    reference = await _talk(call, "opus")
    assert bridged.media.stats().browser_audio_frames > 0  # pushed by the worker
    sim_call = await _hang_up(harness, call)
    _assert_audio_crossed(reference, sim_call, call)
    assert call.security_records, "no security record INFO arrived"
    _assert_security_record(call.security_records[-1], webrtc_codec="opus/48000/2")
    assert harness.running.orchestrator.ended["caller-hangup"] == 1
