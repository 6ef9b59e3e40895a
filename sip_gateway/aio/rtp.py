"""The asyncio adapter of one media leg: UDP sockets around a sans-IO MediaSession.

Theory of operation
-------------------
:class:`MediaSocket` binds the UDP port of one call leg (and ``port + 1`` for RTCP when
rtcp-mux is off) on a given address, from a configured range or an ephemeral port.
:class:`MediaEndpoint` runs one :class:`~sip_gateway.media.session.MediaSession` on it,
thin like :class:`~sip_gateway.aio.endpoint.SipEndpoint`:

* one pump: every datagram goes to ``session.receive_datagram(data, source, now)``;
* one timer: a ``loop.call_at`` handle at ``session.get_timer()``; when it fires, the
  audio source callback is asked for one PCM frame per due ptime tick
  (``session.ticks_due(now)``), then ``session.handle_timer(now)`` runs;
* after each of those, ``session.datagrams_to_send()`` goes out (RTCP from the RTCP
  socket when it is separate, told apart by the RFC 5761 packet-type range) and each
  ``session.next_event()`` goes to the events callback. RTP leaves through the bound
  socket's own ``sendto`` (not the transport's Python method); a send the kernel
  refuses, a full buffer included, is dropped and counted in ``send_errors``.

A cut-through session (``MediaSession(cut_through=True)``) has no ticks: nothing is
pulled from the audio source; :meth:`MediaEndpoint.send_audio` hands a frame to the
session and sends its packet at once, and the timer only serves the session's digit,
comfort-silence and RTCP deadlines. While audio flows, each frame moves the
comfort-silence deadline on, so the timer is re-armed per frame (a ``call_at``; measured
with 20 calls: no CPU difference from not re-arming at all) rather than lazily, which
wakes the loop once per ptime per call (measured, interleaved runs: about 0.7 ms more CPU
per call-second).

Every media decision (SRTP, latching, comfort silence, RTCP timing, DTMF) is made by
the session; ``loop.time()`` is read only here. Callbacks are synchronous and must not
block; an exception in one is logged and the media goes on. Logs go to the
``sip_gateway.aio.rtp`` logger and never contain payloads or keys.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from sip_gateway.media.rtp import is_rtcp

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from sip_gateway.media.events import MediaEvent
    from sip_gateway.media.session import MediaSession
    from sip_gateway.sdp.media_config import MediaConfig

__all__ = ["AudioSource", "EventSink", "MediaEndpoint", "MediaSocket", "open_media_sockets"]

logger = logging.getLogger("sip_gateway.aio.rtp")

Address = tuple[str, int]
AudioSource = Callable[[], "npt.NDArray[np.int16] | None"]
"""Called once per ptime tick for the next PCM frame to send (None: nothing, send silence)."""
EventSink = Callable[["MediaEvent"], None]
"""Called with every event of the session, in order."""
_P = ParamSpec("_P")
_R = TypeVar("_R")
MAX_CATCH_UP_TICKS = 10
"""At most this many audio frames are pulled at once after the loop was late."""


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.owner: MediaSocket | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        owner = self.owner  # the per-packet path: counted and handed on right here
        if owner is not None:
            owner.received += 1
            handler = owner._handler
            if handler is not None:  # (host, port); IPv6 adds flowinfo and scope id
                source = addr if len(addr) == 2 else addr[:2]
                handler(data, source)  # type: ignore[arg-type]  # (str, int) from asyncio

    def error_received(self, exc: Exception) -> None:
        if self.owner is not None:  # ICMP unreachable and the like: UDP goes on
            self.owner.send_errors += 1


_SOCKETS: weakref.WeakSet[MediaSocket] = weakref.WeakSet()


def open_media_sockets() -> int:
    """UDP sockets of the process's media sockets not yet closed (for ``/metrics``)."""
    count = 0
    for media_socket in list(_SOCKETS):
        count += sum(
            1
            for transport in (media_socket._rtp, media_socket._rtcp)
            if transport is not None and not transport.is_closing()
        )
    return count


class MediaSocket:
    """The bound UDP socket(s) of one media leg.

    Attributes:
        host: the bound address.
        port: the RTP port (announced in the SDP ``m=`` line).
        rtcp_port: the RTCP port (``port`` with rtcp-mux, else ``port + 1``).
        received: datagrams read, both sockets.
        send_errors: errors the OS reported for sends (ICMP unreachable ...).
    """

    def __init__(
        self,
        host: str,
        rtp: asyncio.DatagramTransport,
        rtcp: asyncio.DatagramTransport | None,
        *,
        rtp_socket: socket.socket | None = None,
    ) -> None:
        """Use :meth:`open` (``rtp_socket``: the socket under ``rtp``, for direct sends)."""
        self.host = host
        self._rtp = rtp
        self._rtcp = rtcp
        self.port = int(rtp.get_extra_info("sockname")[1])
        self.rtcp_port = self.port if rtcp is None else int(rtcp.get_extra_info("sockname")[1])
        self.received = 0
        self.send_errors = 0
        self._handler: Callable[[bytes, Address], None] | None = None
        self.send_rtp: Callable[[bytes, Address], object] = (
            rtp.sendto if rtp_socket is None else rtp_socket.sendto
        )
        """``sendto`` of the RTP socket: the per-packet path, valid until :meth:`close`
        (then it drops). The socket's own method, not the transport's: it may raise
        ``OSError`` (a full send buffer included), which the caller counts and drops."""
        _SOCKETS.add(self)

    @classmethod
    async def open(
        cls,
        host: str,
        *,
        port: int = 0,
        port_range: tuple[int, int] | None = None,
        rtcp_mux: bool = True,
    ) -> MediaSocket:
        """Bind the RTP socket (and the RTCP one on ``port + 1`` unless ``rtcp_mux``).

        Args:
            host: an IP address literal to bind (``127.0.0.1``, ``::1`` ...).
            port: a fixed RTP port, or 0 for any free one (ignored with ``port_range``).
            port_range: inclusive ``(low, high)``: an even free port is taken from it,
                starting at a random offset.
            rtcp_mux: one socket for RTP and RTCP (RFC 5761); else two adjacent ones.

        Raises:
            OSError: the port is taken, or nothing free in ``port_range``.
        """
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        for candidate in _candidates(port, port_range):
            try:
                socks = _bind(family, host, candidate, rtcp_mux)
            except OSError:
                if candidate == port and port_range is None and port != 0:
                    raise
                continue
            return await cls._wrap(host, socks)
        raise OSError(f"no free media port on {host} in {port_range}")

    @classmethod
    async def _wrap(cls, host: str, socks: list[socket.socket]) -> MediaSocket:
        loop = asyncio.get_running_loop()
        endpoints: list[tuple[asyncio.DatagramTransport, _UdpProtocol]] = []
        try:
            for sock in socks:
                endpoints.append(await loop.create_datagram_endpoint(_UdpProtocol, sock=sock))
        except BaseException:
            for transport, _ in endpoints:
                transport.close()
            for sock in socks[len(endpoints) :]:
                sock.close()
            raise
        rtcp = endpoints[1][0] if len(endpoints) == 2 else None
        media = cls(host, endpoints[0][0], rtcp, rtp_socket=socks[0])
        for _, protocol in endpoints:
            protocol.owner = media
        return media

    @property
    def rtcp_mux(self) -> bool:
        """Whether RTP and RTCP share one socket."""
        return self._rtcp is None

    def attach(self, handler: Callable[[bytes, Address], None] | None) -> None:
        """Deliver every datagram (either socket) to ``handler``; None drops them."""
        self._handler = handler

    def send(self, data: bytes, address: Address, *, rtcp: bool = False) -> None:
        """Send one datagram from the RTP socket (or the RTCP one, if separate and ``rtcp``)."""
        transport = self._rtcp if rtcp and self._rtcp is not None else self._rtp
        if not transport.is_closing():
            transport.sendto(data, address)

    def close(self) -> None:
        """Close the socket(s). Idempotent."""
        self._handler = None
        self.send_rtp = _dropped  # the socket object may outlive its descriptor
        self._rtp.close()
        if self._rtcp is not None:
            self._rtcp.close()


def _dropped(data: bytes, address: Address) -> None:
    """``MediaSocket.send_rtp`` once closed."""


def _candidates(port: int, port_range: tuple[int, int] | None) -> list[int]:
    if port_range is None:
        return [port] if port else [0] * 20  # ephemeral: retry when port + 1 is taken
    low, high = port_range
    evens = list(range(low + low % 2, high + 1, 2))
    if not evens:
        raise OSError(f"empty media port range {port_range}")
    start = secrets.randbelow(len(evens))
    return evens[start:] + evens[:start]


def _bind(family: int, host: str, port: int, rtcp_mux: bool) -> list[socket.socket]:
    rtp = socket.socket(family, socket.SOCK_DGRAM)
    try:
        rtp.bind((host, port))
        if rtcp_mux:
            return [rtp]
        rtp_port = rtp.getsockname()[1]
        rtcp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtcp.bind((host, rtp_port + 1))
        except OSError:
            rtcp.close()
            raise
    except OSError:
        rtp.close()
        raise
    return [rtp, rtcp]


class MediaEndpoint:
    """Runs one MediaSession on a MediaSocket (see the module docstring).

    Args:
        session: the sans-IO media session (not yet started).
        media_socket: the bound socket(s); the endpoint owns them from now on.
        audio_source: called once per ptime tick for the next frame to send.
        on_event: called with every session event.
    """

    def __init__(
        self,
        session: MediaSession,
        media_socket: MediaSocket,
        *,
        audio_source: AudioSource | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.session = session
        self.socket = media_socket
        self._audio_source = audio_source
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        # the loop's clock for the per-packet paths: time.monotonic itself when the loop's
        # time() is asyncio's (it is that), saving a Python call per packet
        base_time = asyncio.BaseEventLoop.time
        self._now = time.monotonic if type(self._loop).time is base_time else self._loop.time
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._separate_rtcp = False  # RTCP leaves from its own socket: set when started

    def start(self) -> None:
        """Start sending and receiving (the session's clock starts now)."""
        now = self._loop.time()
        self.session.start(now, unix_offset=time.time() - now)
        self.socket.attach(self._datagram_received)
        self._use_config()
        self._flush()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def send_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        """Cut-through: send ``pcm`` now (see ``MediaSession.send_audio_now``).

        Raises:
            LocalMediaError: not ``int16`` audio, or the session is not cut-through.
        """
        if not self._closed:
            self.session.send_audio_now(pcm, self._now())
            self._flush()

    def send_payload(self, payload: bytes, codec: str) -> None:
        """Cut-through: send G.711 codes now (see ``MediaSession.send_payload_now``).

        Raises:
            LocalMediaError: the session is not cut-through.
        """
        if not self._closed:
            self.session.send_payload_now(payload, codec, self._now())
            self._flush()

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Queue an RFC 4733 digit (see ``MediaSession.send_dtmf``)."""
        self.session.send_dtmf(digit, self._loop.time(), duration_ms=duration_ms)
        self._flush()

    def update(self, config: MediaConfig) -> None:
        """Apply a re-negotiated configuration (re-INVITE)."""
        self.session.update(config, self._loop.time())
        self._use_config()
        self._flush()

    def _use_config(self) -> None:
        self._separate_rtcp = not self.socket.rtcp_mux and not self.session.config.rtcp_mux

    def close(self) -> None:
        """Send what the session has left (its RTCP BYE) and close the socket(s)."""
        if self._closed:
            return
        self._closed = True
        self.session.close(self._loop.time())
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.socket.close()

    def _datagram_received(self, data: bytes, source: Address) -> None:
        session = self.session
        try:
            session.receive_datagram(data, source, self._now())
        except Exception:  # only a payload sink raises
            logger.exception("media callback failed (port %d)", self.socket.port)
        if session.pending:  # a relay's payload went to its sink: often nothing is
            self._flush(rearm=False)  # what comes in never moves the session's timer

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        if self._closed:
            return
        now = self._loop.time()
        if self._audio_source is not None:
            for _ in range(min(self.session.ticks_due(now), MAX_CATCH_UP_TICKS)):
                frame = self._call(self._audio_source)
                if frame is not None:
                    self.session.send_audio(frame, now)
        self.session.handle_timer(now)
        self._flush()

    def _flush(self, *, rearm: bool = True) -> None:
        """Send the session's datagrams, deliver its events, re-arm its timer.

        The per-packet path (every datagram in, every frame out): kept flat.
        """
        session = self.session
        datagrams = session.datagrams_to_send()
        if datagrams:
            if self._closed or self._separate_rtcp:
                send = self.socket.send
                separate = self._separate_rtcp
                for data, address in datagrams:
                    send(data, address, rtcp=separate and is_rtcp(data))
            else:
                sendto = self.socket.send_rtp
                for data, address in datagrams:
                    try:
                        sendto(data, address)
                    except OSError:  # a full send buffer too: dropped, as UDP would
                        self.socket.send_errors += 1
        on_event = self._on_event
        while (event := session.next_event()) is not None:
            if on_event is not None:
                try:
                    on_event(event)
                except Exception:
                    logger.exception("media callback failed (port %d)", self.socket.port)
        if self._closed or not rearm:
            return
        when = session.get_timer()  # _arm, inlined
        if when != self._timer_at:
            self._arm(when)

    def _arm(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = None if when is None else self._loop.call_at(when, self._on_timer)

    def _call(self, func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R | None:
        try:
            return func(*args, **kwargs)
        except Exception:
            logger.exception("media callback failed (port %d)", self.socket.port)
            return None
