"""The call benchmark runs at all (2 relayed calls, a second each), and `pstn-bridge bench`.

No figure is asserted: only that every part ran and wrote its results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.ops import bench_command
from bridge.ops.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_bench_without_the_tests_tree_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_command, "project_root", lambda: None)
    assert main(["bench", "--calls", "2"]) == bench_command.EXIT_NO_TESTS
    assert "needs the project's source checkout" in capsys.readouterr().err


def test_bench_passes_its_options_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[list[str], Path, str]] = []

    def run(argv: list[str], *, cwd: Path, env: dict[str, str], check: bool) -> object:
        seen.append((argv, cwd, env["CALL_BENCH_COMMAND"]))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.chdir(tmp_path)
    status = main(["bench", "--mode", "relayed", "--find-max", "--json", "r.json", "--", "--x"])
    assert status == 0
    argv, cwd, command = seen[0]
    assert cwd == ROOT
    assert argv[1:] == [
        "-m",
        "tests.bench.call_bench",
        "--mode",
        "relayed",
        "--find-max",
        "--json",
        str(tmp_path / "r.json"),
        "--x",
    ]
    assert command.startswith("pstn-bridge bench --mode relayed")


def test_call_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.call_bench",
            "--mode=relayed",
            "--calls=2",
            "--seconds=1",
            "--warmup=0.5",
            "--settle=0.2",
            "--idle-seconds=0.2",
            "--latency-seconds=1",
            "--bare-seconds=1",
            "--signaling-seconds=1",
            "--signaling-concurrency=2",
            f"--json={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    relay = results["modes"]["relay"]
    assert relay["cpu"]["calls"] == 2
    assert relay["cpu"]["setup"]["invite_to_trunk_invite"]["n"] == 2
    assert relay["cpu"]["client"]["packets_received"] > 0
    assert relay["latency"]["latency"]["browser_to_gateway"]["added"]["n"] > 0
    assert relay["bare"]["streams"] == 2
    assert results["signaling"]["setups"] > 0
    assert out.with_suffix(".md").read_text().count("relayed PCMU") == 1
    assert "targets:" in done.stdout
