"""``pstn-bridge serve`` with per-frame timestamps: the latency pass of the call benchmark.

Run as ``python -m tests.bench.call_probe CONFIG OUT.json``: it installs the probes below
(class-level wrappers, in this child process only), then runs exactly what
``pstn-bridge serve --config CONFIG`` runs (:func:`bridge.app.serve`) until SIGTERM, and
writes what it saw to ``OUT.json``. With ``CALL_PROBE_PROFILE=FILE`` in the environment it
also runs under cProfile and dumps the statistics to FILE (slow: for hot spots only).
Nothing of the product changes; the probes cost a ``perf_counter()`` and a few dict and
list operations per frame (the CPU pass of the benchmark runs without them).

What a frame's timestamps are (``time.perf_counter()`` = CLOCK_MONOTONIC, the same clock
in every process of the machine, so the benchmark can join them with its own send times):

* browser -> gateway, keyed by the browser packet's (SSRC, sequence number): ``read`` as
  the pipeline stamped the packet into its jitter buffer (``time.monotonic()``, in the
  socket callback that decrypted it), ``pop`` when the gateway leg's 20 ms clock took it
  out of that buffer, ``out`` when that clock tick returned (the frame's SRTP packet was
  handed to the kernel);
* gateway -> browser, keyed by the carrier packet's (SSRC, sequence number): ``read`` as
  the gateway session stamped it (``loop.time()``, when the datagram was read), ``pop``
  when its jitter buffer played it out, ``out`` when the pipeline had encoded, protected
  and sent the packet toward the browser.

The correspondence is exact: each jitter buffer's frame object (one per packet) is
followed from ``put_frame`` to ``pop_frame`` to the gateway send or the browser send.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from time import perf_counter
from typing import Any

from bridge.media.pipeline import CallMedia
from sip_gateway.aio.rtp import MediaEndpoint
from sip_gateway.media.jitter import Concealment, JitterBuffer

__all__ = ["install_probes", "main"]

B2G: list[tuple[int, int, float, float, float]] = []
"""(browser SSRC, sequence, read, pop, out) of each frame sent toward the carrier."""
G2B: list[tuple[int, int, float, float, float]] = []
"""(carrier SSRC, sequence, read, pop, out) of each frame sent toward the browser."""
CALLS: list[dict[str, Any]] = []
"""The pipeline counters and both jitter buffers' stats of each call, at its end."""

_current_ssrc = [0]  # the SSRC of the browser packet being handled (around put_frame)
_pending: list[tuple[int, int, float, float]] = []
_frames: dict[int, tuple[int, int, float]] = {}  # id(frame object) -> (ssrc, seq, arrival)
_popped: dict[int, deque[tuple[int, int, float, float] | None]] = {}  # id(buffer) -> popped


def _wrap(owner: type, name: str, make: Callable[[Any], Any]) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def install_probes() -> None:
    """Wrap the pipeline's and the jitter buffers' per-frame steps (see the docstring)."""
    _wrap(CallMedia, "_from_browser", _from_browser)
    _wrap(CallMedia, "_gateway_source", _gateway_source)
    _wrap(CallMedia, "_to_browser", _to_browser)
    _wrap(CallMedia, "aclose", _aclose)
    _wrap(MediaEndpoint, "_on_timer", _on_timer)
    _wrap(JitterBuffer, "put_frame", _put_frame)
    _wrap(JitterBuffer, "pop_frame", _pop_frame)


def _from_browser(original: Callable[[CallMedia, bytes], None]) -> Any:
    def probe(self: CallMedia, data: bytes) -> None:
        _current_ssrc[0] = int.from_bytes(data[8:12])
        try:
            original(self, data)
        finally:
            _current_ssrc[0] = 0

    return probe


def _put_frame(original: Callable[..., None]) -> Any:
    def probe(
        self: JitterBuffer, sequence: int, timestamp: int, frame: object, arrival: float
    ) -> None:
        _frames[id(frame)] = (_current_ssrc[0], sequence, arrival)
        original(self, sequence, timestamp, frame, arrival)

    return probe


def _pop_frame(original: Callable[[JitterBuffer, float], object]) -> Any:
    def probe(self: JitterBuffer, now: float) -> object:
        item = original(self, now)
        real = item is not None and item.__class__ is not Concealment
        found = _frames.pop(id(item), None) if real else None
        queue = _popped.setdefault(id(self), deque())
        queue.append(None if found is None else (*found, perf_counter()))
        return item

    return probe


def _gateway_source(original: Callable[[CallMedia], Any]) -> Any:
    def probe(self: CallMedia) -> Any:
        queue = _popped.get(id(self._jitter)) if self._jitter is not None else None
        before = len(queue) if queue is not None else 0
        frame = original(self)
        queue = _popped.get(id(self._jitter)) if self._jitter is not None else None
        if queue is not None and len(queue) > before:
            entry = queue.popleft()
            if entry is not None and frame is not None:
                _pending.append(entry)
        return frame

    return probe


def _on_timer(original: Callable[[MediaEndpoint], None]) -> Any:
    def probe(self: MediaEndpoint) -> None:
        _pending.clear()
        original(self)
        if _pending:
            out = perf_counter()
            B2G.extend((*entry, out) for entry in _pending)
            _pending.clear()

    return probe


def _to_browser(original: Callable[[CallMedia, Any], None]) -> Any:
    def probe(self: CallMedia, pcm: Any) -> None:
        sent = self.counters.sent_to_browser
        dtmf = bool(self._dtmf_queue)
        original(self, pcm)
        endpoint = self.gateway_port.endpoint
        if endpoint is None:
            return
        session = endpoint.session
        queue = _popped.get(id(session._jitter))
        entry = queue.popleft() if queue else None
        if entry is not None and not dtmf and self.counters.sent_to_browser != sent:
            _ssrc_unused, seq, read, pop = entry
            G2B.append((session._remote_ssrc or 0, seq, read, pop, perf_counter()))

    return probe


def _aclose(original: Callable[[CallMedia], Any]) -> Any:
    async def probe(self: CallMedia) -> None:
        if not self.__dict__.get("_probe_closed"):
            self.__dict__["_probe_closed"] = True
            stats = self.gateway_port.stats() if self._gateway is not None else None
            browser_jitter = self.jitter_stats()
            CALLS.append(
                {
                    "mode": str(self.mode),
                    "pipeline": asdict(self.counters),
                    "browser_jitter": None if browser_jitter is None else _fields(browser_jitter),
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
                        "playout_delay_ms": stats.playout_delay_ms,
                    },
                }
            )
            if self._jitter is not None:
                _popped.pop(id(self._jitter), None)
            if self._gateway is not None and self._gateway.endpoint is not None:
                _popped.pop(id(self._gateway.endpoint.session._jitter), None)
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
