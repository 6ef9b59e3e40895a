"""CPU time of a process and all its descendants, read from ``/proc``.

Theory of operation: the bridge under test is ``pstn-bridge serve`` plus whatever it
starts (media worker processes, configured with ``[media] workers``). The benchmark
samples :func:`tree_cpu_seconds` at the start and at the end of a measuring window and
takes the difference. One sample walks the tree from the root through
``/proc/<pid>/task/<tid>/children`` (every thread's children: a process started from a
thread other than the main one is listed there) and adds, for every live process,
``utime + stime`` (its own threads) and ``cutime + cstime`` (children it has already
waited for). So a worker that appears during the window counts with all its CPU (it was
absent, i.e. zero, at the start), and one that exits and is reaped during the window
keeps counting through its parent's ``cutime``. A process that exits between the listing
and the read is skipped. Linux only; the tick is ``SC_CLK_TCK`` (10 ms).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "machine_busy_seconds", "tree_cpu_seconds", "tree_pids"]

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 when it is gone."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return out
    for task in tasks:
        try:
            out += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant, parents before children."""
    pids, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        if pid in pids:
            continue
        pids.append(pid)
        queue += _children(pid)
    return pids


def tree_cpu_seconds(root: int) -> tuple[float, int]:
    """CPU seconds of ``root`` and its descendants (see the docstring), and how many processes."""
    total, count = 0.0, 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        count += 1
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK
    return total, count


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: all but idle and iowait).

    The benchmark takes the difference over a window and subtracts the bridge's and its own
    CPU: what is left is the rest of the machine (other jobs on a shared host: noise).
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _TICK
