"""Signaling benchmark: call set-ups per second over TLS with the media plane idle.

Theory of operation: one bridge (:mod:`tests.bench.bench_bridge`, its trunk the carrier
simulator in echo mode answering at once, without announcement), ``concurrency``
browser clients over WSS (TLS), one user each (per-user limits then never bind; the
flood guard and the caps per source are lifted by the benchmark's configuration). Each
client runs INVITE -> 407 -> INVITE with credentials -> 200 -> ACK -> BYE -> 200 cycles
back to back for ``seconds``. The browser's offer is a real WebRTC offer (ICE
credentials and candidate, DTLS fingerprint, Opus and PCMU) taken once from a real leg
(:class:`IdleCall` reuses it): the bridge does all its per-call work (digest, routing,
trunk INVITE over TLS with SDES keys, its own ICE/DTLS leg and media ports, the CDR),
but no ICE check is answered and no RTP is sent by the browser, so the media plane stays
idle. Reported: set-ups per second (200 OK to the browser's INVITE), set-up latency
(first INVITE sent -> 200 received, the 407 round trip included; and authenticated
INVITE -> trunk INVITE at the simulator), failures, and the bridge's CPU per set-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from typing import Any

from bridge.media.webrtc_leg import WebRtcLeg, WebRtcLegConfig
from sip_gateway.sdp import MediaConfig
from tests.webrtc_client import ClientCall, WebRtcClient

from . import spy
from .bench_bridge import BridgeOptions, call_number, start_bridge, user_name
from .call_load import INVITES, install_stamps, log, open_clients, percentiles
from .proctree import cpu_seconds, machine_busy_seconds, tree_pids

__all__ = ["IdleCall", "signaling_run"]


class _IdleLeg:
    """Stands in for a :class:`WebRtcLeg`: offers a real leg's ICE and DTLS parameters."""

    def __init__(self, template: WebRtcLeg) -> None:
        self.fingerprints = template.fingerprints
        self.local_ice = template.local_ice
        self.default_address = template.default_address
        self.state = "new"

    async def close(self) -> None:
        """Nothing to close."""


class IdleCall(ClientCall):
    """A browser call whose media never starts (see the module docstring)."""

    template: _IdleLeg | None = None

    async def _new_leg(self, *, controlling: bool) -> Any:
        assert IdleCall.template is not None
        self.leg = IdleCall.template  # type: ignore[assignment]
        return self.leg

    def _start_media(self, config: MediaConfig, *, controlling: bool) -> None:
        self.config = config


async def _template() -> _IdleLeg:
    leg = await WebRtcLeg.create(
        WebRtcLegConfig(host_addresses=("127.0.0.1",)), on_rtp=lambda _p: None, controlling=True
    )
    try:
        return _IdleLeg(leg)
    finally:
        await leg.close()  # its port closes: the bridge's checks go nowhere


class _Tally:
    def __init__(self) -> None:
        self.setup: list[float] = []
        self.to_trunk: list[float] = []
        self.failures: dict[str, int] = {}
        self.numbers = itertools.count()

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1


async def _cycle(client: WebRtcClient, tally: _Tally, trunk: dict[str, float]) -> None:
    number = call_number(next(tally.numbers))
    call = IdleCall(client, direction="outgoing", codecs=client.config.codecs)
    start = time.perf_counter()
    try:
        await call._invite(number, None)
        await call.wait_answered(timeout=10)
    except Exception as exc:
        tally.fail(type(exc).__name__ + (f" {call.status}" if call.status else ""))
        await call.aclose()
        return
    answered = time.perf_counter()
    request = call.request
    tally.setup.append(answered - start)
    status = await call.hangup()
    if status != 200:
        tally.fail(f"BYE {status}")
    sent = INVITES.pop(number, [])
    if sent and number in trunk:
        tally.to_trunk.append(trunk.pop(number) - sent[-1])  # the authenticated INVITE
    await call.aclose()
    client._by_call_id.pop(request.call_id if request else "", None)


async def _client_loop(
    client: WebRtcClient, tally: _Tally, trunk: dict[str, float], end: float
) -> None:
    while time.perf_counter() < end:
        await _cycle(client, tally, trunk)


async def signaling_run(args: argparse.Namespace) -> dict[str, Any]:
    """Set-up cycles for ``args.signaling_seconds`` with ``args.signaling_concurrency``."""
    concurrency, seconds = args.signaling_concurrency, args.signaling_seconds
    log(f"signaling: {concurrency} browsers, INVITE/200/ACK/BYE cycles for {seconds:.0f} s")
    options = BridgeOptions(calls=max(concurrency, 2), users=concurrency, workers=args.workers)
    bridge = await start_bridge("signaling", options, probed=False)
    clients: list[WebRtcClient] = []
    tally = _Tally()
    install_stamps()
    try:
        IdleCall.template = await _template()
        clients = await open_clients(
            bridge.url, bridge.pki.ca_certificate, ("opus", "PCMU"), concurrency, user_name
        )
        for client in clients:  # warm-up: one cycle each, not counted
            await _cycle(client, _Tally(), {})
        profilers = (
            spy.start(tree_pids(bridge.process.pid), seconds, bridge.work / "spy")
            if args.profile
            else []
        )
        cpu0, _ = bridge.cpu()
        serve0 = cpu_seconds(bridge.process.pid)
        gen0, t0, busy0 = time.process_time(), time.perf_counter(), machine_busy_seconds()
        end = t0 + seconds
        loops = [
            asyncio.ensure_future(_client_loop(c, tally, bridge.trunk_invites, end))
            for c in clients
        ]
        while not all(loop.done() for loop in loops):
            await asyncio.wait(loops, timeout=1.0)
            elapsed = time.perf_counter() - t0
            log(
                f"  {elapsed:4.1f} s: {len(tally.setup)} set-ups "
                f"({len(tally.setup) / elapsed:.1f}/s)"
            )
        t1, gen1, busy1 = time.perf_counter(), time.process_time(), machine_busy_seconds()
        cpu1, processes = bridge.cpu()
        serve1 = cpu_seconds(bridge.process.pid)
        for loop in loops:
            loop.result()
        for _path, recorder in profilers:
            await asyncio.to_thread(recorder.wait)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        await bridge.stop()
    count = len(tally.setup)
    profile = {"profile": spy.summarize([path for path, _ in profilers])} if profilers else {}
    return profile | {
        "concurrency": concurrency,
        "window_s": round(t1 - t0, 3),
        "setups": count,
        "setups_per_s": round(count / (t1 - t0), 2),
        "failures": tally.failures,
        "setup_latency": percentiles(tally.setup),
        "invite_to_trunk_invite": percentiles(tally.to_trunk),
        "bridge_cpu_ms_per_setup": round((cpu1 - cpu0) * 1000 / count, 2) if count else None,
        "serve_process_cpu_ms_per_setup": (
            round((serve1 - serve0) * 1000 / count, 2) if count else None
        ),
        "bridge_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
        "bridge_processes": processes,
        "generator_cpu_cores": round((gen1 - gen0) / (t1 - t0), 3),
        "other_processes_cpu_cores": round(
            (busy1 - busy0 - (gen1 - gen0) - (cpu1 - cpu0)) / (t1 - t0), 3
        ),
        "work_dir": str(bridge.work),
    }
