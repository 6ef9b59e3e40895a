"""Debian SIPp 3.6 (no TLS, no SRTP) driven over TCP, with stunnel for TLS (PEERS.md section 5).

Each instance gets its own directory holding the scenario XML, SIPp's console output
(``sipp.log``), the ``-trace_stat`` CSV (``stat.csv``, one row per second and one at exit), the
``-trace_msg`` message log (``messages.log``) and the ``-trace_err`` log (``errors.log``).

A SIPp run is judged by its statistics, never by its exit code. A UAC ends by itself after its
``-m`` calls; a UAS runs until soft-stopped with SIGUSR1 sent to the sipp process itself (GNU
``timeout`` would not pass SIGUSR1 on), after which SIPp still writes its final row.

Scenarios are given as a name from ``scenarios/`` (``"uac_options_tls"``), a ``Path`` or the XML
text itself.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .peers import ManagedPeer, PeerError, SippStats, managed, read_sipp_stats

__all__ = ["SCENARIOS", "Sipp", "SippResult", "load_scenario", "start_sipp"]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def load_scenario(scenario: str | Path) -> tuple[str, str]:
    """Return ``(name, xml)`` for a scenario name in ``scenarios/``, a path, or XML text.

    Raises:
        PeerError: no such scenario.
    """
    if isinstance(scenario, Path):
        return scenario.stem, scenario.read_text()
    if scenario.lstrip().startswith("<"):
        return "scenario", scenario
    path = SCENARIOS / (scenario if scenario.endswith(".xml") else f"{scenario}.xml")
    if not path.is_file():
        raise PeerError(f"no SIPp scenario {path}")
    return path.stem, path.read_text()


@dataclass(frozen=True, slots=True, kw_only=True)
class SippResult:
    """What a finished (or stopped) SIPp instance left behind."""

    stats: SippStats
    returncode: int | None
    """Exit status (SIPp: 0 all calls passed, 1 some failed, 99 no call; 124 = timeout)."""
    message_file: Path
    error_file: Path
    log: Path

    def messages(self) -> str:
        """The ``-trace_msg`` log: every message sent and received."""
        return _read(self.message_file)

    def errors(self) -> str:
        """The ``-trace_err`` log: unexpected messages, regexp failures..."""
        return _read(self.error_file)

    def describe(self, tail: int = 40) -> str:
        """A summary for assertion messages: counters, errors and the end of the console log."""
        err = "\n".join(self.errors().splitlines()[-tail:])
        out = "\n".join(_read(self.log).splitlines()[-tail:])
        return f"{self.stats}\n--- errors ---\n{err}\n--- console ---\n{out}"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


class Sipp:
    """A running SIPp instance (see :func:`start_sipp`)."""

    def __init__(self, peer: ManagedPeer, workdir: Path, *, port: int, media_port: int) -> None:
        self.peer = peer
        self.workdir = workdir
        self.port = port
        """Local SIP port (TCP): the UAS listens here."""
        self.media_port = media_port
        """``-mp``: SIPp binds it and ``media_port + 2`` (free block of 4 reserved)."""

    @property
    def stat_file(self) -> Path:
        """The ``-trace_stat`` CSV."""
        return self.workdir / "stat.csv"

    @property
    def message_file(self) -> Path:
        """The ``-trace_msg`` log."""
        return self.workdir / "messages.log"

    @property
    def running(self) -> bool:
        """True until SIPp exits."""
        return self.peer.running

    def result(self) -> SippResult:
        """Statistics and files as they are now (call after the run ends for final counts).

        Raises:
            PeerError: SIPp wrote no statistics (look at its log).
        """
        try:
            stats = read_sipp_stats(self.stat_file)
        except PeerError as exc:
            raise PeerError(f"{exc}\n{self.peer.log_tail()}") from None
        return SippResult(
            stats=stats,
            returncode=self.peer.proc.poll(),
            message_file=self.message_file,
            error_file=self.workdir / "errors.log",
            log=self.peer.log,
        )

    def wait(self, timeout: float = 30.0) -> SippResult:
        """Wait for SIPp to end by itself (a UAC after ``-m`` calls).

        Raises:
            PeerError: it is still running after ``timeout`` seconds.
        """
        self.peer.wait(timeout)
        return self.result()

    async def wait_async(self, timeout: float = 30.0) -> SippResult:  # noqa: ASYNC109 - every wait has a default bound
        """Like :meth:`wait` without blocking the event loop (the code under test may run on it).

        Raises:
            PeerError: it is still running after ``timeout`` seconds.
        """
        await self.peer.wait_async(timeout)
        return self.result()

    def stop(self, timeout: float = 5.0) -> SippResult:
        """Soft-stop with SIGUSR1 (calls in progress count as failed), then collect the result.

        Escalates to SIGTERM and SIGKILL if SIPp ignores the soft stop.
        """
        if self.peer.send_signal(signal.SIGUSR1):
            with contextlib.suppress(PeerError):
                self.peer.wait(timeout)
        if self.running:
            self.peer.stop(signal.SIGTERM, timeout)
        return self.result()

    async def stop_async(self, timeout: float = 5.0) -> SippResult:  # noqa: ASYNC109 - every wait has a default bound
        """Like :meth:`stop` without blocking the event loop."""
        if self.peer.send_signal(signal.SIGUSR1):
            with contextlib.suppress(PeerError):
                await self.peer.wait_async(timeout)
        if self.running:
            self.peer.stop(signal.SIGTERM, timeout)
        return self.result()


def _args(
    *,
    workdir: Path,
    port: int,
    media_port: int,
    timeout_s: float,
    keys: Mapping[str, str],
    extra: Sequence[str],
) -> list[str]:
    args = ["-sf", str(workdir / "scenario.xml"), "-t", "t1", "-i", "127.0.0.1", "-p", str(port)]
    args += ["-mi", "127.0.0.1", "-mp", str(media_port), "-nostdin", "-timeout", f"{timeout_s:g}s"]
    args += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
    args += ["-trace_stat", "-stf", str(workdir / "stat.csv"), "-fd", "1"]
    args += ["-trace_err", "-error_file", str(workdir / "errors.log")]
    for key, value in keys.items():
        args += ["-key", key, value]
    return [*args, *extra]


def start_sipp(
    stack: contextlib.ExitStack,
    workdir: Path,
    scenario: str | Path,
    *,
    port: int,
    media_port: int,
    target: Sequence[str] = (),
    keys: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
    timeout_s: float = 30.0,
    listen: bool = False,
) -> Sipp:
    """Write the scenario into ``workdir`` and start ``sipp`` over TCP (``-t t1``).

    Args:
        stack: the peer is stopped (SIGUSR1, then harder) when it closes.
        workdir: a fresh directory for this instance's files.
        scenario: name in ``scenarios/``, path, or XML text.
        port: local SIP port (``-p``).
        media_port: ``-mp`` (SIPp binds it and +2).
        target: leading arguments for a UAC, e.g. ``["127.0.0.1:5061", "-rsa", "127.0.0.1:P"]``.
        keys: ``-key NAME VALUE`` pairs for ``[NAME]`` in the scenario.
        extra: further SIPp arguments (``-m``, ``-r``, ``-s``, ``-rtp_echo``...).
        timeout_s: SIPp's global ``-timeout``; the process is killed 10 s after it.
        listen: wait until ``port`` listens (a UAS) before returning.

    Raises:
        PeerError: sipp is missing, or died or did not listen in time.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    _, xml = load_scenario(scenario)
    (workdir / "scenario.xml").write_text(xml)
    args = _args(
        workdir=workdir,
        port=port,
        media_port=media_port,
        timeout_s=timeout_s,
        keys=keys or {},
        extra=extra,
    )
    peer = stack.enter_context(
        managed(
            ["sipp", *target, *args],
            workdir / "sipp.log",
            port=port if listen else None,
            cwd=workdir,
            stop_signal=signal.SIGUSR1,
            max_s=timeout_s + 10,
        )
    )
    return Sipp(peer, workdir, port=port, media_port=media_port)
