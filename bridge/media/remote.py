"""The signaling side of a media worker: a control channel and proxies of call media.

Theory of operation
-------------------
:class:`ControlChannel` is the thin asyncio adapter of one worker's control connection:
one pump task feeds :class:`~bridge.media.control.ControlDecoder` and dispatches, a
future per awaited request (with a timeout), and a registry of the calls it carries.
When the connection ends (the worker died or was stopped) every pending request fails
with :class:`~bridge.media.control.MediaWorkerLostError` and every call it carries is
told (:meth:`RemoteCallMedia.worker_lost`).

:class:`RemoteCallMedia`, :class:`RemoteWebRtcPort` and :class:`RemoteGatewayPort` have
the interface of :class:`~bridge.media.pipeline.CallMedia` and its ports, so the call
layer does not know where media runs:

* async methods (open, new browser leg, choose it, close) send a request and await its
  reply; a refusal is raised as the error the in-process object would raise
  (``OSError``, :class:`~bridge.media.webrtc_leg.WebRtcLegError`);
* sync methods (``apply``, ``close``, sending a digit) send a fire-and-forget message
  and keep what signaling reads back locally (the port's ``config``, the codec names and
  the mode follow from the configs signaling applied);
* sync reads (``stats``, ``leg_stats``, ``webrtc_facts``) return the snapshot the
  worker pushed last (about once a second, and at the call's close).

A lost worker becomes a :class:`~bridge.media.events.MediaWorkerLost` event: the call
ends with ``media-worker-lost``; closing its media afterwards is immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, replace

from sip_gateway.media.errors import LocalMediaError, MediaError
from sip_gateway.media.events import MediaStats
from sip_gateway.sdp import DtlsCrypto, Fingerprint, IceParameters, MediaConfig, SdesCrypto

from ._srtp_path import WebRtcLegStats
from .control import (
    ApplyGateway,
    ApplyWebRtc,
    ChooseWebRtc,
    CloseGateway,
    CloseMedia,
    CloseWebRtcPort,
    ControlMessage,
    ControlProtocolError,
    EventPushed,
    MediaSnapshot,
    MediaWorkerLostError,
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
from .events import MediaEvent, MediaMode, MediaWorkerLost, codec_label, deliver
from .pipeline import MediaCounters, MediaEventSink
from .webrtc_leg import DtlsFacts, WebRtcLegError

__all__ = ["ControlChannel", "RemoteCallMedia", "RemoteGatewayPort", "RemoteWebRtcPort"]

log = logging.getLogger("bridge.media")

REQUEST_TIMEOUT = 20.0
"""Seconds an awaited request may take (ICE gathering with STUN/TURN included)."""


class ControlChannel:
    """One worker's control connection (module docstring)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str = "media worker",
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.name = name
        self.request_timeout = request_timeout
        self.calls: dict[str, RemoteCallMedia] = {}
        self.resources = WorkerResources()
        """The worker's resource counts as last pushed."""
        self._reader, self._writer = reader, writer
        self._pending: dict[int, asyncio.Future[ControlMessage]] = {}
        self._ids = itertools.count(1)
        self._lost = False
        self.last_heard = asyncio.get_running_loop().time()
        """Loop time of the last message from the worker (it pushes at least every round)."""
        self.heard = False
        """Whether the worker has said anything yet (it pushes once it is up)."""
        self._pump = asyncio.get_running_loop().create_task(self._run(), name=f"{name} control")

    @property
    def alive(self) -> bool:
        """Whether the connection is still up."""
        return not self._lost

    def send(self, message: ControlMessage) -> None:
        """Send a fire-and-forget message (dropped once the worker is lost)."""
        if not self._lost:
            self._writer.write(encode(message))

    def next_id(self) -> int:
        """A fresh request id."""
        return next(self._ids)

    async def request(self, message: ControlMessage, request_id: int) -> ControlMessage:
        """Send ``message`` (whose id is ``request_id``) and await its reply.

        Raises:
            MediaWorkerLostError: the worker is gone or did not answer in time.
        """
        if self._lost:
            raise MediaWorkerLostError(f"{self.name} is lost")
        future: asyncio.Future[ControlMessage] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(encode(message))
            async with asyncio.timeout(self.request_timeout):
                return await future
        except TimeoutError:
            raise MediaWorkerLostError(
                f"{self.name} did not answer {type(message).__name__} in time"
            ) from None
        finally:
            self._pending.pop(request_id, None)

    async def _run(self) -> None:
        try:
            await read_messages(self._reader, self._dispatch)
        except ControlProtocolError as exc:
            log.error("%s: control connection broken: %s", self.name, exc)
        except (ConnectionError, OSError):
            pass
        finally:
            self._lose()

    def _dispatch(self, message: ControlMessage) -> None:
        self.last_heard, self.heard = asyncio.get_running_loop().time(), True
        if isinstance(message, EventPushed | StatsPushed):
            media = self.calls.get(message.call_id)
            if media is not None:
                media.pushed(message)
        elif isinstance(message, ResourcesPushed):
            self.resources = message.resources
        else:
            request_id = getattr(message, "request_id", None)
            future = self._pending.get(request_id) if isinstance(request_id, int) else None
            if future is not None and not future.done():
                future.set_result(message)

    def _lose(self) -> None:
        """The connection ended: fail what waits, tell every call."""
        if self._lost:
            return
        self._lost = True
        self.resources = WorkerResources()
        self._writer.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(MediaWorkerLostError(f"{self.name} is lost"))
        self._pending.clear()
        for media in list(self.calls.values()):
            media.worker_lost()

    async def wait_lost(self) -> None:
        """Return once the connection has ended."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._pump)

    async def aclose(self) -> None:
        """Close the connection (the worker exits) and wait for the pump."""
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump


@dataclass(frozen=True, slots=True)
class RemoteLeg:
    """What signaling reads of a worker's browser leg (our certificate's fingerprints)."""

    fingerprints: tuple[Fingerprint, ...]


class RemoteWebRtcPort:
    """A browser leg in a worker (the trunk ``MediaPort`` and ``IcePort`` protocols)."""

    def __init__(self, media: RemoteCallMedia, made: WebRtcPortMade, *, controlling: bool) -> None:
        self._media = media
        self.port_id = made.port_id
        self.leg = RemoteLeg(made.fingerprints)
        self.controlling = controlling
        self.config: MediaConfig | None = None
        self._local_address = made.local_address
        self._local_ice = made.local_ice
        self._closed = False

    @property
    def local_address(self) -> tuple[str, int]:
        """The default candidate's address (``c=`` and ``m=``)."""
        return self._local_address

    @property
    def local_ice(self) -> IceParameters:
        """Our ICE credentials and host candidates."""
        return self._local_ice

    def apply(self, config: MediaConfig) -> None:
        """Start ICE and DTLS with the browser (first call) or update the codecs.

        Raises:
            MediaError: the config is not DTLS-SRTP.
        """
        if not isinstance(config.crypto, DtlsCrypto):
            raise MediaError("the browser leg needs DTLS-SRTP")
        self.config = config
        if self._media.webrtc_port is self:
            self._media.use_webrtc_config(config)
        self._media.channel.send(
            ApplyWebRtc(call_id=self._media.call_id, port_id=self.port_id, config=config)
        )

    def close(self) -> None:
        """Stop the connect attempt (the leg closes with the call's media)."""
        if not self._closed:
            self._closed = True
            self._media.channel.send(
                CloseWebRtcPort(call_id=self._media.call_id, port_id=self.port_id)
            )


class RemoteGatewayPort:
    """The gateway leg's SDES-SRTP port in a worker (the trunk ``MediaPort`` protocol)."""

    def __init__(self, media: RemoteCallMedia, local_address: tuple[str, int]) -> None:
        self._media = media
        self._local_address = local_address
        self.config: MediaConfig | None = None
        """The configuration in force, None before the first :meth:`apply`."""
        self._closed = False

    @property
    def local_address(self) -> tuple[str, int]:
        """Our RTP address and port, announced in our SDP."""
        return self._local_address

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def apply(self, config: MediaConfig) -> None:
        """Start media with the negotiated configuration, or update it.

        Raises:
            LocalMediaError: the port is closed, or the config is not SDES-keyed.
        """
        if self._closed:
            raise LocalMediaError("media port is closed")
        if not isinstance(config.crypto, SdesCrypto):
            raise LocalMediaError("the gateway leg needs SDES-SRTP")
        self.config = config
        self._media.channel.send(ApplyGateway(call_id=self._media.call_id, config=config))

    def close(self) -> None:
        """Stop media and drop the keys (idempotent)."""
        if not self._closed:
            self._closed = True
            self._media.channel.send(CloseGateway(call_id=self._media.call_id))

    def stats(self) -> MediaStats:
        """The session counters as last pushed."""
        return self._media.snapshot.gateway or MediaStats()


class RemoteCallMedia:
    """A call's media in a worker, with :class:`~bridge.media.pipeline.CallMedia`'s
    interface (module docstring)."""

    def __init__(
        self, channel: ControlChannel, call_id: str, on_event: MediaEventSink | None = None
    ) -> None:
        self.channel = channel
        self.call_id = call_id
        self.on_event: MediaEventSink | None = on_event
        self.snapshot = MediaSnapshot(counters=MediaCounters())
        self.mode: MediaMode | None = None
        self.webrtc_codec: str | None = None
        self.gateway_codec: str | None = None
        self._webrtc: RemoteWebRtcPort | None = None
        self._gateway: RemoteGatewayPort | None = None
        self._closed = False
        self._lost = not channel.alive
        channel.calls[call_id] = self

    async def _ask(self, message: ControlMessage, request_id: int) -> ControlMessage:
        reply = await self.channel.request(message, request_id)
        if isinstance(reply, Refused):
            if reply.kind == "webrtc":
                raise WebRtcLegError(reply.reason, reply.detail)
            if reply.kind == "os":
                raise OSError(f"media worker: {reply.detail}")
            raise MediaWorkerLostError(f"media worker refused: {reply.reason} {reply.detail}")
        return reply

    async def open(self) -> None:
        """Bind the gateway leg's sockets in the worker.

        Raises:
            OSError: no gateway media port could be bound, or the worker is lost
                (:class:`~bridge.media.control.MediaWorkerLostError`).
        """
        request_id = self.channel.next_id()
        reply = await self._ask(OpenMedia(request_id=request_id, call_id=self.call_id), request_id)
        assert isinstance(reply, Opened)
        self._gateway = RemoteGatewayPort(self, reply.gateway_address)

    async def new_webrtc_port(self, *, controlling: bool) -> RemoteWebRtcPort:
        """Gather candidates for one browser leg in the worker.

        Raises:
            WebRtcLegError: ICE gathering failed.
            MediaWorkerLostError: the worker is lost (an ``OSError``).
        """
        request_id = self.channel.next_id()
        message = NewWebRtcPort(
            request_id=request_id, call_id=self.call_id, controlling=controlling
        )
        reply = await self._ask(message, request_id)
        assert isinstance(reply, WebRtcPortMade)
        port = RemoteWebRtcPort(self, reply, controlling=controlling)
        if self._webrtc is None and not controlling:
            self._webrtc = port
        return port

    async def choose_webrtc(self, port: RemoteWebRtcPort) -> None:
        """The browser leg that answered: the worker closes every other one."""
        self._webrtc = port
        if port.config is not None:
            self.use_webrtc_config(port.config)
        request_id = self.channel.next_id()
        message = ChooseWebRtc(request_id=request_id, call_id=self.call_id, port_id=port.port_id)
        with contextlib.suppress(MediaWorkerLostError):  # the lost event ends the call
            await self._ask(message, request_id)

    def browser_connected(self, port: RemoteWebRtcPort) -> None:
        """Nothing to do here: the worker switches its audio path itself."""

    @property
    def webrtc_port(self) -> RemoteWebRtcPort | None:
        """The browser leg's media port in use (None until one is chosen)."""
        return self._webrtc

    @property
    def gateway_port(self) -> RemoteGatewayPort:
        """The gateway leg's media port."""
        assert self._gateway is not None, "RemoteCallMedia.open() first"
        return self._gateway

    def emit(self, event: MediaEvent) -> None:
        """Report ``event`` to the call (never raises)."""
        deliver(self.on_event, event)

    def use_webrtc_config(self, config: MediaConfig) -> None:
        """Note the browser leg's codec and mode (the worker sets its path up itself)."""
        codec = config.codecs[0]
        self.webrtc_codec = codec_label(codec)
        opus = codec.name.lower() == "opus"
        self.mode = MediaMode.TRANSCODE if opus else MediaMode.RELAY

    def gateway_config_applied(self, config: MediaConfig) -> None:
        """Note the gateway leg's codec (for the record)."""
        if isinstance(config.crypto, SdesCrypto):
            codec = config.codecs[0]
            self.gateway_codec = f"{codec.name}/{codec.clock_rate}"

    def send_digit_to_gateway(self, digit: str, duration_ms: int = 100, *, via: str) -> None:
        """Send a browser's digit to the carrier as RFC 4733 (from RTP or SIP INFO)."""
        self.channel.send(
            SendDigit(call_id=self.call_id, digit=digit, duration_ms=duration_ms, via=via)
        )

    # -- what the worker pushes -----------------------------------------------------------

    def pushed(self, message: EventPushed | StatsPushed) -> None:
        """An event or a snapshot of this call from the worker."""
        if isinstance(message, StatsPushed):
            snapshot = message.snapshot
            if snapshot.facts is None and self.snapshot.facts is not None:
                snapshot = replace(snapshot, facts=self.snapshot.facts)  # unchanged since
            self.snapshot = snapshot
        else:
            self.emit(message.event)

    def worker_lost(self) -> None:
        """The worker died: the call must end (``media-worker-lost``)."""
        if self._lost or self._closed:
            return
        self._lost = True
        self.emit(MediaWorkerLost(leg="worker", reason=f"{self.channel.name} lost"))

    def stats(self) -> MediaCounters:
        """The pipeline's counters as last pushed."""
        return replace(self.snapshot.counters)

    def leg_stats(self) -> tuple[WebRtcLegStats | None, MediaStats | None]:
        """Both legs' counters as last pushed."""
        return self.snapshot.webrtc, self.snapshot.gateway

    def webrtc_facts(self) -> DtlsFacts | None:
        """The browser leg's DTLS facts as last pushed."""
        return self.snapshot.facts

    async def aclose(self) -> None:
        """Close both legs in the worker (idempotent; at once when the worker is lost)."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._lost and self.channel.alive:
                request_id = self.channel.next_id()
                message = CloseMedia(request_id=request_id, call_id=self.call_id)
                with contextlib.suppress(MediaWorkerLostError):
                    await self.channel.request(message, request_id)
        finally:
            self.channel.calls.pop(self.call_id, None)
