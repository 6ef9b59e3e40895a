"""The bridge under test and its carrier: one ``pstn-bridge serve`` process, one simulator.

Theory of operation: :func:`start_bridge` writes a TOML file for a fresh bridge (free
loopback ports, SQLite user database with the benchmark's users, log level WARNING, the
limits that would refuse a benchmark lifted: per-user concurrent calls and calls per
minute, the browser flood guard, WebSocket and connection caps per source, the trunk's
channels), starts a carrier simulator in echo mode in *this* process (its SRTP, jitter
buffer and G.711 work must not count as bridge CPU) and then the bridge as a child
process: ``pstn-bridge serve --config FILE``; with ``probed`` every process of the bridge
(media workers too) carries the per-frame timestamps of :mod:`tests.bench.call_probe`
(installed through ``tests/bench/probe_site/sitecustomize.py``) for the added latency. The bridge's
CPU is read over its whole process tree (:mod:`tests.bench.proctree`): media workers
count. ``workers`` goes into ``[media] workers`` only when given, and only when the
settings model knows the key (otherwise: a clear error).

The simulator stamps ``time.perf_counter()`` when it routes each trunk INVITE, keyed by
the dialled number, so the load generator (same process, same clock) can measure the
bridge's INVITE-in to trunk-INVITE-out time; :func:`call_number` gives each call its own
number.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.settings import Settings, load_settings
from sip_gateway.carrier_sim import CarrierSimConfig, CarrierSimulator, SimMode
from sip_gateway.devcerts import DevPki, ensure_dev_pki
from tests.interop.peers import free_port
from tests.userdb import add_users

from .proctree import tree_cpu_seconds

__all__ = ["PASSWORD", "BridgeOptions", "RunningBridge", "call_number", "start_bridge"]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench password 1"
_PR_SET_PDEATHSIG = 1


def call_number(index: int) -> str:
    """The E.164 number call ``index`` dials (unique: it keys the setup-time stamps)."""
    return f"+4416329{index % 100000:05d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeOptions:
    """What the benchmark's bridge is configured with.

    Attributes:
        calls: concurrent calls it must admit (limits are raised above it).
        users: browser users to create (``bench``, ``bench1`` ...).
        complexity: Opus encoder complexity.
        bitrate: Opus encoder bit rate.
        workers: ``[media] workers`` (None: not written, the bridge's default).
        announcement: the carrier simulator's chime before the echo.
    """

    calls: int
    users: int = 1
    complexity: int = 5
    bitrate: int = 24000
    workers: str | None = None
    announcement: bool = False


def user_name(index: int) -> str:
    """The name of benchmark user ``index``."""
    return "bench" if index == 0 else f"bench{index}"


def _media_section(workers: str | None) -> str:
    if workers is None:
        return ""
    media = Settings.model_fields.get("media")
    known = media is not None and "workers" in getattr(media.annotation, "model_fields", {})
    if not known:
        raise RuntimeError(
            "--workers: this bridge has no [media] workers setting yet (bridge/settings.py); "
            "run without --workers"
        )
    value = workers if workers.isdigit() else f'"{workers}"'
    return f"[media]\nworkers = {value}\n"


def _config(work: Path, ports: dict[str, int], options: BridgeOptions) -> Path:
    room = options.calls + 64
    text = f"""
[node]
var_dir = "{work / "var"}"
[sip]
listen_port = {ports["sip"]}
[http]
listen_port = {ports["https"]}
max_websockets_per_source = {room}
max_connections_per_source = {room + 64}
max_websockets = {room + 64}
max_connections = {room + 128}
[users]
demo_user = ""
[log]
level = "WARNING"
[carrier_sim]
enabled = false
[webrtc]
opus_complexity = {options.complexity}
opus_bitrate = {options.bitrate}
[limits]
max_concurrent_calls_per_user = {min(1000, max(options.calls, 2))}
max_calls_per_minute_per_user = 10000
browser_request_rate = 100000.0
browser_request_burst = 1000000
{_media_section(options.workers)}
[[trunks]]
name = "sim"
host = "127.0.0.1"
port = {ports["sim"]}
allowed_sources = ["127.0.0.1/32"]
max_channels = {max(options.calls, 100)}
"""
    path = work / "bridge.toml"
    path.write_text(text)
    return path


@dataclass(slots=True, kw_only=True)
class RunningBridge:
    """A started bridge process and its carrier simulator (see the module docstring)."""

    work: Path
    pki: DevPki
    ports: dict[str, int]
    process: subprocess.Popen[bytes]
    sim: CarrierSimulator
    probe_dir: Path
    """Where each process of a probed bridge writes ``probe-<pid>.json`` at exit."""
    trunk_invites: dict[str, float] = field(default_factory=dict)
    """perf_counter() when the simulator routed the trunk INVITE, by dialled number."""
    _log: Any = None

    @property
    def url(self) -> str:
        """The bridge's SIP WebSocket."""
        return f"wss://127.0.0.1:{self.ports['https']}/sip"

    def probes(self) -> dict[str, list[Any]]:
        """What the probes of every bridge process saw, joined (after :meth:`stop`)."""
        out: dict[str, list[Any]] = {"b2g": [], "g2b": [], "calls": []}
        for path in sorted(self.probe_dir.glob("probe-*.json")):
            for key, rows in json.loads(path.read_text()).items():
                out[key] += rows
        return out

    def cpu(self) -> tuple[float, int]:
        """CPU seconds of the bridge's process tree so far, and how many processes."""
        return tree_cpu_seconds(self.process.pid)

    async def idle_cpu_ms_per_s(self, seconds: float = 2.0) -> float:
        """The bridge's CPU with no call, in ms per second."""
        cpu0, _ = self.cpu()
        await asyncio.sleep(seconds)
        return (self.cpu()[0] - cpu0) * 1000 / seconds

    async def stop(self) -> None:
        """SIGTERM the bridge (kill after 20 s), stop the simulator."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.process.wait), 20)
        except TimeoutError:
            self.process.kill()
        await self.sim.aclose()
        if self._log is not None:
            self._log.close()


def _die_with_us() -> None:
    """In the child before exec: SIGTERM when the benchmark dies (no orphaned bridge)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _wait_listening(process: subprocess.Popen[bytes], ports: Iterable[int]) -> None:
    async with asyncio.timeout(60):
        for port in ports:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the bridge exited with {process.returncode}")
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                await asyncio.sleep(0.1)


def _stamping_sim(config: CarrierSimConfig, stamps: dict[str, float]) -> CarrierSimulator:
    sim = CarrierSimulator(config)
    route = sim._route

    async def stamped(inbound: Any) -> Any:
        stamps.setdefault(inbound.did, time.perf_counter())
        return await route(inbound)

    sim._route = stamped  # type: ignore[method-assign]  # before start(): it hands it on
    return sim


async def start_bridge(tag: str, options: BridgeOptions, *, probed: bool) -> RunningBridge:
    """A fresh bridge process with its simulator, listening (see the module docstring).

    Raises:
        RuntimeError: the bridge exited or did not listen within 60 s, or ``workers``
            was given to a bridge without that setting.
    """
    work = Path(tempfile.mkdtemp(prefix=f"call-bench-{tag}-"))
    pki = ensure_dev_pki(work / "var" / "tls")
    ports = {"sip": free_port(), "https": free_port(), "sim": free_port()}
    config = _config(work, ports, options)
    users = [(user_name(i), PASSWORD, ()) for i in range(options.users)]
    await add_users(load_settings(config), users)
    stamps: dict[str, float] = {}
    sim = _stamping_sim(
        CarrierSimConfig(
            listen_port=ports["sim"],
            certificate=pki.server_certificate,
            private_key=pki.server_key,
            ca_file=pki.ca_certificate,
            mode=SimMode.ECHO,
            ring_time=0.0,
            announcement=options.announcement,
        ),
        stamps,
    )
    await sim.start()
    probe_dir = work / "probes"
    env = dict(os.environ)
    if probed:
        probe_dir.mkdir()
        site = Path(__file__).with_name("probe_site")
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), env.get("PYTHONPATH", "")])
        env["CALL_PROBE_DIR"] = str(probe_dir)
    command = [str(Path(sys.executable).with_name("pstn-bridge")), "serve", "--config", str(config)]
    log = (work / "bridge.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once per run, before the load
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=_die_with_us,  # noqa: PLW1509 - a prctl call only, before exec
    )
    bridge = RunningBridge(
        work=work, pki=pki, ports=ports, process=process, sim=sim, probe_dir=probe_dir, _log=log
    )
    bridge.trunk_invites = stamps
    try:
        await _wait_listening(process, (ports["https"], ports["sip"]))
    except BaseException:
        await bridge.stop()
        raise
    return bridge
