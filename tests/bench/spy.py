"""py-spy profiles of the bridge under load: where the bridge processes spend their CPU.

Theory of operation: with ``--profile`` the call benchmark starts, at the start of each
measuring window, one ``py-spy record --nonblocking --format raw`` per bridge process (the
serve process and every media worker) for the window's length, sampling at 100 Hz
without pausing the process (the figures of a profiled run are still perturbed a little:
py-spy's own CPU competes on the same cores; profile in a separate run). The raw output
is collapsed stacks (``frame;frame;...;leaf count``); :func:`summarize` turns them into
the top frames by self time (the leaf, without line numbers) and by inclusive time
(any frame on the stack, counted once per sample; frames on nearly every stack, the
event loop's own, left out), in percent of the samples, per process role (``serve`` or
``worker``). Idle samples are left out by py-spy by default.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["start", "summarize"]

_LINE = re.compile(r":\d+\)$")


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(
    pids: list[int], seconds: float, out: Path, *, native: bool = False
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """One recorder per pid (the first is the serve process); [] without py-spy.

    ``native``: C frames too (uvloop, libopus, libsrtp), at a higher cost per sample: py-spy
    then pauses the process for each sample (``--nonblocking`` is not possible).
    """
    binary = _py_spy()
    if binary is None:
        print("--profile: py-spy not found (pip install py-spy)", file=sys.stderr)
        return []
    out.mkdir(parents=True, exist_ok=True)
    recorders = []
    for index, pid in enumerate(pids):
        role = "serve" if index == 0 else "worker"
        path = out / f"{role}-{pid}.txt"
        command = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        command += ["--rate", "100", "--format", "raw", "--output", str(path)]
        command += ["--native"] if native else ["--nonblocking"]  # native needs a paused process
        recorders.append(
            (
                str(path),
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            )
        )
    return recorders


def _frame(text: str) -> str:
    return _LINE.sub(")", text.strip())


def summarize(paths: list[str], top: int = 15) -> dict[str, Any]:
    """Top self and inclusive frames per role, in percent of that role's samples."""
    out: dict[str, Any] = {}
    for role in ("serve", "worker"):
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        samples = 0
        for path in [p for p in paths if Path(p).name.startswith(role)]:
            if not Path(path).exists():
                continue
            for line in Path(path).read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                frames = [_frame(f) for f in stack.split(";")]
                samples += int(count)
                own[frames[-1]] += int(count)
                for frame in set(frames):
                    inclusive[frame] += int(count)
        if samples:
            common = max(inclusive.values())  # the loop's own frames: on every stack
            inclusive = Counter({f: n for f, n in inclusive.items() if n < 0.8 * common})
            out[role] = {
                "samples": samples,
                "self": [(f, round(n * 100 / samples, 1)) for f, n in own.most_common(top)],
                "inclusive": [
                    (f, round(n * 100 / samples, 1)) for f, n in inclusive.most_common(top)
                ],
            }
    return out
