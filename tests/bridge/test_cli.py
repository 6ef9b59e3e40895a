"""The ``pstn-bridge`` command: ``carrier-sim`` as a real process against a real simulator,
and ``user add|list|remove|passwd`` on a real SQLite file (in-process and as the console
script)."""

from __future__ import annotations

import asyncio
import getpass
import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.ops.cli import main
from bridge.users import UserHa1, UserStore, sqlite_url
from sip_gateway.sip.auth import DigestAlgorithm, compute_ha1
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


# --- pstn-bridge user ... ------------------------------------------------------------------

REALM = "test-realm"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(f'[node]\nvar_dir = "{tmp_path / "var"}"\n[sip]\nrealm = "{REALM}"\n')
    return path


def _stored(config: Path) -> dict[str, UserHa1]:
    async def load() -> dict[str, UserHa1]:
        store = await UserStore.open(sqlite_url(config.parent / "var" / "bridge.db"))
        try:
            return await store.load_ha1()
        finally:
            await store.aclose()

    return asyncio.run(load())


def _user(config: Path, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))  # not a TTY
    return main(["user", *args, "--config", str(config)])


def test_user_add_list_passwd_remove(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _user(
        config,
        monkeypatch,
        "add",
        "alice",
        "--did",
        "+15005550100",
        "--did",
        "0044 20 7946 0000",
        "--password-stdin",
        stdin="alice's secret\n",
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "user alice added" in out and "alice's secret" not in out
    stored = _stored(config)["alice"]
    assert stored.realm == REALM
    assert stored.md5 == compute_ha1("alice", REALM, "alice's secret", DigestAlgorithm.MD5)

    assert _user(config, monkeypatch, "list") == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["NAME", "REALM", "DIDS", "CREATED", "STATUS"]
    assert listing[1].split()[:3] == ["alice", REALM, "+15005550100,+442079460000"]

    assert (
        _user(config, monkeypatch, "passwd", "alice", "--password-stdin", stdin="new one!\n") == 0
    )
    sha = compute_ha1("alice", REALM, "new one!", DigestAlgorithm.SHA_256)
    assert _stored(config)["alice"].sha256 == sha

    assert _user(config, monkeypatch, "remove", "alice") == 0
    assert _stored(config) == {}
    assert _user(config, monkeypatch, "list") == 0
    assert "no users" in capsys.readouterr().out


def test_user_add_generates_and_prints_a_password_once(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _user(config, monkeypatch, "add", "bob") == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("password (shown once): ")]
    password = line.removeprefix("password (shown once): ")
    assert len(password) >= 16
    assert _stored(config)["bob"].md5 == compute_ha1("bob", REALM, password, "MD5")
    assert password.encode() not in (config.parent / "var" / "bridge.db").read_bytes()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "alice", "--password-stdin"], "another password\n", "user 'alice' already exists"),
        (["add", "bob", "--did", "+1 500 555 0100"], "", "DID +15005550100 already belongs"),
        (["add", "bob", "--did", "12345"], "", "DID: '12345'"),
        (["add", "bo b"], "", "user name 'bo b'"),
        (["add", "bob", "--password-stdin"], "short\n", "at least 8 characters"),
        (["add", "bob", "--password-stdin"], "", "no password on stdin"),
        (["remove", "carol"], "", "no user 'carol'"),
        (["passwd", "carol"], "", "no user 'carol'"),
    ],
)
def test_refused_user_commands_exit_1_with_one_line(
    config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    stdin: str,
    message: str,
) -> None:
    first = ["add", "alice", "--did", "+15005550100", "--password-stdin"]
    assert _user(config, monkeypatch, *first, stdin="alice's secret\n") == 0
    capsys.readouterr()
    assert _user(config, monkeypatch, *args, stdin=stdin) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert list(_stored(config)) == ["alice"]


def test_user_commands_with_a_bad_config_or_database_exit_2(
    tmp_path: Path,
    config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nrealm = ""\n')
    assert _user(bad, monkeypatch, "list") == 2
    assert "option sip.realm" in capsys.readouterr().err
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "bridge.db").write_bytes(b"not a database " * 200)
    assert _user(config, monkeypatch, "list") == 2
    assert "user database" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("typed", "status", "generated"),
    [
        (["pass phrase", "pass phrase"], 0, False),
        (["pass phrase", "pass phrase?"], 1, False),
        ([""], 0, True),
    ],
)
def test_user_add_prompts_twice_on_a_terminal(
    config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    typed: list[str],
    status: int,
    generated: bool,
) -> None:
    answers = iter(typed)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", _Terminal())
    assert main(["user", "add", "dave", "--config", str(config)]) == status
    assert next(answers, None) is None  # every prompt was asked
    assert ("password (shown once)" in capsys.readouterr().out) is generated
    if status == 0 and not generated:
        assert _stored(config)["dave"].md5 == compute_ha1("dave", REALM, "pass phrase", "MD5")


def test_console_script_adds_a_user(config: Path) -> None:
    script = Path(sys.executable).with_name("pstn-bridge")
    done = subprocess.run(
        [
            str(script),
            "user",
            "add",
            "erin",
            "--config",
            str(config),
            "--did",
            "+15005550177",
            "--password-stdin",
        ],
        input="erin's password\n",
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "user erin added (realm test-realm; DIDs: +15005550177)" in done.stdout
    assert _stored(config)["erin"].sha256 == compute_ha1(
        "erin", REALM, "erin's password", "SHA-256"
    )
