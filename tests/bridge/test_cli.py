"""The ``pstn-bridge carrier-sim`` command, run as a real process against a real simulator."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.peers import free_port, wait_port


def _cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.ops.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_carrier_sim_answers_a_call_placed_by_another_carrier_sim(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.ops.cli",
            "carrier-sim",
            "--listen",
            f"127.0.0.1:{port}",
            "--ring-time",
            "0.2",
            "--record-dir",
            str(tmp_path / "rec"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_port(port, server, 20)
        done = _cli(
            "carrier-sim",
            "--listen",
            "127.0.0.1:0",
            "--call",
            "+15551230001",
            "--to",
            f"127.0.0.1:{port}",
            "--hangup-after",
            "1",
            "--dtmf",
            "7",
            "--dtmf-delay",
            "0.2",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "answered (SRTP AEAD_AES_256_GCM)" in done.stdout
        assert "call ended: local-hangup" in done.stdout
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert server.returncode == 0, out
    assert "DTMF '7'" in out
    assert list((tmp_path / "rec").glob("*.wav")), "the simulator recorded nothing"


def test_carrier_sim_call_to_nobody_fails_cleanly(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    done = _cli(
        "carrier-sim",
        "--listen",
        "127.0.0.1:0",
        "--call",
        "+15551230001",
        "--to",
        f"127.0.0.1:{dead}",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "failed: unreachable" in done.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mode", "play"], "mode 'play' needs play_file"),
        (["--listen", "nowhere"], "option --listen"),
        (["--media-ports", "9-x"], "option --media-ports"),
        (["--dtmf", "12x"], "dtmf_to_send"),
    ],
)
def test_carrier_sim_bad_options_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    done = _cli("carrier-sim", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert needle in done.stderr
