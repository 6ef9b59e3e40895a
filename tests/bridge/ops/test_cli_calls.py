"""``pstn-bridge calls`` and ``pstn-bridge call ID`` against a real running bridge over HTTPS:
the table (a lock column per leg, the PSTN caveat), the JSON, the defaults taken from the
configuration, and clear errors with their exit codes (401, unknown call, no bridge, no
token)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.ops import client as ops_client
from bridge.ops.cli import main
from bridge.security import PSTN_CAVEAT, PSTN_CAVEAT_TEXT
from tests.bridge.ops.conftest import TOKEN, OpsHarness
from tests.bridge.test_calls import NUMBER, USER
from tests.interop.peers import free_port


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The console command as a process (the bridge keeps serving on this loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.ops.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = await asyncio.to_thread(main, list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _write_config(harness: OpsHarness, path: Path) -> Path:
    settings = harness.settings
    path.write_text(
        f'[node]\nvar_dir = "{settings.node.var_dir}"\n'
        f'[tls]\nca_file = "{harness.ca}"\n'
        f"[http]\nlisten_port = {harness.running.https_port}\n"
    )
    return path


async def test_calls_and_call_print_the_table_and_json(
    ops_bridge: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    harness: OpsHarness = await ops_bridge(ops={"api_token": ""})  # token file in var_dir
    config = _write_config(harness, tmp_path / "cli.toml")
    client = await harness.client()
    call = await client.dial(NUMBER)
    await call.wait_answered()
    await call.wait_media()
    (call_id,) = harness.running.orchestrator.calls

    status, out, err = await _cli("calls", "--active", "--config", str(config))
    assert (status, err) == (0, "")
    header, line, footnote = out.splitlines()
    assert header.split() == [
        "ID",
        "DIR",
        "FROM",
        "TO",
        "STATE",
        "DURATION",
        "WEBRTC",
        "GATEWAY",
        "PSTN",
    ]
    cells = line.split()
    assert cells[:5] == [call_id, "outbound", USER, NUMBER, "answered"]
    assert cells[6:] == ["locked", "locked", "unknown", "*"]
    assert footnote == f"* {PSTN_CAVEAT}: {PSTN_CAVEAT_TEXT}"

    status, out, _ = await _in_process(capsys, "call", call_id, "--config", str(config))
    assert status == 0
    assert "gateway: locked" in out and "webrtc: locked" in out
    assert "pstn: unknown (carrier-dependent)" in out
    assert "crypto_suite=" in out and "end-to-end encrypted: false" in out

    assert await call.hangup() == 200
    await harness.idle()
    status, out, _ = await _in_process(capsys, "calls", "--json", "--config", str(config))
    assert status == 0
    (record,) = json.loads(out)["calls"]
    assert record["call_id"] == call_id and record["end_reason"] == "caller-hangup"
    status, out, _ = await _in_process(capsys, "call", call_id, "--json", "--config", str(config))
    assert status == 0 and json.loads(out) == record
    status, out, _ = await _in_process(capsys, "calls", "--active", "--config", str(config))
    assert (status, out) == (0, "no calls\n")
    token = (harness.settings.node.var_dir / "ops-token").read_text().strip()
    assert token not in out


async def test_cli_errors_are_clear(
    ops_bridge: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    harness: OpsHarness = await ops_bridge()
    url = f"https://127.0.0.1:{harness.running.https_port}"
    ca = str(harness.ca)
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token-0123456789\n")
    common = ("--url", url, "--ca-file", ca, "--config", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text(f'[node]\nvar_dir = "{tmp_path / "empty"}"\n')

    status, out, err = await _cli("calls", *common, "--token-file", str(token_file))
    assert status == 4 and out == ""
    assert "refused the token (401)" in err and "wrong-token" not in err

    env = {"PSTN_BRIDGE_OPS__API_TOKEN": TOKEN}
    status, _, err = await _cli("call", "c-unknown", *common, env=env)
    assert (status, err.strip()) == (1, "pstn-bridge: no such call")
    status, out, _ = await _cli("calls", *common, env=env)
    assert (status, out.strip()) == (0, "no calls")

    down = (
        "--url",
        f"https://127.0.0.1:{free_port()}",
        "--ca-file",
        ca,
        "--token-file",
        str(token_file),
    )
    status, _, err = await _in_process(capsys, "calls", *down)
    assert status == 3 and "is the bridge running?" in err

    status, _, err = await _in_process(capsys, "calls", *common)
    assert status == 2 and "no ops API token" in err

    untrusted = ("--url", url, "--token-file", str(token_file), "--ca-file", str(token_file))
    status, _, err = await _in_process(capsys, "calls", *untrusted)
    assert status == 2 and "TLS" in err


def test_the_commands_caveat_name_is_the_records() -> None:
    assert ops_client.PSTN_CAVEAT == PSTN_CAVEAT
