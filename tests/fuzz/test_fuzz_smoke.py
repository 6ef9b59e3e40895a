"""CI's share of the fuzzing: replay every stored input, then fuzz each target briefly.

The replay runs each target's property in-process on its seeds, its stored corpus
(``tests/fuzz/corpus/<target>``) and its regression inputs (``tests/fuzz/regressions/
<target>``, one file per crash ever found), so a fixed bug that comes back fails here
with an ordinary traceback. The brief run starts the real fuzzer (atheris in a
subprocess, ``-max_total_time``) on a fresh corpus seeded the same way and fails on any
crash, or when coverage stays implausibly low (instrumentation broken). The fuzzer's
working directory holds hostile inputs, some with the test keys of the seeds: it is a
third-party tool's directory for the leak scan (``mark_peer_dir``). Long runs: ``make
fuzz SECONDS=...`` (README).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.__main__ import TARGETS
from tests.fuzz.harness import REGRESSIONS, ROOT, stored_inputs
from tests.leakscan import mark_peer_dir

SECONDS = 4
# Edges a few seconds reach from the seeds (a fraction of what they reach, see README):
# far lower means the code under test was not instrumented.
MIN_COVERAGE = {
    "sip_message": 300,
    "sip_stream": 400,
    "sdp": 400,
    "sdp_crypto": 250,
    "rtp": 80,
    "rtcp": 80,
    "websocket": 400,
}
_STATUS = re.compile(r"cov: (\d+) ft: (\d+)")


@pytest.mark.parametrize("target", TARGETS)
def test_replay_seeds_corpus_and_regressions(target: str) -> None:
    module = importlib.import_module(f"tests.fuzz.{target}")
    count = 0
    for data in module.seeds():
        module.one_input(data)
        count += 1
    for path, data in stored_inputs(target):
        try:
            module.one_input(data)
        except BaseException as exc:
            raise AssertionError(f"{path.relative_to(ROOT)} fails again: {exc!r}") from exc
        count += 1
    assert count >= 5


def test_every_target_with_regressions_exists() -> None:
    folders = {p.name for p in REGRESSIONS.iterdir() if p.is_dir()}
    assert folders <= set(TARGETS)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_briefly(target: str, tmp_path: Path) -> None:
    work = mark_peer_dir(tmp_path)
    corpus = work / "corpus"
    env = {**os.environ, "PSTN_FUZZ_WORK": str(work)}
    command = [sys.executable, "-m", f"tests.fuzz.{target}", f"-max_total_time={SECONDS}"]
    command += ["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1", str(corpus)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=80, check=False
    )
    output = done.stdout + done.stderr
    crashes = list((work / target / "crashes").glob("*"))
    assert done.returncode == 0 and not crashes, f"{target} crashed:\n{output[-4000:]}"
    statuses = _STATUS.findall(output)
    assert statuses, f"no libFuzzer status lines:\n{output[-2000:]}"
    coverage = int(statuses[-1][0])
    assert coverage >= MIN_COVERAGE[target], f"{target}: cov {coverage}, instrumented?"
    assert "Done " in output
