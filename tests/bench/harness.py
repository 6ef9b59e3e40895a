"""The measuring part of the benchmarks: timed batches, loopback sockets, machine facts.

Theory of operation: a measurement is a ``run(n)`` callable doing ``n`` operations,
optionally preceded by an untimed ``prepare(n)`` (filling a socket with datagrams to
read, draining a sink, protecting packets to unprotect). :func:`measure` calls them in
batches, times only ``run`` with both ``time.perf_counter_ns`` (wall) and
``time.process_time_ns`` (CPU of the whole process), warms up while it calibrates how
many batches fill the requested time, then repeats and keeps the median per-operation
cost of the repetitions. The garbage collector stays on: collections caused by
per-packet objects are part of what the hot path costs.
"""

from __future__ import annotations

import gc
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

__all__ = ["Sample", "UdpPair", "machine_info", "measure"]

_CALIBRATE_NS = 20_000_000


@dataclass(frozen=True, slots=True)
class Sample:
    """Median per-operation cost of one measurement.

    Attributes:
        wall_us: wall-clock microseconds per operation (median of the repetitions).
        cpu_us: process CPU microseconds per operation (median of the repetitions).
        spread: (max - min) / median of the wall figures, a noise indicator.
        ops: operations timed per repetition.
    """

    wall_us: float
    cpu_us: float
    spread: float
    ops: int

    @property
    def per_second(self) -> float:
        """Operations per wall-clock second."""
        return 1e6 / self.wall_us if self.wall_us else float("inf")

    def as_dict(self) -> dict[str, float]:
        """For ``--json``."""
        return {
            "wall_us": round(self.wall_us, 4),
            "cpu_us": round(self.cpu_us, 4),
            "spread": round(self.spread, 4),
            "ops": self.ops,
        }


def _timed(
    run: Callable[[int], object],
    prepare: Callable[[int], object] | None,
    batch: int,
    batches: int,
) -> tuple[int, int]:
    wall = cpu = 0
    perf, process = time.perf_counter_ns, time.process_time_ns
    for _ in range(batches):
        if prepare is not None:
            prepare(batch)
        w0, c0 = perf(), process()
        run(batch)
        c1, w1 = process(), perf()
        wall += w1 - w0
        cpu += c1 - c0
    return wall, cpu


def measure(
    run: Callable[[int], object],
    prepare: Callable[[int], object] | None = None,
    *,
    batch: int,
    seconds: float,
    repeat: int,
    ops_per_call: float = 1.0,
) -> Sample:
    """Time ``run`` as described in the module docstring.

    Args:
        run: does ``n`` operations (timed).
        prepare: readies ``n`` operations (not timed), called before each ``run``.
        batch: operations per ``run`` call.
        seconds: wall time of one repetition (roughly).
        repeat: repetitions after the warm-up; the median is reported.
        ops_per_call: operations counted per unit of ``n`` (2 for a stream pair).
    """
    batches = 1
    while True:  # calibration doubles as the warm-up
        wall, _ = _timed(run, prepare, batch, batches)
        if wall >= _CALIBRATE_NS:
            break
        batches *= 2
    batches = max(1, round(batches * seconds * 1e9 / wall))
    ops = batch * batches * ops_per_call
    walls, cpus = [], []
    for _ in range(repeat):
        gc.collect()
        wall, cpu = _timed(run, prepare, batch, batches)
        walls.append(wall / ops / 1000)
        cpus.append(cpu / ops / 1000)
    median = statistics.median(walls)
    spread = (max(walls) - min(walls)) / median if median else 0.0
    return Sample(median, statistics.median(cpus), spread, int(ops))


class UdpPair:
    """Two non-blocking UDP sockets on 127.0.0.1 with large receive buffers.

    Attributes:
        tx: the sending socket.
        rx: the receiving socket.
        tx_address: where ``tx`` is bound.
        rx_address: where ``rx`` is bound.
    """

    def __init__(self) -> None:
        """Bind both sockets on ephemeral ports."""
        self.tx = _socket()
        self.rx = _socket()
        self.tx_address: tuple[str, int] = self.tx.getsockname()
        self.rx_address: tuple[str, int] = self.rx.getsockname()

    def drain(self, sock: socket.socket | None = None) -> int:
        """Read and discard what waits on ``sock`` (default ``rx``); the count."""
        recv = (sock or self.rx).recv
        count = 0
        while True:
            try:
                recv(2048)
            except BlockingIOError:
                return count
            count += 1

    def close(self) -> None:
        """Close both sockets."""
        self.tx.close()
        self.rx.close()


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def machine_info() -> dict[str, str]:
    """What the figures depend on: CPU, cores, Python, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "nproc": str(usable),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "pylibsrtp": _version("pylibsrtp"),
        "numpy": _version("numpy"),
        "executable": sys.executable,
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
