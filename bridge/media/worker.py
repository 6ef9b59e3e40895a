"""A media worker process: hosts calls' :class:`~bridge.media.pipeline.CallMedia` objects.

Theory of operation
-------------------
The signaling process (:mod:`bridge.media.plane`) starts ``python -m bridge.media.worker
--fd N``, N being its end of a socketpair, and speaks the control protocol of
:mod:`bridge.media.control` over it. The worker runs one asyncio loop on uvloop:

* :class:`MediaWorker` executes requests. Each call has its own lock, so a call's
  awaited requests (open, new browser leg, choose, close) run one after the other in the
  order sent, while other calls go on; fire-and-forget requests (apply a config, close a
  port, send a digit) run at once, as their in-process counterparts do.
* It pushes every :class:`~bridge.media.events.MediaEvent` of a call as it happens, each
  call's counters and facts every ``stats_interval`` seconds and when it closes, and its
  resource counts (sockets, SRTP sessions, tasks) with each round and after each reply
  and event (so ``/metrics`` sees a leg come up or go at once).
* It exits when the control connection closes (the parent closed it, or died: the
  socket's other end goes with it); it also asks the kernel for SIGKILL when the parent
  dies (``PR_SET_PDEATHSIG``). It ignores SIGINT and SIGTERM (a terminal's Ctrl-C, or a
  service manager, signals the whole process group; the bridge hangs its calls up first
  and then stops its workers). No orphan survives its bridge.

Key material only arrives inside the configs; nothing here logs a message's content.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field

from sip_gateway.media.errors import MediaError

from .control import (
    ApplyGateway,
    ApplyWebRtc,
    ChooseWebRtc,
    CloseGateway,
    CloseMedia,
    CloseWebRtcPort,
    Configure,
    ControlMessage,
    ControlProtocolError,
    Done,
    EventPushed,
    MediaSnapshot,
    NewWebRtcPort,
    Opened,
    OpenMedia,
    Refused,
    ResourcesPushed,
    SendDigit,
    StatsPushed,
    WebRtcPortMade,
    WorkerResources,
    encode,
    read_messages,
)
from .events import MediaEvent, MediaFailed
from .pipeline import CallMedia, PipelineConfig, WebRtcPort
from .webrtc_leg import DtlsFacts, WebRtcLegError

__all__ = ["MediaWorker", "main"]

log = logging.getLogger("bridge.media.worker")

_PR_SET_PDEATHSIG = 1
Request = OpenMedia | NewWebRtcPort | ChooseWebRtc | CloseMedia


@dataclass(slots=True)
class _Hosted:
    """One call in this worker."""

    media: CallMedia
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ports: dict[int, WebRtcPort] = field(default_factory=dict)
    next_port: int = 1
    facts_sent: DtlsFacts | None = None

    def snapshot(self) -> MediaSnapshot:
        """The call's counters now, with its DTLS facts only when they changed since the
        last snapshot (they are set once per leg; the other side keeps the last)."""
        media = self.media
        webrtc, gateway = media.leg_stats()
        facts = media.webrtc_facts()
        if facts == self.facts_sent:
            facts = None
        else:
            self.facts_sent = facts
        return MediaSnapshot(counters=media.stats(), webrtc=webrtc, gateway=gateway, facts=facts)


class MediaWorker:
    """Executes control requests on the calls it hosts (module docstring)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pipeline: PipelineConfig | None = None
        self.stats_interval = 1.0
        self.calls: dict[str, _Hosted] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._resources_due = False

    def send(self, message: ControlMessage) -> None:
        """Queue one message to the signaling process (dropped once it is gone)."""
        if self._writer.is_closing():
            return
        try:
            frame = encode(message)
        except TypeError:
            log.exception("%s cannot be sent", type(message).__name__)
            return
        self._writer.write(frame)

    def handle(self, message: ControlMessage) -> None:
        """Execute one message from the signaling process."""
        if isinstance(message, Configure):
            self._pipeline, self.stats_interval = message.pipeline, message.stats_interval
        elif isinstance(message, OpenMedia | NewWebRtcPort | ChooseWebRtc | CloseMedia):
            task = asyncio.get_running_loop().create_task(self._request(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._at_once(message)

    def _at_once(self, message: ControlMessage) -> None:
        call_id = getattr(message, "call_id", None)
        hosted = self.calls.get(call_id) if isinstance(call_id, str) else None
        if hosted is None:
            log.info("%s for a call this worker does not host", type(message).__name__)
            return
        media = hosted.media
        if isinstance(message, ApplyWebRtc | CloseWebRtcPort):
            port = hosted.ports.get(message.port_id)
            if port is None:
                return
            if isinstance(message, CloseWebRtcPort):
                port.close()
                return
            try:
                port.apply(message.config)
            except MediaError as exc:
                media.emit(MediaFailed(leg="webrtc", reason=str(exc)))
        elif isinstance(message, ApplyGateway):
            try:
                media.gateway_port.apply(message.config)
            except MediaError as exc:
                media.emit(MediaFailed(leg="gateway", reason=str(exc)))
            media.gateway_config_applied(message.config)
        elif isinstance(message, CloseGateway):
            media.gateway_port.close()
        elif isinstance(message, SendDigit):
            media.send_digit_to_gateway(message.digit, message.duration_ms, via=message.via)

    async def _request(self, message: Request) -> None:
        request_id = message.request_id
        try:
            reply = await self._execute(message)
        except OSError as exc:
            reply = Refused(
                request_id=request_id,
                kind="os",
                reason=type(exc).__name__,
                detail=exc.strerror or str(exc),
            )
        except WebRtcLegError as exc:
            reply = Refused(
                request_id=request_id, kind="webrtc", reason=exc.reason, detail=str(exc)
            )
        except KeyError:
            reply = Refused(
                request_id=request_id, kind="unknown-call", reason="unknown-call", detail=""
            )
        except Exception as exc:
            log.exception("%s failed", type(message).__name__)
            reply = Refused(
                request_id=request_id, kind="error", reason=type(exc).__name__, detail=str(exc)
            )
        self.send(reply)
        self.resources_soon()

    async def _execute(self, message: Request) -> ControlMessage:
        if isinstance(message, OpenMedia):
            return await self._open(message)
        hosted = self.calls[message.call_id]
        async with hosted.lock:
            if isinstance(message, NewWebRtcPort):
                port = await hosted.media.new_webrtc_port(controlling=message.controlling)
                port_id, hosted.next_port = hosted.next_port, hosted.next_port + 1
                hosted.ports[port_id] = port
                return WebRtcPortMade(
                    request_id=message.request_id,
                    port_id=port_id,
                    local_address=port.local_address,
                    local_ice=port.local_ice,
                    fingerprints=port.leg.fingerprints,
                )
            if isinstance(message, ChooseWebRtc):
                chosen = hosted.ports[message.port_id]
                await hosted.media.choose_webrtc(chosen)
                hosted.ports = {message.port_id: chosen}
                return Done(request_id=message.request_id)
            await self._close(message.call_id, hosted)
            return Done(request_id=message.request_id)

    async def _open(self, message: OpenMedia) -> ControlMessage:
        if self._pipeline is None:
            raise RuntimeError("the worker got no Configure message")
        call_id = message.call_id
        media = CallMedia(self._pipeline, on_event=lambda event: self._event(call_id, event))
        hosted = self.calls.setdefault(call_id, _Hosted(media))
        if hosted.media is not media:
            raise RuntimeError("the call is open already")
        try:
            async with hosted.lock:
                await media.open()
        except BaseException:
            self.calls.pop(call_id, None)
            await media.aclose()
            raise
        return Opened(
            request_id=message.request_id, gateway_address=media.gateway_port.local_address
        )

    async def _close(self, call_id: str, hosted: _Hosted) -> None:
        await hosted.media.aclose()
        self.calls.pop(call_id, None)
        self.send(StatsPushed(call_id=call_id, snapshot=hosted.snapshot()))
        self._push_resources()

    def _event(self, call_id: str, event: MediaEvent) -> None:
        self.send(EventPushed(call_id=call_id, event=event))
        self.resources_soon()

    def resources_soon(self) -> None:
        """Push the resource counts once the current work is done (a leg came up or went:
        ``/metrics`` sees it without waiting for the next round)."""
        if not self._resources_due:
            self._resources_due = True
            asyncio.get_running_loop().call_soon(self._push_resources)

    def _push_resources(self) -> None:
        self._resources_due = False
        self.send(ResourcesPushed(resources=self.resources()))

    def resources(self) -> WorkerResources:
        """What this process holds now."""
        return WorkerResources.held_here(calls=len(self.calls))

    async def push_stats(self) -> None:
        """Every ``stats_interval``: each call's snapshot, then the resources."""
        while True:
            await asyncio.sleep(self.stats_interval)
            for call_id, hosted in list(self.calls.items()):
                self.send(StatsPushed(call_id=call_id, snapshot=hosted.snapshot()))
            self.send(ResourcesPushed(resources=self.resources()))

    async def aclose(self) -> None:
        """Close every call's media (the connection is gone)."""
        for task in list(self._tasks):
            task.cancel()
        for hosted in list(self.calls.values()):
            with contextlib.suppress(Exception):
                await hosted.media.aclose()
        self.calls.clear()


async def serve(sock: socket.socket) -> None:
    """Run requests from ``sock`` until it closes."""
    reader, writer = await asyncio.open_connection(sock=sock)
    worker = MediaWorker(writer)
    worker.resources_soon()  # "up": the plane's watchdog counts silence from here
    pusher = asyncio.get_running_loop().create_task(worker.push_stats(), name="stats")
    try:
        await read_messages(reader, worker.handle)
    except ControlProtocolError as exc:
        log.error("control connection lost: %s", exc)
    except ConnectionError:
        pass
    finally:
        pusher.cancel()
        await worker.aclose()
        writer.close()


def _die_with_parent(parent: int | None) -> None:
    """Ask Linux for SIGKILL when the parent process dies (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:  # it died before prctl took effect
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """``python -m bridge.media.worker --fd N [--log-level LEVEL]``."""
    parser = argparse.ArgumentParser(prog="bridge.media.worker")
    parser.add_argument("--fd", type=int, required=True, help="the control socket")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--parent", type=int, help="the bridge's pid (die with it)")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    for sig in (signal.SIGINT, signal.SIGTERM):  # the bridge stops its workers itself
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[worker {os.getpid()}]: %(message)s",
    )
    sock = socket.socket(fileno=args.fd)
    import uvloop

    uvloop.run(serve(sock))


if __name__ == "__main__":
    main()
