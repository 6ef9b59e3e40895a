"""``pstn-bridge serve`` with per-frame timestamps: the latency pass of the call benchmark.

The benchmark runs ``pstn-bridge serve`` with ``tests/bench/probe_site`` on
``PYTHONPATH`` and ``CALL_PROBE_DIR`` set: every process of the bridge (the serve process
and its media workers) installs the probes below at start-up (:func:`install_at_exit`,
class-level wrappers) and writes what it saw to ``CALL_PROBE_DIR/probe-<pid>.json`` when
it exits. Also runnable as ``python -m tests.bench.call_probe CONFIG OUT.json`` (one
process: exactly what ``pstn-bridge serve --config CONFIG`` runs, until SIGTERM, then
``OUT.json``); with ``CALL_PROBE_PROFILE=FILE`` in the environment that runs under
cProfile and dumps the statistics to FILE (slow: for hot spots only).
Nothing of the product changes; the probes cost a ``perf_counter()`` and a few dict and
list operations per frame (the CPU pass of the benchmark runs without them).

What a frame's timestamps are (``time.perf_counter()`` = CLOCK_MONOTONIC, the same clock
in every process of the machine, so the benchmark can join them with its own send times).
The media path is cut-through (no jitter buffer, no playout clock), so a frame is read,
processed and sent in one callback; ``pop`` (where a buffer used to hand it on) equals
``read``, and the benchmark's "in buffer" part is zero by construction:

* browser -> gateway, keyed by the browser packet's (SSRC, sequence number): ``read``
  when the pipeline's callback got the decrypted packet, ``out`` when that callback
  returned with the frame forwarded (its SRTP packet handed to the kernel on the
  gateway leg);
* gateway -> browser, keyed by the carrier packet's (SSRC, sequence number, readable in
  the SRTP header): ``read`` when the gateway leg's datagram callback started, ``out``
  when the pipeline had encoded, protected and sent the packet toward the browser (in
  that same callback). Frames replaced by a digit toward the browser are left out.
"""

from __future__ import annotations

import asyncio
import atexit
import cProfile
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from time import perf_counter
from typing import Any

from bridge.media.pipeline import CallMedia
from sip_gateway.aio.rtp import MediaEndpoint

__all__ = ["install_at_exit", "install_probes", "main"]

B2G: list[tuple[int, int, float, float, float]] = []
"""(browser SSRC, sequence, read, pop, out) of each frame sent toward the carrier."""
G2B: list[tuple[int, int, float, float, float]] = []
"""(carrier SSRC, sequence, read, pop, out) of each frame sent toward the browser."""
CALLS: list[dict[str, Any]] = []
"""The pipeline counters and the gateway leg's stats of each call, at its end."""

_carrier_packet: list[tuple[int, int, float] | None] = [None]  # the datagram being handled


def _wrap(owner: type, name: str, make: Callable[[Any], Any]) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def install_probes() -> None:
    """Wrap the pipeline's and the gateway leg's per-packet steps (see the docstring)."""
    _wrap(CallMedia, "_from_browser", _from_browser)
    _wrap(CallMedia, "_to_browser", _to_browser)
    _wrap(CallMedia, "aclose", _aclose)
    _wrap(MediaEndpoint, "_datagram_received", _gateway_datagram)


def install_at_exit(directory: str) -> None:
    """Install the probes; write what they saw to ``directory/probe-<pid>.json`` at exit.

    For every process of the bridge (see ``tests/bench/probe_site/sitecustomize.py``):
    media may run in worker processes, each with its own lists.
    """
    install_probes()

    def dump() -> None:
        if B2G or G2B or CALLS:
            path = Path(directory) / f"probe-{os.getpid()}.json"
            path.write_text(json.dumps({"b2g": B2G, "g2b": G2B, "calls": CALLS}))

    atexit.register(dump)


def _from_browser(original: Callable[[CallMedia, bytes], None]) -> Any:
    def probe(self: CallMedia, data: bytes) -> None:
        read = perf_counter()
        forwarded = self.counters.browser_audio_frames
        original(self, data)
        if self.counters.browser_audio_frames != forwarded:
            ssrc, sequence = int.from_bytes(data[8:12]), int.from_bytes(data[2:4])
            B2G.append((ssrc, sequence, read, read, perf_counter()))

    return probe


def _gateway_datagram(original: Callable[[MediaEndpoint, bytes, Any], None]) -> Any:
    def probe(self: MediaEndpoint, data: bytes, source: Any) -> None:
        if len(data) >= 12 and not 192 <= data[1] <= 223:  # RTP, not RTCP
            ssrc, sequence = int.from_bytes(data[8:12]), int.from_bytes(data[2:4])
            _carrier_packet[0] = (ssrc, sequence, perf_counter())
        try:
            original(self, data, source)
        finally:
            _carrier_packet[0] = None

    return probe


def _to_browser(original: Callable[..., None]) -> Any:
    def probe(self: CallMedia, *args: Any) -> None:
        sent = self.counters.sent_to_browser
        digit = bool(self._dtmf_queue or self._digits_waiting)
        original(self, *args)
        packet = _carrier_packet[0]
        if packet is not None and not digit and self.counters.sent_to_browser != sent:
            ssrc, sequence, read = packet
            G2B.append((ssrc, sequence, read, read, perf_counter()))

    return probe


def _aclose(original: Callable[[CallMedia], Any]) -> Any:
    async def probe(self: CallMedia) -> None:
        if not self.__dict__.get("_probe_closed"):
            self.__dict__["_probe_closed"] = True
            port = self._gateway
            stats = port.stats() if port is not None else None
            endpoint = port.endpoint if port is not None else None
            CALLS.append(
                {
                    "mode": str(self.mode),
                    "pipeline": asdict(self.stats()),
                    "gateway": None
                    if stats is None
                    else {
                        "packets_sent": stats.packets_sent,
                        "silence_sent": stats.silence_sent,
                        "packets_received": stats.packets_received,
                        "lost": stats.lost,
                        "late": stats.late,
                        "concealed": stats.concealed,
                        "dropped": dict(stats.dropped),
                        "audio_suppressed": 0
                        if endpoint is None
                        else endpoint.session.audio_suppressed,
                    },
                }
            )
        await original(self)

    return probe


def _fields(stats: object) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in dir(stats) if not name.startswith("_")}


def main(argv: list[str]) -> int:
    """``call_probe CONFIG OUT``: serve with probes until SIGTERM, then write OUT."""
    from bridge.app import serve
    from bridge.settings import load_settings

    config, out = Path(argv[0]), Path(argv[1])
    install_probes()
    profile_to = os.environ.get("CALL_PROBE_PROFILE")  # where to dump cProfile stats, if set
    profiler = cProfile.Profile() if profile_to else None
    if profiler is not None:
        profiler.enable()
    asyncio.run(serve(load_settings(config)))
    if profiler is not None and profile_to:
        profiler.disable()
        profiler.dump_stats(profile_to)
    out.write_text(json.dumps({"b2g": B2G, "g2b": G2B, "calls": CALLS}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
