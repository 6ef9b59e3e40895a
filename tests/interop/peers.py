"""Run real third-party peers (SIPp, stunnel, baresip, openssl) on loopback for interop tests.

Theory of operation (see ../shared/PEERS.md section 2):

* Every peer runs under GNU ``timeout -k 5 MAX_S`` so that nothing outlives a broken test run,
  but signals go to the peer itself (the child of ``timeout``): ``timeout`` does not pass
  SIGUSR1 on, and SIPp's soft stop needs it.
* A missing binary fails the test (``PeerError``), it never skips: a skip would hide a broken
  install in CI.
* Readiness is a log line (``wait_log``) and/or a listening port (``wait_port``). ``wait_port``
  reads the kernel's table of listening sockets instead of connecting, because a probe
  connection has side effects (stunnel in client mode dials its target, TLS servers log a
  failed handshake).
* Ports come from below the kernel's ephemeral range, so an outgoing connection can never be
  holding a port we hand out; a random pick plus a bind check keeps parallel workers apart.
* Every wait is bounded; every error message carries the tail of the peer's log.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ManagedPeer",
    "PeerError",
    "SippStats",
    "free_port",
    "free_port_block",
    "free_port_pair",
    "is_listening",
    "managed",
    "read_sipp_stats",
    "require_binary",
    "wait_log",
    "wait_port",
    "write_tone_wav",
]

POLL_S = 0.05
_PORT_FLOOR = 20000
_handed_out: set[int] = set()
_rng = random.Random()


class PeerError(RuntimeError):
    """A peer is missing, died, or did not become ready in time (the message says which)."""


# --------------------------------------------------------------------------------------------
# Ports


def _ephemeral_floor() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, _PORT_FLOOR + 1000)


def _bindable(port: int, *, tcp: bool, udp: bool) -> bool:
    kinds = ([socket.SOCK_STREAM] if tcp else []) + ([socket.SOCK_DGRAM] if udp else [])
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(count: int = 1, *, tcp: bool = True, udp: bool = True) -> int:
    """Return a port P such that P .. P+count-1 are all free on 127.0.0.1.

    Ports are picked at random below the ephemeral range and never handed out twice by this
    process, so parallel tests (pytest-xdist workers) rarely collide.

    Args:
        count: how many consecutive ports are needed.
        tcp: check that TCP can bind each port.
        udp: check that UDP can bind each port.

    Raises:
        PeerError: no free block was found after a bounded number of tries.
    """
    ceiling = _ephemeral_floor() - count
    for _ in range(500):
        base = _rng.randrange(_PORT_FLOOR, ceiling)
        block = range(base, base + count)
        if any(p in _handed_out for p in block):
            continue
        if all(_bindable(p, tcp=tcp, udp=udp) for p in block):
            _handed_out.update(block)
            return base
    raise PeerError(f"no block of {count} free ports found on 127.0.0.1")


def free_port() -> int:
    """Return one port free for both TCP and UDP on 127.0.0.1."""
    return free_port_block(1)


def free_port_pair() -> int:
    """Return P with P and P+1 free (baresip: UDP/TCP on P, TLS on P+1)."""
    return free_port_block(2)


# --------------------------------------------------------------------------------------------
# Readiness


def _listening_ports() -> set[int] | None:
    ports: set[int] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports if found else None


def is_listening(port: int) -> bool:
    """True when some socket listens on TCP ``port`` (no connection is made when /proc works)."""
    ports = _listening_ports()
    if ports is not None:
        return port in ports
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _died(proc: subprocess.Popen[bytes] | None) -> bool:
    return proc is not None and proc.poll() is not None


def wait_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10.0
) -> None:
    """Wait until TCP ``port`` is listening on loopback.

    Raises:
        PeerError: ``proc`` exited first, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"peer exited (rc={proc.returncode}) before port {port} listened")
        if time.monotonic() > deadline:
            raise PeerError(f"port {port} not listening after {timeout} s")
        time.sleep(POLL_S)


def _search(text: str, pattern: str | re.Pattern[str], since: int) -> int | None:
    if isinstance(pattern, str):
        idx = text.find(pattern, since)
        return None if idx < 0 else idx + len(pattern)
    m = pattern.search(text, since)
    return None if m is None else m.end()


def wait_log(
    path: Path,
    text: str | re.Pattern[str],
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 10.0,
    *,
    since: int = 0,
) -> int:
    """Wait until ``text`` (a substring or a compiled regex) appears in the file at ``path``.

    Args:
        path: the log file (it may not exist yet).
        text: what to look for.
        proc: the process writing the log; its exit ends the wait early.
        timeout: seconds.
        since: character offset to start searching from (a previous return value), to wait
            for a *new* occurrence.

    Returns:
        The character offset just after the match.

    Raises:
        PeerError: ``proc`` exited without writing it, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        dead = _died(proc)  # read the file after the check so a last line is not missed
        try:
            content = path.read_text(errors="replace")
        except FileNotFoundError:
            content = ""
        end = _search(content, text, since)
        if end is not None:
            return end
        if dead:
            raise PeerError(f"peer exited before {text!r} appeared in {path.name}")
        if time.monotonic() > deadline:
            raise PeerError(f"{text!r} not in {path.name} after {timeout} s")
        time.sleep(POLL_S)


# --------------------------------------------------------------------------------------------
# Process management


def _child_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


@dataclass(eq=False)
class ManagedPeer:
    """A peer started by :func:`managed`: ``proc`` is GNU ``timeout``, the peer is its child."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def running(self) -> bool:
        """True while the peer (or its ``timeout`` wrapper) has not exited."""
        return self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the peer itself (not ``timeout``), None once it is gone."""
        deadline = time.monotonic() + 1.0
        while self.running:
            child = _child_pid(self.proc.pid)
            if child is not None or time.monotonic() > deadline:
                return child
            time.sleep(0.01)  # timeout has forked but not exec'd yet
        return None

    def send_signal(self, sig: int) -> bool:
        """Send ``sig`` to the peer itself; False if it had already exited."""
        pid = self.pid
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            return True
        return False

    def wait(self, timeout: float) -> int:
        """Wait for the peer to exit and return ``timeout``'s exit status (the peer's, or 124).

        Raises:
            PeerError: still running after ``timeout`` seconds (the peer is left running).
        """
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise PeerError(
                f"{self.name} still running after {timeout} s\n{self.log_tail()}"
            ) from None

    async def wait_async(self, timeout: float) -> int:  # noqa: ASYNC109 - every wait has a default bound
        """Like :meth:`wait`, but polls so an event loop keeps running meanwhile.

        Raises:
            PeerError: still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while (rc := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise PeerError(f"{self.name} still running after {timeout} s\n{self.log_tail()}")
            await asyncio.sleep(POLL_S)
        return rc

    def log_text(self) -> str:
        """The whole log so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log, for error messages."""
        tail = self.log_text().splitlines()[-lines:]
        return f"--- tail of {self.log} ---\n" + "\n".join(tail)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the peer, wait, then SIGKILL the ``timeout`` process group if still alive.

        Returns:
            The exit status of the ``timeout`` wrapper.
        """
        if self.running and not self.send_signal(sig):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)  # no child (yet): timeout forwards TERM
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            return self.proc.wait(5)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(self.proc.pid) == self.proc.pid:  # timeout made its own group
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()


def require_binary(binary: str) -> None:
    """Fail (never skip) when ``binary`` is not on PATH.

    Raises:
        PeerError: it is missing.
    """
    if shutil.which(binary) is None:
        raise PeerError(f"{binary} is not installed (see PEERS.md section 1; tests never skip)")


@contextlib.contextmanager
def managed(
    cmd: Sequence[str],
    log: Path,
    *,
    port: int | Sequence[int] | None = None,
    ready_log: str | re.Pattern[str] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
    max_s: float = 120,
    ready_timeout: float = 10.0,
) -> Iterator[ManagedPeer]:
    """Run ``cmd`` under ``timeout -k 5 max_s``, wait until ready, yield, then stop it.

    Args:
        cmd: the peer's command line; ``cmd[0]`` must be on PATH.
        log: file that receives the peer's stdout and stderr.
        port: TCP port(s) that must be listening before the peer counts as ready.
        ready_log: text (or regex) that must appear in the log first.
        cwd: working directory of the peer.
        env: environment of the peer (default: inherited).
        stop_signal: signal sent to the peer itself at the end.
        max_s: hard bound on the peer's lifetime.
        ready_timeout: seconds allowed for each readiness check.

    Yields:
        The running peer.

    Raises:
        PeerError: the binary is missing, or the peer died or was not ready in time.
    """
    require_binary("timeout")
    require_binary(cmd[0])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["timeout", "-k", "5", str(max_s), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
        )
    peer = ManagedPeer(name=Path(cmd[0]).name, proc=proc, log=log)
    try:
        try:
            if ready_log is not None:
                wait_log(log, ready_log, proc, ready_timeout)
            ports = [port] if isinstance(port, int) else list(port or ())
            for p in ports:
                wait_port(p, proc, ready_timeout)
        except PeerError as exc:
            raise PeerError(f"{peer.name} not ready: {exc}\n{peer.log_tail()}") from None
        yield peer
    finally:
        if peer.running:
            peer.stop(stop_signal)


# --------------------------------------------------------------------------------------------
# SIPp statistics


def _int(raw: Mapping[str, str], key: str) -> int:
    try:
        return int(raw.get(key, "0") or "0")
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SippStats:
    """Cumulative counters from the last row of a SIPp ``-trace_stat`` CSV file."""

    successful: int
    """``SuccessfulCall(C)``."""
    failed: int
    """``FailedCall(C)``."""
    created: int
    """``TotalCallCreated``."""
    current: int
    """``CurrentCall``: calls still running when the row was written."""
    incoming: int
    """``IncomingCall(C)``."""
    outgoing: int
    """``OutgoingCall(C)``."""
    retransmissions: int
    """``Retransmissions(C)``."""
    dead_call_msgs: int
    """``DeadCallMsgs(C)``: messages for calls that had already ended."""
    out_of_call_msgs: int
    """``OutOfCallMsgs(C)``: messages that matched no call."""
    warnings: int
    """``Warnings(C)``."""
    fatal_errors: int
    """``FatalErrors(C)``."""
    failures: Mapping[str, int] = field(default_factory=dict)
    """Non-zero ``Failed<Reason>(C)`` counters by reason, e.g. ``{"TcpClosed": 1}``."""
    raw: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Every column of the last row, by header name."""


def read_sipp_stats(path: Path) -> SippStats:
    """Parse the last row of a SIPp ``-trace_stat -stf`` file (``;``-separated, header first).

    Raises:
        PeerError: the file is missing or has no data row.
    """
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise PeerError(f"SIPp wrote no statistics file {path}") from None
    if len(lines) < 2:
        raise PeerError(f"SIPp statistics file {path} has no data row")
    header = lines[0].rstrip(";").split(";")
    raw = dict(zip(header, lines[-1].rstrip(";").split(";"), strict=False))
    failures = {
        key[len("Failed") : -len("(C)")]: _int(raw, key)
        for key in header
        if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)"
    }
    return SippStats(
        successful=_int(raw, "SuccessfulCall(C)"),
        failed=_int(raw, "FailedCall(C)"),
        created=_int(raw, "TotalCallCreated"),
        current=_int(raw, "CurrentCall"),
        incoming=_int(raw, "IncomingCall(C)"),
        outgoing=_int(raw, "OutgoingCall(C)"),
        retransmissions=_int(raw, "Retransmissions(C)"),
        dead_call_msgs=_int(raw, "DeadCallMsgs(C)"),
        out_of_call_msgs=_int(raw, "OutOfCallMsgs(C)"),
        warnings=_int(raw, "Warnings(C)"),
        fatal_errors=_int(raw, "FatalErrors(C)"),
        failures={k: v for k, v in failures.items() if v},
        raw=raw,
    )


# --------------------------------------------------------------------------------------------
# Audio


def write_tone_wav(
    path: Path, hz: float = 440.0, seconds: float = 10.0, *, amplitude: float = 0.5
) -> Path:
    """Write a mono 16-bit 8 kHz sine WAV (what baresip's ``aufile`` source needs).

    Returns:
        ``path``.
    """
    rate = 8000
    step = 2 * math.pi * hz / rate
    samples = array.array(
        "h", (round(amplitude * 32767 * math.sin(step * n)) for n in range(int(seconds * rate)))
    )
    if sys.byteorder != "little":
        samples.byteswap()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path
