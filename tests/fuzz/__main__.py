"""Run the fuzz targets for a while: ``python -m tests.fuzz [--seconds N] [--jobs J] [targets]``.

Theory of operation: each target runs as its own ``python -m tests.fuzz.<target>``
process with ``-max_total_time=N`` on its working corpus ``var/fuzz/<target>/corpus``
(kept between runs, so longer and repeated runs build on each other), at most ``J`` at a
time. libFuzzer's output goes to ``var/fuzz/<target>/fuzz.log``; crashes to
``var/fuzz/<target>/crashes/``. At the end a table gives, per target, the executions,
exec/s, the final ``cov:`` (coverage edges) and ``ft:`` (features) and the crashes;
the exit status is 1 when any target crashed. ``make fuzz SECONDS=N`` calls this.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tests.fuzz.harness import ROOT, WORK

TARGETS = ("sip_message", "sip_stream", "sdp", "sdp_crypto", "rtp", "rtcp", "websocket")
_STATUS = re.compile(rb"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+).*?exec/s: (\d+)")


@dataclass(frozen=True, slots=True)
class Result:
    """What one target's run reported."""

    target: str
    returncode: int
    runs: int
    cov: int
    ft: int
    exec_per_second: int
    seconds: float
    crashes: list[str]


def run(target: str, seconds: int, extra: list[str]) -> Result:
    """Fuzz one target for ``seconds``; parse libFuzzer's last status line."""
    work = WORK / target
    (work / "crashes").mkdir(parents=True, exist_ok=True)
    before = set((work / "crashes").iterdir())
    command = [sys.executable, "-m", f"tests.fuzz.{target}", f"-max_total_time={seconds}"]
    command += ["-print_final_stats=1", *extra, str(work / "corpus")]
    started = time.monotonic()
    with open(work / "fuzz.log", "wb") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    output = (work / "fuzz.log").read_bytes()
    runs = cov = ft = rate = 0
    for match in _STATUS.finditer(output):
        runs, cov, ft, rate = (int(group) for group in match.groups())
    crashes = sorted(str(p) for p in set((work / "crashes").iterdir()) - before)
    return Result(target, done.returncode, runs, cov, ft, rate, elapsed, crashes)


def main() -> int:
    """Run the targets, print the table; 1 if any crashed."""
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--jobs", type=int, default=2, help="targets at a time (default 2)")
    args, extra = parser.parse_known_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    targets = args.targets or list(TARGETS)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda t: run(t, args.seconds, extra), targets))
    print(f"{'target':<12} {'runs':>10} {'exec/s':>7} {'cov':>5} {'ft':>6} {'s':>5}  result")
    for r in results:
        verdict = f"CRASH {' '.join(r.crashes)}" if r.returncode or r.crashes else "ok"
        print(
            f"{r.target:<12} {r.runs:>10} {r.exec_per_second:>7} {r.cov:>5} {r.ft:>6}"
            f" {r.seconds:>5.0f}  {verdict}"
        )
    print(f"logs and corpora: {WORK}/<target>/")
    return 1 if any(r.returncode or r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
