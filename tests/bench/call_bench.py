"""End-to-end call benchmark: N concurrent browser calls through one bridge process.

Run: ``.venv/bin/python -m tests.bench.call_bench [--calls 20] [--seconds 20]``. Not a
test: figures are printed (and written to ``var/bench/call_bench.json``), never asserted.

Method
------
* The bridge runs as its own process, ``pstn-bridge serve --config <generated toml>``
  (free loopback ports, SQLite user database with one user, Opus complexity/bit rate from
  the options below, log level WARNING, per-user limits raised to N). Its trunk is a
  carrier simulator in echo mode that runs in *this* process, not the bridge's embedded
  one: the simulator's own SRTP, jitter buffer and G.711 work would otherwise be counted
  as bridge CPU.
* The load generator is N :class:`tests.webrtc_client.WebRtcClient` (ICE + DTLS-SRTP via
  aiortc, SIP over WSS, digest), all in this process, replaying pre-encoded 20 ms Opus
  packets (transcoded run, the client offers opus first) or G.711 payloads (relayed run,
  PCMU first) from one 20 ms clock.
* CPU: ``utime + stime`` of the bridge process from ``/proc/<pid>/stat`` (every thread,
  10 ms ticks) over the steady window that starts ``--warmup`` seconds after the last
  call's media is up and lasts ``--seconds``; divided by calls x seconds. The bridge's
  idle CPU (no call) is shown too; it is not subtracted.
* Late/lost at the client, over the window: packets received from the bridge versus the
  50/s expected; "late" = arriving more than 40 ms behind the stream's best-case
  schedule (arrival minus RTP timestamp, relative to its minimum), what a browser jitter
  buffer of 40 ms would discard. The echo path's own damage shows in the carrier
  simulator's stats (frames it had to conceal or got late) and, in the latency pass, in
  the bridge's counters (late browser packets dropped, comfort silence sent for lack of
  audio, gaps in the carrier's timestamps passed on).
* Added latency (a second pass, same load, the bridge started through
  :mod:`tests.bench.call_probe`, i.e. ``bridge.app.serve`` with per-frame timestamps):
  for every audio frame, from the moment the sender (client or carrier simulator, in this
  process) handed its packet to the kernel, to the moment the bridge handed the packet
  carrying that frame's audio to the kernel on the other leg. Both ends read
  CLOCK_MONOTONIC (``time.perf_counter``), which is one clock for every process on the
  machine. Split into: waiting to be read (socket queue + event loop), waiting in the
  bridge's buffer (zero since the media path is cut-through: no jitter buffer, no
  playout clock; the column stays for comparison with older runs), and processing
  (decode, resample, encode, SRTP, send). The carrier's own echo delay is not in it:
  each direction is measured on its own.
* Bare relay (:mod:`tests.bench.bare_relay`): the same codec and SRTP work for N streams
  at 50 frames/s each way with no signaling, in its own process, measured the same way;
  the ratio is bridge / bare relay with the bridge's own codec chain. Its load sends
  every stream's packets in one burst per 20 ms; with ``--paced-bare`` it also runs with
  the gateway side on one clock per stream, phases spread, as the carrier simulator
  sends to the bridge ("paced" rows): arrivals spread out cost the relay wake-ups and
  colder caches (measured here: relay chain 1.3 -> 2.3 ms, bridge chain 12.3 -> 14.4 ms
  per call-second), which the bridge pays too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bridge.settings import load_settings
from sip_gateway.aio.rtp import MediaSocket
from sip_gateway.carrier_sim import CarrierSimConfig, CarrierSimulator, SimMode
from sip_gateway.devcerts import ensure_dev_pki
from sip_gateway.tls import TlsClientConfig, client_context
from tests.interop.peers import free_port
from tests.userdb import add_users
from tests.webrtc_audio import opus_packets, pcmu_payloads, speech_8k, speech_48k
from tests.webrtc_client import ClientCall, ClientConfig, PacketSource, WebRtcClient
from tests.webrtc_rtp import ticker

from .bare_relay import PacedRelayLoad, RelayLoad, StreamKeys, start_relay

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench password 1"
NUMBER = "+441632960123"
LATE_S = 0.040
_SIM_SENT: dict[tuple[int, int], float] = {}


def _stamp(data: bytes) -> None:
    if len(data) >= 12 and not 192 <= data[1] <= 223:
        _SIM_SENT[(int.from_bytes(data[8:12]), int.from_bytes(data[2:4]))] = time.perf_counter()


def _install_sim_probe() -> None:
    """Stamp every RTP packet the carrier simulator (this process) sends: (SSRC, seq).

    Both ways a media socket sends: ``send`` and the per-packet ``send_rtp``.
    """
    original_send, original_init = MediaSocket.send, MediaSocket.__init__

    def send(self: MediaSocket, data: bytes, address: Any, *, rtcp: bool = False) -> None:
        if not rtcp:
            _stamp(data)
        original_send(self, data, address, rtcp=rtcp)

    def init(self: MediaSocket, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        sendto = self.send_rtp

        def send_rtp(data: bytes, address: Any) -> None:
            _stamp(data)
            sendto(data, address)

        self.send_rtp = send_rtp

    MediaSocket.send = send  # type: ignore[method-assign]
    MediaSocket.__init__ = init  # type: ignore[method-assign]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(values), "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": pick(1.0)}


# -- the bridge under test -----------------------------------------------------------------


def _config(work: Path, ports: dict[str, int], args: argparse.Namespace) -> Path:
    text = f"""
[node]
var_dir = "{work / "var"}"
[sip]
listen_port = {ports["sip"]}
[http]
listen_port = {ports["https"]}
[users]
demo_user = ""
[log]
level = "WARNING"
[carrier_sim]
enabled = false
[webrtc]
opus_complexity = {args.complexity}
opus_bitrate = {args.bitrate}
[limits]
max_concurrent_calls_per_user = {max(args.calls, 2)}
max_calls_per_minute_per_user = 10000
browser_request_rate = 100000.0
browser_request_burst = 1000000
[[trunks]]
name = "sim"
host = "127.0.0.1"
port = {ports["sim"]}
allowed_sources = ["127.0.0.1/32"]
max_channels = {max(args.calls, 100)}
"""
    path = work / "bridge.toml"
    path.write_text(text)
    return path


async def _wait_listening(process: subprocess.Popen[bytes], ports: Iterable[int]) -> None:
    async with asyncio.timeout(30):
        for port in ports:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the bridge exited with {process.returncode}")
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                await asyncio.sleep(0.1)


async def _clients(url: str, ca: Path, codecs: tuple[str, ...], count: int) -> list[WebRtcClient]:
    ssl = client_context(TlsClientConfig(ca_file=ca))
    config = ClientConfig(
        url=url, ssl=ssl, user="bench", password=PASSWORD, codecs=codecs, keep_payloads=False
    )
    clients = [WebRtcClient(config) for _ in range(count)]
    gate = asyncio.Semaphore(8)

    async def up(client: WebRtcClient) -> None:
        async with gate:
            await client.connect()
            response = await client.register()
            if response.status_code != 200:
                raise RuntimeError(f"REGISTER got {response.status_code}")

    await asyncio.gather(*(up(c) for c in clients))
    return clients


async def _dial_all(clients: list[WebRtcClient]) -> list[ClientCall]:
    gate = asyncio.Semaphore(5)

    async def dial(client: WebRtcClient) -> ClientCall:
        async with gate:
            call = await client.dial(NUMBER)
            await call.wait_answered(timeout=30)
            await call.wait_media(timeout=30)
            return call

    return await asyncio.gather(*(dial(c) for c in clients))


async def bridge_run(mode: str, args: argparse.Namespace, *, probed: bool) -> dict[str, Any]:
    """One run of N calls through a fresh bridge process (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix=f"call-bench-{mode}-"))
    pki = ensure_dev_pki(work / "var" / "tls")
    ports = {"sip": free_port(), "https": free_port(), "sim": free_port()}
    config = _config(work, ports, args)
    await add_users(load_settings(config), [("bench", PASSWORD, ())])
    sim = CarrierSimulator(
        CarrierSimConfig(
            listen_port=ports["sim"],
            certificate=pki.server_certificate,
            private_key=pki.server_key,
            ca_file=pki.ca_certificate,
            mode=SimMode.ECHO,
            ring_time=0.0,
        )
    )
    await sim.start()
    probe_out = work / "probe.json"
    command = (
        [sys.executable, "-m", "tests.bench.call_probe", str(config), str(probe_out)]
        if probed
        else [str(Path(sys.executable).with_name("pstn-bridge")), "serve", "--config", str(config)]
    )
    log = (work / "bridge.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once per run, before the load
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    clients: list[WebRtcClient] = []
    try:
        await _wait_listening(process, (ports["https"], ports["sip"]))
        await asyncio.sleep(1.0)
        idle0 = cpu_seconds(process.pid)
        await asyncio.sleep(2.0)
        idle_ms_per_s = (cpu_seconds(process.pid) - idle0) * 1000 / 2.0
        codecs = ("opus", "PCMU") if mode == "transcode" else ("PCMU", "opus")
        url = f"wss://127.0.0.1:{ports['https']}/sip"
        clients = await _clients(url, pki.ca_certificate, codecs, args.calls)
        calls = await _dial_all(clients)
        payloads = (
            opus_packets(speech_48k(6.0)) if mode == "transcode" else pcmu_payloads(speech_8k(6.0))
        )
        for index, call in enumerate(calls):
            offset = index * 7 % len(payloads)  # every call a different part of the speech
            rotated = tuple(payloads[offset:]) + tuple(payloads[:offset])
            assert call.config is not None
            call.play(PacketSource(call.config.codec.name, rotated, keep_times=True))
        await asyncio.sleep(args.warmup)
        bench0, cpu0, t0 = time.process_time(), cpu_seconds(process.pid), time.perf_counter()
        await asyncio.sleep(args.seconds)
        bench1, cpu1, t1 = time.process_time(), cpu_seconds(process.pid), time.perf_counter()
        result = {
            "mode": mode,
            "probed": probed,
            "work_dir": str(work),
            "calls": args.calls,
            "window_s": round(t1 - t0, 3),
            "bridge_cpu_ms_per_call_s": round((cpu1 - cpu0) * 1000 / (args.calls * (t1 - t0)), 3),
            "bridge_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
            "bridge_idle_cpu_ms_per_s": round(idle_ms_per_s, 2),
            "generator_cpu_cores": round((bench1 - bench0) / (t1 - t0), 3),
            "media_modes": sorted({c.config.codec.name for c in calls if c.config}),
            "client": _client_stats(calls, t0, t1),
        }
        statuses = await asyncio.gather(*(call.hangup() for call in calls))
        result["bye_200"] = sum(1 for s in statuses if s == 200)
        await asyncio.sleep(0.5)
        result["carrier"] = _carrier_stats(sim)
        sent = {
            (call.ssrc, seq): t for call in calls if call.source for seq, t in call.source.send_log
        }
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), 20)
        except TimeoutError:
            process.kill()
        await sim.aclose()
        log.close()
    if probed:
        probe = json.loads(probe_out.read_text())
        result["latency"] = _latency(probe, sent, t0, t1)
        result["bridge_counters"] = _bridge_counters(probe["calls"])
    _SIM_SENT.clear()
    return result


def _client_stats(calls: list[ClientCall], t0: float, t1: float) -> dict[str, Any]:
    expected = received = late = 0
    for call in calls:
        rx = call.reception
        assert call.config is not None
        rate = call.config.codec.clock_rate
        transit = []
        base_ts, previous = None, 0
        for arrival, ts in zip(rx.arrivals, rx.timestamps, strict=True):
            if not t0 <= arrival < t1:
                continue
            if base_ts is None:
                base_ts = previous = ts
            delta = (ts - previous) & 0xFFFFFFFF
            previous = ts
            base_ts += delta if delta < 0x80000000 else delta - 0x100000000
            transit.append(arrival - base_ts / rate)
        expected += round((t1 - t0) / 0.020)
        received += len(transit)
        if transit:
            best = min(transit)
            late += sum(1 for x in transit if x - best > LATE_S)
    return {
        "packets_expected": expected,
        "packets_received": received,
        "lost_pct": round(max(0, expected - received) * 100 / expected, 3) if expected else None,
        "late_pct": round(late * 100 / received, 3) if received else None,
    }


def _carrier_stats(sim: CarrierSimulator) -> dict[str, Any]:
    received = concealed = late = lost = 0
    for call in sim.calls:
        stats = call.media_stats()
        received += stats.packets_received
        concealed += stats.concealed
        late += stats.late
        lost += stats.lost
    return {
        "packets_received": received,
        "concealed_pct": round(concealed * 100 / received, 3) if received else None,
        "late_pct": round(late * 100 / received, 3) if received else None,
        "lost": lost,
    }


def _latency(
    probe: dict[str, Any], client_sent: dict[tuple[int | None, int], float], t0: float, t1: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, entries, sent in (
        ("browser_to_gateway", probe["b2g"], client_sent),
        ("gateway_to_browser", probe["g2b"], _SIM_SENT),
    ):
        added, wait, buffered, work = [], [], [], []
        for ssrc, seq, read, pop, done in entries:
            start = sent.get((ssrc, seq))
            if start is None or not t0 <= start < t1:
                continue
            added.append(done - start)
            wait.append(read - start)
            buffered.append(pop - read)
            work.append(done - pop)
        out[name] = {
            "added": _percentiles(added),
            "waiting_to_be_read": _percentiles(wait),
            "in_buffer": _percentiles(buffered),
            "processing": _percentiles(work),
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
        "browser_duplicates": total(pipeline, "browser_duplicates"),
        "gateway_packets_sent": total(gateway, "packets_sent"),
        "gateway_silence_sent": total(gateway, "silence_sent"),
        "gateway_audio_suppressed": total(gateway, "audio_suppressed"),
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


async def bare_run(chain: str, args: argparse.Namespace, *, paced: bool = False) -> dict[str, Any]:
    """N streams through the bare relay process; its CPU per call-second.

    ``paced``: the gateway side on one clock per stream, phases spread
    (:class:`~tests.bench.bare_relay.PacedRelayLoad`), as the carrier simulator sends.
    """
    loop = asyncio.get_running_loop()
    sink_transport, sink = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    streams = [StreamKeys.fresh() for _ in range(args.calls)]
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
        await asyncio.sleep(args.seconds)
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
        "streams": args.calls,
        "window_s": round(t1 - t0, 3),
        "cpu_ms_per_call_s": round((cpu1 - cpu0) * 1000 / (args.calls * (t1 - t0)), 3),
        "packets_out_per_stream_s": round((out1 - out0) / (args.calls * (t1 - t0)), 1),
    }


# -- report -----------------------------------------------------------------------------------


def _done(mode: str) -> str:
    return {"transcode": "transcoded", "relay": "relayed"}.get(mode, mode)


def _row(label: str, cpu: float | None, ratio: float | None, extra: str = "") -> str:
    cpu_text = f"{cpu:8.2f}" if cpu is not None else "       -"
    ratio_text = f"{ratio:6.2f}x" if ratio is not None else "      -"
    return f"  {label:<34}{cpu_text}   {ratio_text}  {extra}"


def report(results: dict[str, Any]) -> str:
    """The table printed at the end."""
    cfg = results["config"]
    lines = [
        f"call benchmark: {cfg['calls']} concurrent calls, {cfg['seconds']} s window after "
        f"{cfg['warmup']} s warm-up, Opus complexity {cfg['complexity']} at {cfg['bitrate']} "
        f"bit/s, {results['machine']['cpus']} CPUs",
        "",
        f"  {'':<34}{'CPU ms per call-second':>8}  ratio   client lost/late   carrier concealed",
    ]
    bare = {b["chain"]: b["cpu_ms_per_call_s"] for b in results["bare"]}
    for run in results["bridge"]:
        if run["probed"]:
            continue
        ref = bare.get("bridge" if run["mode"] == "transcode" else "relay")
        cpu = run["bridge_cpu_ms_per_call_s"]
        client, carrier = run["client"], run["carrier"]
        lines.append(
            _row(
                f"bridge, {_done(run['mode'])} ({'/'.join(run['media_modes'])})",
                cpu,
                cpu / ref if ref else None,
                f"{client['lost_pct']:.2f}% / {client['late_pct']:.2f}%        "
                f"{carrier['concealed_pct']:.2f}%",
            )
        )
    for chain, cpu in bare.items():
        name, paced = chain.split(", ")[0], ", " in chain
        lines.append(_row(f"bare relay, {name} chain{' (paced)' if paced else ''}", cpu, None))
    for run in results["bridge"]:
        if not run["probed"]:
            continue
        lines += [
            "",
            f"  added latency, {_done(run['mode'])} calls (sender's sendto -> bridge's sendto):",
        ]
        for direction, parts in run["latency"].items():
            added = parts["added"]
            lines.append(
                f"    {direction:<20} p50 {added.get('p50_ms', 0):6.2f} ms  p99 "
                f"{added.get('p99_ms', 0):6.2f} ms  max {added.get('max_ms', 0):6.2f} ms "
                f"({added['n']} frames); p50/p99 of: read wait "
                f"{parts['waiting_to_be_read'].get('p50_ms', 0):.2f}/"
                f"{parts['waiting_to_be_read'].get('p99_ms', 0):.2f}, buffer "
                f"{parts['in_buffer'].get('p50_ms', 0):.2f}/"
                f"{parts['in_buffer'].get('p99_ms', 0):.2f}"
                f", processing {parts['processing'].get('p50_ms', 0):.2f}/"
                f"{parts['processing'].get('p99_ms', 0):.2f}"
            )
        lines.append(f"    bridge counters: {run['bridge_counters']}")
        lines.append(
            f"    CPU with probes: {run['bridge_cpu_ms_per_call_s']:.2f} ms per call-second"
        )
    lines += ["", "  targets:"] + [f"    {t}" for t in results["targets"]]
    return "\n".join(lines)


def _targets(results: dict[str, Any]) -> list[str]:
    bare = {b["chain"]: b["cpu_ms_per_call_s"] for b in results["bare"]}
    out = []
    for run in results["bridge"]:
        if run["probed"]:
            worst = max(
                parts["added"].get("p99_ms", float("inf")) for parts in run["latency"].values()
            )
            work = max(
                parts["processing"].get("p99_ms", float("inf")) for parts in run["latency"].values()
            )
            verdict = "met" if worst < 5 else "NOT met"
            out.append(
                f"added latency p99 < 5 ms ({_done(run['mode'])}): {worst:.2f} ms, {verdict} "
                f"(processing alone, without buffering: p99 {work:.2f} ms)"
            )
        elif run["mode"] == "transcode" and bare.get("bridge"):
            ratio = run["bridge_cpu_ms_per_call_s"] / bare["bridge"]
            verdict = "met" if ratio <= 1.3 else "NOT met"
            out.append(f"transcoded <= 1.3x bare relay: {ratio:.2f}x, {verdict}")
            if bare.get("bridge, carrier-paced"):
                paced = run["bridge_cpu_ms_per_call_s"] / bare["bridge, carrier-paced"]
                out.append(
                    f"  (for reference: {paced:.2f}x the bare relay whose carrier side is "
                    "paced like the simulator's)"
                )
        elif run["mode"] == "relay":
            cpu = run["bridge_cpu_ms_per_call_s"]
            out.append(
                f"relayed <= 3 ms CPU per call-second: {cpu:.2f} ms, "
                f"{'met' if cpu <= 3 else 'NOT met'}"
            )
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every run the options ask for; the results as one JSON-able dict."""
    _install_sim_probe()
    results: dict[str, Any] = {
        "config": {
            "calls": args.calls,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "complexity": args.complexity,
            "bitrate": args.bitrate,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "bridge": [],
        "bare": [],
    }
    for mode in args.modes:
        print(f"bridge, {_done(mode)} calls ...", file=sys.stderr, flush=True)
        results["bridge"].append(await bridge_run(mode, args, probed=False))
        if not args.no_latency:
            print(f"bridge, {_done(mode)} calls, latency pass ...", file=sys.stderr, flush=True)
            results["bridge"].append(await bridge_run(mode, args, probed=True))
    chains = [c for c in ("bridge", "soxr") if "transcode" in args.modes]
    chains += ["relay"] if "relay" in args.modes else []
    for chain in chains:
        print(f"bare relay, {chain} chain ...", file=sys.stderr, flush=True)
        results["bare"].append(await bare_run(chain, args))
    for chain in [c for c in chains if c != "soxr"] if args.paced_bare else []:
        print(f"bare relay, {chain} chain, carrier-paced ...", file=sys.stderr, flush=True)
        results["bare"].append(await bare_run(chain, args, paced=True))
    results["targets"] = _targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="call_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="steady window per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--complexity", type=int, default=5, help="Opus encoder complexity")
    parser.add_argument("--bitrate", type=int, default=24000, help="Opus encoder bit rate")
    parser.add_argument("--modes", nargs="+", default=["transcode", "relay"])
    parser.add_argument("--no-latency", action="store_true", help="skip the probed pass")
    parser.add_argument(
        "--paced-bare",
        action="store_true",
        help="also run the bare relay with its gateway side paced like the carrier simulator",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench" / "call_bench.json")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
