"""The media plane: worker processes that host the calls' media, started and kept alive.

Theory of operation
-------------------
:class:`MediaPlane` starts ``workers`` child processes (``python -m bridge.media.worker``,
children of the bridge process, so the bridge's CPU includes theirs), each connected by
a socketpair and driven through a :class:`~bridge.media.remote.ControlChannel`. The first
message each gets is its :class:`~bridge.media.control.Configure` (the media settings).

* :meth:`MediaPlane.call_media` gives a new call a
  :class:`~bridge.media.remote.RemoteCallMedia` on the live worker with the fewest calls.
* One supervisor task per worker slot waits for the process to exit (a worker silent for
  ``hang_timeout``, though it pushes every second, is killed first). When a worker dies
  its channel is lost, so each of its calls gets a ``MediaWorkerLost`` event and ends
  with ``media-worker-lost`` (record and CDR written by the call layer as for any end);
  the slot is restarted after a short delay (counted), and later calls use it again.
* :meth:`MediaPlane.aclose` (after the calls are hung up) closes the control
  connections, so the workers close their media and exit; one that does not within a
  few seconds is killed. No worker outlives the bridge (they also die with it: see
  :mod:`bridge.media.worker`).
* :meth:`MediaPlane.resources` sums the workers' last pushed resource counts for
  ``/metrics``; :attr:`WorkerSlot.restarts` and :attr:`WorkerSlot.up` are exposed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from dataclasses import dataclass, field

from .control import Configure, WorkerResources
from .pipeline import PipelineConfig
from .remote import REQUEST_TIMEOUT, ControlChannel, RemoteCallMedia

__all__ = ["MediaPlane", "MediaPlaneConfig", "WorkerSlot", "worker_count"]

log = logging.getLogger("bridge.media")

_STOP_TIMEOUT = 5.0
_QUICK_DEATH = 60.0
_MAX_RESTART_DELAY = 60.0


def worker_count(setting: int | str) -> int:
    """``auto`` is one worker per CPU core; an int is taken as it is (0: in-process)."""
    if setting == "auto":
        return os.cpu_count() or 1
    return int(setting)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaPlaneConfig:
    """How the media plane runs.

    Attributes:
        workers: worker processes (at least 1; 0 means no plane, media in-process).
        pipeline: the media settings every worker gets.
        stats_interval: seconds between the workers' stats and resource pushes.
        request_timeout: seconds an awaited request may take before the worker counts
            as lost for that call.
        restart_delay: seconds before a dead worker is started again; doubled (up to a
            minute) each time a worker dies within a minute of its start, so a worker
            that cannot start does not spin.
        hang_timeout: seconds without any message from a running worker (it pushes every
            ``stats_interval``) after which it counts as hung and is killed.
        start_timeout: seconds a new worker may take to say anything (loading its
            modules on a busy machine) before it counts as hung.
        log_level: the workers' logging level.
    """

    workers: int
    pipeline: PipelineConfig
    stats_interval: float = 1.0
    request_timeout: float = REQUEST_TIMEOUT
    restart_delay: float = 0.5
    hang_timeout: float = 15.0
    start_timeout: float = 60.0
    log_level: str = "INFO"


@dataclass(slots=True)
class WorkerSlot:
    """One worker position of the plane and its current process.

    Attributes:
        index: the slot's number (a metrics label).
        process: the running process, None while it is down.
        channel: its control connection, None while it is down.
        restarts: how often the slot's worker was started again after dying.
    """

    index: int
    process: asyncio.subprocess.Process | None = None
    channel: ControlChannel | None = None
    restarts: int = 0
    supervisor: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def up(self) -> bool:
        """Whether a live worker holds this slot."""
        return self.channel is not None and self.channel.alive

    @property
    def calls(self) -> int:
        """Calls on this worker now."""
        return len(self.channel.calls) if self.up and self.channel is not None else 0


class MediaPlane:
    """The media worker processes (module docstring)."""

    def __init__(self, config: MediaPlaneConfig) -> None:
        if config.workers < 1:
            raise ValueError("a media plane needs at least one worker")
        self.config = config
        self.slots = [WorkerSlot(index) for index in range(config.workers)]
        self._closing = False
        self._lost_channel: ControlChannel | None = None

    async def start(self) -> None:
        """Start every worker (they load their modules in parallel).

        Raises:
            OSError: a worker process could not be started.
        """
        for slot in self.slots:
            await self._spawn(slot)
            slot.supervisor = asyncio.get_running_loop().create_task(
                self._supervise(slot), name=f"media worker {slot.index} supervisor"
            )

    async def _spawn(self, slot: WorkerSlot) -> None:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bridge.media.worker",
                "--fd",
                str(theirs.fileno()),
                "--log-level",
                self.config.log_level,
                "--parent",
                str(os.getpid()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        channel = ControlChannel(
            reader,
            writer,
            name=f"media worker {slot.index} (pid {process.pid})",
            request_timeout=self.config.request_timeout,
        )
        channel.send(
            Configure(pipeline=self.config.pipeline, stats_interval=self.config.stats_interval)
        )
        slot.process, slot.channel = process, channel
        log.info("media worker %d started: pid %d", slot.index, process.pid)

    async def _supervise(self, slot: WorkerSlot) -> None:
        """Wait for the slot's worker to exit; unless the plane is closing, start another."""
        loop = asyncio.get_running_loop()
        delay = self.config.restart_delay
        while True:
            process, channel = slot.process, slot.channel
            assert process is not None and channel is not None
            started = loop.time()
            await self._watch(slot.index, process, channel)
            await channel.aclose()  # its calls get MediaWorkerLost now
            code = await _stop(process)
            if self._closing:
                return
            log.error(
                "media worker %d (pid %d) died with status %s; its calls end",
                slot.index,
                process.pid,
                code,
            )
            if loop.time() - started >= _QUICK_DEATH:
                delay = self.config.restart_delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RESTART_DELAY)  # for a death soon after this start
            while True:
                try:
                    await self._spawn(slot)
                    break
                except OSError as exc:
                    log.error("media worker %d could not be restarted: %s", slot.index, exc)
                    await asyncio.sleep(_MAX_RESTART_DELAY)
            slot.restarts += 1

    async def _watch(
        self, index: int, process: asyncio.subprocess.Process, channel: ControlChannel
    ) -> None:
        """Until the worker exits, its connection ends, or it stays silent too long (then
        it is killed: a hung worker's calls are as lost as a dead one's)."""
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.config.hang_timeout / 4, 0.1)):
                    await _wait_either(process, channel)
                    return
            limit = self.config.hang_timeout if channel.heard else self.config.start_timeout
            if loop.time() - channel.last_heard > limit and not self._closing:
                log.error("media worker %d (pid %d) is silent; killing it", index, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()

    def call_media(self, call_id: str) -> RemoteCallMedia:
        """A new call's media on the live worker with the fewest calls (if none is up,
        on a lost channel: its ``open`` raises ``MediaWorkerLostError``)."""
        live = [slot for slot in self.slots if slot.up and slot.channel is not None]
        if not live:
            return RemoteCallMedia(self._dead_channel(), call_id)
        slot = min(live, key=lambda s: s.calls)
        assert slot.channel is not None
        return RemoteCallMedia(slot.channel, call_id)

    def _dead_channel(self) -> ControlChannel:
        """A channel that is lost from the start (no worker is up)."""
        for slot in self.slots:
            if slot.channel is not None:
                return slot.channel
        raise RuntimeError("the media plane was not started")

    def resources(self) -> WorkerResources:
        """The live workers' resource counts, summed."""
        total = WorkerResources()
        for slot in self.slots:
            if slot.up and slot.channel is not None:
                total += slot.channel.resources
        return total

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [s.process.pid for s in self.slots if s.process is not None and s.up]

    async def aclose(self) -> None:
        """Stop every worker (call after the calls are hung up). One that has not said
        anything yet (still loading its modules) holds nothing: it is killed at once."""
        self._closing = True
        for slot in self.slots:
            channel, process = slot.channel, slot.process
            if channel is None:
                continue
            if process is not None and not channel.heard and not channel.calls:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await channel.aclose()
        for slot in self.slots:
            process = slot.process
            if process is None:
                continue
            try:
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                log.warning("media worker %d did not stop; killing it", slot.index)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for slot in self.slots:
            if slot.supervisor is not None:
                slot.supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await slot.supervisor


async def _wait_either(process: asyncio.subprocess.Process, channel: ControlChannel) -> None:
    """Until the worker exits or its control connection ends (a broken or hung worker)."""
    exited = asyncio.ensure_future(process.wait())
    lost = asyncio.ensure_future(channel.wait_lost())
    try:
        await asyncio.wait((exited, lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (exited, lost):
            waiter.cancel()
        await asyncio.gather(exited, lost, return_exceptions=True)


async def _stop(process: asyncio.subprocess.Process) -> int:
    """The worker's exit status; one still running after its connection ended is killed."""
    try:
        async with asyncio.timeout(_STOP_TIMEOUT):
            return await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return await process.wait()
