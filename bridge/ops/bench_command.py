"""``pstn-bridge bench``: run the call benchmark of the source checkout.

Theory of operation: the benchmark's load generator is test code (``tests/bench``, built
on the packet-level browser of ``tests/webrtc_client.py``), not part of the installed
package. This sub-command finds the project root as the directory above the installed
``bridge`` package (an editable install from a checkout: ``pip install -e .``, what
``make`` does), checks that ``tests/bench/call_bench.py`` is there, and runs
``python -m tests.bench.call_bench OPTIONS`` in that root with this interpreter, passing
the options on; its exit status is ours. Without the tests tree (an ordinary wheel
install) it prints what is missing and exits 2. Nothing here measures anything.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import bridge

__all__ = ["add_bench", "run_bench"]

EXIT_NO_TESTS = 2
_DESCRIPTION = (
    "Runs the call benchmark of the source checkout (python -m tests.bench.call_bench in the "
    "project root): packet-level browsers (SIP over WSS, ICE + DTLS-SRTP) through a fresh "
    "`pstn-bridge serve` with a carrier simulator in echo mode, per mode (transcoded "
    "Opus<->PCMU, relayed PCMU): bridge CPU per call-second over all bridge processes, "
    "late/lost frames, added latency p50/p99/max, call set-up times and the ratio to a bare "
    "relay measured in the same run; then call set-ups per second over TLS with idle media. "
    "Progress on stderr, a table at the end, results in var/bench/call_bench.json and .md. "
    "Needs the tests/ tree of the checkout this package is installed from (pip install -e .): "
    "an installed package without it exits 2. Options after -- go to the benchmark as they "
    "are (python -m tests.bench.call_bench --help lists them all)."
)


def add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` sub-command."""
    bench = sub.add_parser(
        "bench",
        help="run the call benchmark (needs the source checkout's tests/ tree)",
        description=_DESCRIPTION,
    )
    bench.add_argument("--mode", choices=("transcoded", "relayed", "both", "signaling"))
    bench.add_argument("--calls", type=int, help="concurrent calls per mode (default 20)")
    bench.add_argument("--seconds", type=float, help="measured window per run (default 20)")
    bench.add_argument("--workers", help="[media] workers of the bridge under test (N or auto)")
    bench.add_argument(
        "--find-max",
        action="store_true",
        help="raise the calls until late/lost > 0.1%% or p99 added latency > 20 ms",
    )
    bench.add_argument("--json", type=Path, help="results file (default var/bench/call_bench.json)")
    bench.add_argument("extra", nargs="*", metavar="-- OPTION", help="more benchmark options")


def project_root() -> Path | None:
    """The checkout the ``bridge`` package runs from, if it holds the benchmark."""
    root = Path(bridge.__file__).resolve().parents[1]
    return root if (root / "tests" / "bench" / "call_bench.py").is_file() else None


def _forwarded(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for name in ("mode", "calls", "seconds", "workers"):
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name}", str(value)]
    if args.find_max:
        out.append("--find-max")
    if args.json is not None:
        out += ["--json", str(args.json.resolve())]  # relative to the caller, not the root
    return out + list(args.extra)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark (see the module docstring); returns the exit status."""
    root = project_root()
    if root is None:
        print(
            "pstn-bridge: bench needs the project's source checkout (tests/bench and "
            "tests/webrtc_client.py next to the bridge package, as with `pip install -e .`); "
            f"not found above {Path(bridge.__file__).resolve().parent}",
            file=sys.stderr,
        )
        return EXIT_NO_TESTS
    options = _forwarded(args)
    env = dict(os.environ, CALL_BENCH_COMMAND=" ".join(["pstn-bridge bench", *options]))
    try:
        return subprocess.run(  # noqa: S603 - this interpreter, a module name, our options
            [sys.executable, "-m", "tests.bench.call_bench", *options],
            cwd=root,
            env=env,
            check=False,
        ).returncode
    except KeyboardInterrupt:
        return 130
