"""End-to-end call benchmark: N concurrent browser calls through one bridge, per mode.

Run: ``.venv/bin/python -m tests.bench.call_bench [--mode both] [--calls 20] [--seconds 20]
[--find-max] [--workers auto]`` (or ``pstn-bridge bench ...``, ``make bench``). Not a test:
figures are printed and written (``var/bench/call_bench.json`` and ``.md``), never asserted.
Progress goes to stderr, one line per phase and per second of each measuring window.

Method
------
* The bridge runs as its own process, ``pstn-bridge serve --config <generated toml>``
  (:mod:`tests.bench.bench_bridge`: free loopback ports, benchmark users, the limits a
  benchmark would hit lifted; ``--workers`` as ``[media] workers``). Its trunk is a
  carrier simulator in echo mode in *this* process, so the simulator's own SRTP, jitter
  buffer and G.711 work is not counted as bridge CPU.
* The load generator (:mod:`tests.bench.call_load`) is N packet-level browsers in this
  process (SIP over WSS with digest, ICE + DTLS-SRTP via aiortc), replaying pre-encoded
  20 ms Opus packets (transcoded: the browser offers opus first) or G.711 payloads
  (relayed: PCMU first) from one 20 ms clock.
* CPU: ``utime + stime`` (+ reaped children) of the bridge's whole process tree, the
  serve process and every descendant such as media workers (:mod:`tests.bench.proctree`),
  over the steady window that starts ``--warmup`` seconds after the last call's media is
  up and lasts ``--seconds``; divided by calls x seconds. Idle CPU (no call) is shown, not
  subtracted. So is the CPU the rest of the machine used meanwhile (``/proc/stat`` busy
  time minus the bridge and the load generator): on a shared host, the noise.
* Call set-up: authenticated INVITE sent by the browser -> trunk INVITE routed by the
  simulator (INVITE in to trunk INVITE out, plus one loopback hop), and the browser's
  offer (first INVITE) -> its DTLS connected. Both ends stamp ``time.perf_counter()`` in
  this process.
* Late/lost at the browsers over the window: packets received versus 50/s expected;
  "late" = more than 40 ms behind the stream's best-case schedule (what a 40 ms jitter
  buffer would discard). The bridge -> carrier direction: the simulator's lost frames (RTP
  sequence gaps); its concealed and late counts (its playout clock runs in this busy
  process, over the whole call) are shown, not judged.
* Added latency (a second, shorter pass with the same load, ``--latency-seconds``; the
  bridge's processes, media workers included, carrying the per-frame timestamps of
  :mod:`tests.bench.call_probe`): from the sender's hand-off of a packet to the kernel to
  the bridge's hand-off of the packet carrying that frame on the other leg;
  CLOCK_MONOTONIC on both ends.
* Bare relay (:mod:`tests.bench.bare_relay`): the same codec and SRTP work for N streams at
  50 frames/s each way with no signaling, in its own process, measured the same way and
  in the same run; the ratio is bridge / bare relay (transcoded: the bridge's own codec
  classes; relayed: G.711 both ways).
* ``--find-max``: per mode, probed runs with rising call counts (a step schedule, then
  bisection to 10%) until late/lost frames exceed 0.1% or the p99 added latency exceeds
  20 ms (or set-up fails); a failed step is tried once more (``--find-max-retries``: a
  noisy machine stalls everything now and then); bounded by ``--find-max-minutes``; the
  largest passing count is the maximum sustained calls.
* Signaling (:mod:`tests.bench.signaling_bench`): INVITE/200/ACK/BYE cycles over WSS
  with the media plane idle: set-ups per second and set-up latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bridge.settings import WebRtcSettings
from tests.webrtc_audio import opus_packets, pcmu_payloads, speech_8k, speech_48k
from tests.webrtc_client import ClientCall, WebRtcClient
from tests.webrtc_rtp import ticker

from . import spy
from .bare_relay import PacedRelayLoad, RelayLoad, StreamKeys, start_relay
from .bench_bridge import BridgeOptions, RunningBridge, call_number, start_bridge
from .call_load import (
    INVITES,
    SIM_SENT,
    carrier_stats,
    client_stats,
    dial_all,
    install_stamps,
    log,
    open_clients,
    percentiles,
    play_all,
    received_packets,
    setup_stats,
)
from .call_report import markdown, report, targets
from .proctree import cpu_seconds, machine_busy_seconds, tree_pids

ROOT = Path(__file__).resolve().parents[2]
MODES = {"transcoded": ("transcode",), "relayed": ("relay",), "both": ("transcode", "relay")}
LABEL = {"transcode": "transcoded", "relay": "relayed"}
FIND_STEPS = {
    "transcode": (10, 20, 40, 60, 80, 100, 120, 150, 200, 300),
    "relay": (20, 50, 100, 150, 200, 300, 400, 500, 700, 1000),
}
LOSS_LIMIT_PCT = 0.1
LATENCY_LIMIT_MS = 20.0


# -- one run of N calls through the bridge ------------------------------------------------


async def _window(
    bridge: RunningBridge,
    calls: list[ClientCall],
    seconds: float,
    *,
    profile: bool = False,
    native: bool = False,
) -> dict[str, Any]:
    """Measure for ``seconds``, a progress line per second (see the module docstring)."""
    profilers = (
        spy.start(tree_pids(bridge.process.pid), seconds, bridge.work / "spy", native=native)
        if profile
        else []
    )
    gen0, (cpu0, _), t0 = time.process_time(), bridge.cpu(), time.perf_counter()
    busy0 = machine_busy_seconds()
    last_cpu, last_t, last_rx = cpu0, t0, received_packets(calls)
    while (now := time.perf_counter()) < t0 + seconds:
        await asyncio.sleep(min(1.0, t0 + seconds - now))
        cpu, processes = bridge.cpu()
        t, rx = time.perf_counter(), received_packets(calls)
        log(
            f"  {t - t0:4.1f} s: bridge {(cpu - last_cpu) / (t - last_t):.2f} cores "
            f"({processes} processes), {(rx - last_rx) / (t - last_t) / len(calls):.1f} "
            "packets/s per browser"
        )
        last_cpu, last_t, last_rx = cpu, t, rx
    cpu1, processes = bridge.cpu()
    t1 = time.perf_counter()
    generator = (time.process_time() - gen0) / (t1 - t0)
    busy = (machine_busy_seconds() - busy0) / (t1 - t0)
    for _path, recorder in profilers:
        await asyncio.to_thread(recorder.wait)
    window: dict[str, Any] = {"t0": t0, "t1": t1, "cpu": cpu1 - cpu0, "processes": processes}
    window["gen"] = generator
    window["others"] = busy - generator - (cpu1 - cpu0) / (t1 - t0)
    if profilers:
        window["profile"] = spy.summarize([path for path, _ in profilers])
    return window


async def bridge_run(
    mode: str, args: argparse.Namespace, count: int, seconds: float, *, probed: bool
) -> dict[str, Any]:
    """One run of ``count`` calls through a fresh bridge process (see the module docstring)."""
    options = BridgeOptions(
        calls=count, complexity=args.complexity, bitrate=args.bitrate, workers=args.workers
    )
    what = f"{LABEL[mode]}, {count} calls{', latency probes' if probed else ''}"
    log(f"bridge, {what}: starting")
    bridge = await start_bridge(mode, options, probed=probed)
    clients: list[WebRtcClient] = []
    try:
        await asyncio.sleep(min(1.0, args.settle) if probed else args.settle)  # workers start
        idle = await bridge.idle_cpu_ms_per_s(
            min(1.0, args.idle_seconds) if probed else args.idle_seconds
        )
        log(f"  idle bridge {idle:.1f} ms CPU/s; registering {count} browsers")
        codecs = ("opus", "PCMU") if mode == "transcode" else ("PCMU", "opus")
        clients = await open_clients(
            bridge.url, bridge.pki.ca_certificate, codecs, count, lambda _i: "bench"
        )
        INVITES.clear()  # the numbers repeat from run to run
        calls, connected = await dial_all(clients, call_number)
        play_all(calls, mode)
        log(f"  media flowing; {args.warmup:.0f} s warm-up, then {seconds:.0f} s measured")
        await asyncio.sleep(args.warmup)
        window = await _window(
            bridge, calls, seconds, profile=args.profile and not probed, native=args.profile_native
        )
        t0, t1 = window["t0"], window["t1"]
        result = _result(mode, bridge, calls, window, idle) | {
            "probed": probed,
            "setup": setup_stats(
                [call_number(i) for i in range(count)], bridge.trunk_invites, connected
            ),
        }
        statuses = await asyncio.gather(*(call.hangup() for call in calls))
        result["bye_200"] = sum(1 for s in statuses if s == 200)
        await asyncio.sleep(0.5)
        result["carrier"] = carrier_stats(bridge.sim)
        sent = {
            (call.ssrc, seq): t for call in calls if call.source for seq, t in call.source.send_log
        }
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        await bridge.stop()
    if probed:
        probe = bridge.probes()
        result["latency"] = _latency(probe, sent, t0, t1)
        result["bridge_counters"] = _bridge_counters(probe["calls"])
    SIM_SENT.clear()
    return result


def _result(
    mode: str, bridge: RunningBridge, calls: list[ClientCall], window: dict[str, Any], idle: float
) -> dict[str, Any]:
    """The figures of one measuring window (CPU per call-second, the browsers' frames)."""
    t0, t1, cpu, count = window["t0"], window["t1"], window["cpu"], len(calls)
    result = {
        "mode": mode,
        "work_dir": str(bridge.work),
        "calls": count,
        "window_s": round(t1 - t0, 3),
        "bridge_cpu_ms_per_call_s": round(cpu * 1000 / (count * (t1 - t0)), 3),
        "bridge_cpu_cores": round(cpu / (t1 - t0), 3),
        "bridge_processes": int(window["processes"]),
        "bridge_idle_cpu_ms_per_s": round(idle, 2),
        "generator_cpu_cores": round(window["gen"], 3),
        "other_processes_cpu_cores": round(window["others"], 3),
        "media_modes": sorted({c.config.codec.name for c in calls if c.config}),
        "client": client_stats(calls, t0, t1),
    }
    if "profile" in window:
        result["profile"] = window["profile"]
    return result


def _latency(
    probe: dict[str, Any], client_sent: dict[tuple[int | None, int], float], t0: float, t1: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, entries, sent in (
        ("browser_to_gateway", probe["b2g"], client_sent),
        ("gateway_to_browser", probe["g2b"], SIM_SENT),
    ):
        added, wait, work = [], [], []
        for ssrc, seq, read, pop, done in entries:
            start = sent.get((ssrc, seq))
            if start is None or not t0 <= start < t1:
                continue
            added.append(done - start)
            wait.append(read - start)
            work.append(done - pop)
        out[name] = {
            "added": percentiles(added),
            "waiting_to_be_read": percentiles(wait),
            "processing": percentiles(work),
        }
    return out


def _bridge_counters(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the calls: what the cut-through path dropped, filled and passed on."""
    pipeline = [c["pipeline"] for c in calls]
    gateway = [c["gateway"] for c in calls if c["gateway"]]

    def total(rows: list[dict[str, Any]], key: str) -> int:
        return int(sum(row.get(key, 0) for row in rows))

    return {
        "browser_frames": total(pipeline, "browser_audio_frames"),
        "browser_late": total(pipeline, "browser_late"),
        "gateway_packets_sent": total(gateway, "packets_sent"),
        "gateway_silence_sent": total(gateway, "silence_sent"),
        "gateway_packets_received": total(gateway, "packets_received"),
        "gateway_late": total(gateway, "late"),
        "gateway_gaps": total(gateway, "concealed"),
    }


# -- the bare relay ---------------------------------------------------------------------------


class _Sink(asyncio.DatagramProtocol):
    """Reads and counts what the bare relay sends (a reader, like the bridge's peers)."""

    def __init__(self) -> None:
        self.packets = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.packets += 1


async def bare_run(
    chain: str, args: argparse.Namespace, count: int, *, paced: bool = False
) -> dict[str, Any]:
    """``count`` streams through the bare relay process; its CPU per call-second.

    ``paced``: the gateway side on one clock per stream, phases spread
    (:class:`~tests.bench.bare_relay.PacedRelayLoad`), as the carrier simulator sends.
    """
    log(f"bare relay, {chain} chain{', carrier-paced' if paced else ''}, {count} streams")
    loop = asyncio.get_running_loop()
    sink_transport, sink = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    streams = [StreamKeys.fresh() for _ in range(count)]
    process, ports = start_relay(
        streams, chain, args.complexity, args.bitrate, sink_transport.get_extra_info("sockname")[1]
    )
    opus = chain != "relay"
    browser = opus_packets(speech_48k(6.0)) if opus else pcmu_payloads(speech_8k(6.0))
    load = (PacedRelayLoad if paced else RelayLoad)(
        streams,
        ports,
        browser,
        111 if opus else 0,
        48000 if opus else 8000,
        pcmu_payloads(speech_8k(6.0)),
    )
    clock = ticker()
    try:
        if isinstance(load, PacedRelayLoad):
            load.start()
        else:
            clock.add(load)
        await asyncio.sleep(args.warmup)
        cpu0, t0, out0 = cpu_seconds(process.pid), time.perf_counter(), sink.packets
        await asyncio.sleep(args.bare_seconds)
        cpu1, t1, out1 = cpu_seconds(process.pid), time.perf_counter(), sink.packets
    finally:
        if not isinstance(load, PacedRelayLoad):
            clock.remove(load)
        load.close()
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait)
        sink_transport.close()
    return {
        "chain": f"{chain}, carrier-paced" if paced else chain,
        "streams": count,
        "window_s": round(t1 - t0, 3),
        "cpu_ms_per_call_s": round((cpu1 - cpu0) * 1000 / (count * (t1 - t0)), 3),
        "packets_out_per_stream_s": round((out1 - out0) / (count * (t1 - t0)), 1),
    }


# -- the maximum sustained calls -----------------------------------------------------------


def verdict(run: dict[str, Any]) -> tuple[bool, str]:
    """Whether a probed run sustained its calls (late/lost <= 0.1%, p99 added <= 20 ms)."""
    client, carrier = run["client"], run["carrier"]
    browser = (client["lost_pct"] or 0) + (client["late_pct"] or 0)
    # the carrier side: frames lost on the way (RTP sequence gaps); its concealed and late
    # counts are its own playout clock's, in the load generator's busy loop, over the call
    trunk = carrier["lost"] * 100 / max(1, carrier["packets_received"])
    worst_p99 = max(
        (p["added"].get("p99_ms", 0.0) for p in run.get("latency", {}).values()), default=0.0
    )
    reasons = []
    if browser > LOSS_LIMIT_PCT or trunk > LOSS_LIMIT_PCT:
        reasons.append(
            f"late/lost {browser:.2f}% at the browsers, lost {trunk:.2f}% at the carrier"
        )
    if worst_p99 > LATENCY_LIMIT_MS:
        reasons.append(f"p99 added latency {worst_p99:.1f} ms")
    return not reasons, "; ".join(reasons) or f"ok (p99 {worst_p99:.1f} ms)"


async def _try(
    mode: str, args: argparse.Namespace, count: int, steps: list[dict[str, Any]]
) -> bool:
    try:
        run = await bridge_run(mode, args, count, args.find_max_seconds, probed=True)
        ok, why = verdict(run)
        why += (
            f" [cores: bridge {run['bridge_cpu_cores']:.2f}, generator "
            f"{run['generator_cpu_cores']:.2f}, others {run['other_processes_cpu_cores']:.2f}]"
        )
    except Exception as exc:  # a set-up that fails under load is a failed step
        run, ok, why = {"calls": count}, False, f"failed: {type(exc).__name__}: {exc}"
    log(f"find-max, {LABEL[mode]}, {count} calls: {'sustained' if ok else 'NOT sustained'}: {why}")
    steps.append({"calls": count, "sustained": ok, "why": why, "run": run})
    return ok


async def _sustained(
    mode: str, args: argparse.Namespace, count: int, steps: list[dict[str, Any]], deadline: float
) -> bool:
    """One step; a failed step is tried again (``--find-max-retries``) while time is left."""
    for attempt in range(1 + args.find_max_retries):
        if attempt and time.monotonic() > deadline:
            break
        if await _try(mode, args, count, steps):
            return True
    return False


async def find_max(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Rising call counts until a step is not sustained, then bisection, within the budget.

    The search stops when the gap between the largest sustained and the smallest failed
    count is within 10% (at least 5 calls) or ``--find-max-minutes`` are used up.
    """
    deadline = time.monotonic() + args.find_max_minutes * 60
    steps: list[dict[str, Any]] = []
    best, failed = 0, None
    for count in FIND_STEPS[mode]:
        if time.monotonic() > deadline:
            break
        if await _sustained(mode, args, count, steps, deadline):
            best = count
        else:
            failed = count
            break
    while failed is not None and failed - best > max(5, best // 10) and time.monotonic() < deadline:
        middle = (best + failed) // 2
        if await _sustained(mode, args, middle, steps, deadline):
            best = middle
        else:
            failed = middle
    return {
        "max_sustained_calls": best,
        "first_not_sustained": failed,
        "time_bound_hit": time.monotonic() > deadline,
        "steps": steps,
    }


# -- the whole benchmark ---------------------------------------------------------------------


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every run the options ask for; the results as one JSON-able dict."""
    install_stamps()
    results: dict[str, Any] = {
        "command": args.command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "config": {
            key: getattr(args, key)
            for key in (
                "mode",
                "calls",
                "seconds",
                "warmup",
                "latency_seconds",
                "complexity",
                "bitrate",
                "workers",
                "find_max",
            )
        },
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "modes": {},
    }
    for mode in MODES.get(args.mode, ()):
        entry: dict[str, Any] = {
            "cpu": await bridge_run(mode, args, args.calls, args.seconds, probed=False)
        }
        if not args.no_latency:
            entry["latency"] = await bridge_run(
                mode, args, args.calls, args.latency_seconds, probed=True
            )
        chain = "bridge" if mode == "transcode" else "relay"
        entry["bare"] = await bare_run(chain, args, args.calls)
        if args.paced_bare:
            entry["bare_paced"] = await bare_run(chain, args, args.calls, paced=True)
        if args.find_max:
            entry["find_max"] = await find_max(mode, args)
        results["modes"][mode] = entry
    if args.signaling or args.mode == "signaling":
        from .signaling_bench import signaling_run

        results["signaling"] = await signaling_run(args)
    results["targets"] = targets(results)
    return results


def parser() -> argparse.ArgumentParser:
    """The benchmark's options (``pstn-bridge bench`` passes its arguments on unchanged)."""
    p = argparse.ArgumentParser(prog="call_bench", description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument(
        "--mode",
        choices=[*MODES, "signaling"],
        default="both",
        help="media mode(s) to load; signaling: only the signaling benchmark",
    )
    p.add_argument(  # the older spelling: --modes transcode relay
        "--modes", nargs="+", choices=("transcode", "relay"), help=argparse.SUPPRESS
    )
    p.add_argument("--calls", type=int, default=20, help="concurrent calls per mode")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    p.add_argument(
        "--settle", type=float, default=3.0, help="seconds after the bridge listens (workers start)"
    )
    p.add_argument("--idle-seconds", type=float, default=2.0, help="window of the idle CPU")
    p.add_argument("--latency-seconds", type=float, default=6.0, help="window of the latency pass")
    p.add_argument("--no-latency", action="store_true", help="skip the latency pass")
    p.add_argument("--bare-seconds", type=float, default=10.0, help="window of the bare relay")
    p.add_argument(
        "--workers",
        default=None,
        help="[media] workers of the bridge (a number or auto; default: not set)",
    )
    p.add_argument(
        "--find-max",
        action="store_true",
        help="raise the calls until late/lost > 0.1%% or p99 added latency > 20 ms",
    )
    p.add_argument("--find-max-minutes", type=float, default=12.0, help="time bound per mode")
    p.add_argument("--find-max-seconds", type=float, default=8.0, help="window per step")
    p.add_argument(
        "--find-max-retries", type=int, default=1, help="tries again of a failed step (noise)"
    )
    p.add_argument(
        "--signaling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the signaling benchmark (set-ups per second)",
    )
    p.add_argument("--signaling-seconds", type=float, default=10.0)
    p.add_argument("--signaling-concurrency", type=int, default=8, help="browsers cycling at once")
    opus = WebRtcSettings()
    p.add_argument(
        "--complexity",
        type=int,
        default=opus.opus_complexity,
        help="Opus encoder complexity (default: the bridge's, %(default)s)",
    )
    p.add_argument(
        "--bitrate",
        type=int,
        default=opus.opus_bitrate,
        help="Opus encoder bit rate (default: the bridge's, %(default)s)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy every bridge process during the CPU windows (top frames in the results)",
    )
    p.add_argument(
        "--profile-native",
        action="store_true",
        help="with --profile: C frames too (py-spy --native)",
    )
    p.add_argument(
        "--paced-bare",
        action="store_true",
        help="also run the bare relay with its gateway side paced like the simulator",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=ROOT / "var" / "bench" / "call_bench.json",
        help="where the JSON goes (the Markdown table next to it, .md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the table, write the JSON and the Markdown."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.modes:
        args.mode = "both" if len(set(args.modes)) == 2 else LABEL[args.modes[0]]
        args.signaling = False  # the older command line had no signaling pass
    args.command = os.environ.get("CALL_BENCH_COMMAND") or " ".join(
        ["python -m tests.bench.call_bench", *argv]
    )
    results = asyncio.run(run(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    args.json.with_suffix(".md").write_text(markdown(results))
    print(report(results))
    print(f"\nJSON: {args.json}\nMarkdown: {args.json.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
