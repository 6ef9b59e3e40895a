"""Unit tests of the harness plumbing (tests/interop/peers.py, peer_baresip.BaresipCtrl).

These need no SIP peer: ``sh``/``sleep`` stand in for one, a local asyncio server for baresip's
ctrl_tcp. They pin the behaviours the interop tests rely on: missing binaries fail, dead or
slow peers fail fast with their log, signals reach the peer and not ``timeout``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import wave

import pytest

from .peer_baresip import BaresipCtrl, account_line
from .peers import (
    PeerError,
    free_port,
    free_port_block,
    free_port_pair,
    is_listening,
    managed,
    read_sipp_stats,
    wait_log,
    wait_port,
    write_tone_wav,
)


def test_free_port_block_is_bindable_and_never_handed_out_twice():
    base = free_port_block(4, tcp=False)
    pair = free_port_pair()
    single = free_port()
    assert not set(range(base, base + 4)) & {pair, pair + 1, single}
    for port in (pair, pair + 1, single):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))


def test_missing_binary_fails_instead_of_skipping(tmp_path):
    with (
        pytest.raises(PeerError, match="not installed"),
        managed(["no-such-peer-binary"], tmp_path / "log"),
    ):
        pass


def test_peer_dying_before_ready_fails_with_its_log(tmp_path):
    cmd = ["sh", "-c", "echo boom-from-peer >&2; exit 3"]
    with (
        pytest.raises(PeerError, match="boom-from-peer"),
        managed(cmd, tmp_path / "log", port=free_port()),
    ):
        pass


def test_readiness_timeout_stops_the_peer(tmp_path):
    pidfile = tmp_path / "pid"
    cmd = ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"]
    with (
        pytest.raises(PeerError, match="not ready"),
        managed(cmd, tmp_path / "log", ready_log="never printed", ready_timeout=0.3),
    ):
        pass
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_signal_goes_to_the_peer_not_to_timeout(tmp_path):
    log = tmp_path / "log"
    script = 'trap "echo got-usr1; exit 7" USR1; echo ready; while :; do sleep 0.05; done'
    with managed(["sh", "-c", script], log, ready_log="ready", stop_signal=signal.SIGKILL) as peer:
        assert peer.pid is not None and peer.pid != peer.proc.pid
        assert peer.send_signal(signal.SIGUSR1)
        assert peer.wait(5) == 7  # timeout passes the peer's status on
    assert "got-usr1" in log.read_text()
    assert not peer.send_signal(signal.SIGUSR1)


def test_wait_port_uses_the_listen_table(tmp_path):
    port = free_port()
    with pytest.raises(PeerError, match="not listening"):
        wait_port(port, None, timeout=0.1)
    with socket.create_server(("127.0.0.1", port)):
        wait_port(port, None, timeout=1)
        assert is_listening(port)


def test_wait_log_since_waits_for_a_new_occurrence(tmp_path):
    path = tmp_path / "log"
    path.write_text("one READY two\n")
    end = wait_log(path, "READY", timeout=1)
    with pytest.raises(PeerError, match=r"after 0\.1 s"):
        wait_log(path, "READY", timeout=0.1, since=end)
    path.write_text("one READY two READY\n")
    assert wait_log(path, "READY", timeout=1, since=end) == len("one READY two READY")


def test_read_sipp_stats_takes_the_last_row(tmp_path):
    header = "StartTime;CurrentCall;TotalCallCreated;SuccessfulCall(C);FailedCall(C);"
    header += "FailedTcpClosed(C);FailedTimeoutOnRecv(C);Retransmissions(C);Warnings(C);"
    path = tmp_path / "stat.csv"
    path.write_text(f"{header}\n2026\t01;0;0;0;0;0;0;0;0;\n2026\t02;1;5;3;2;0;2;0;1;\n")
    stats = read_sipp_stats(path)
    assert (stats.created, stats.current, stats.successful, stats.failed) == (5, 1, 3, 2)
    assert stats.failures == {"TimeoutOnRecv": 2}
    assert stats.warnings == 1
    assert stats.raw["StartTime"] == "2026\t02"

    path.write_text(header + "\n")
    with pytest.raises(PeerError, match="no data row"):
        read_sipp_stats(path)
    with pytest.raises(PeerError, match="no statistics file"):
        read_sipp_stats(tmp_path / "missing.csv")


def test_tone_wav_is_8khz_mono_s16(tmp_path):
    path = write_tone_wav(tmp_path / "t.wav", 1000, 0.5, amplitude=0.5)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == 4000
        frames = w.readframes(8)
    samples = [int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, 16, 2)]
    assert samples[:3] == [0, 11585, 16384]  # 1 kHz at 8 kHz: 45 degrees per sample


def test_account_line():
    assert account_line("+15551230001") == (
        "<sip:+15551230001@127.0.0.1;transport=tls>;answermode=auto;mediaenc=srtp-mand"
        ";audio_codecs=PCMU,PCMA;regint=0"
    )
    assert ";mediaenc" not in account_line("x", mediaenc="")


def _netstring(obj: dict[str, object]) -> bytes:
    body = json.dumps(obj).encode()
    return b"%d:%s," % (len(body), body)


async def test_ctrl_keeps_events_that_arrive_before_a_response():
    async def fake_baresip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int((await reader.readuntil(b":"))[:-1])
        cmd = json.loads((await reader.readexactly(size + 1))[:-1])
        writer.write(_netstring({"event": True, "type": "CALL_RINGING", "param": "a"}))
        writer.write(_netstring({"event": True, "type": "CALL_ESTABLISHED", "param": "b"}))
        reply = {"response": True, "ok": True, "data": "dialed", "token": cmd["token"]}
        writer.write(_netstring(reply)[:7])  # a frame split across reads
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(_netstring(reply)[7:])
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(fake_baresip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, await BaresipCtrl.connect(port) as ctrl:
        reply = await ctrl.command("dial", "sip:x@127.0.0.1")
        assert reply["data"] == "dialed"
        assert (await ctrl.wait_event("CALL_ESTABLISHED"))["param"] == "b"
        assert (await ctrl.wait_event("CALL_RINGING"))["param"] == "a"
        with pytest.raises(TimeoutError):
            await ctrl.wait_event("CALL_CLOSED", timeout=0.1)
        assert [e["type"] for e in ctrl.events] == ["CALL_RINGING", "CALL_ESTABLISHED"]
