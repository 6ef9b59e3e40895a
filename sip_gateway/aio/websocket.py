"""SIP over WebSocket (RFC 7118) on aiohttp: the route handler for browsers (JsSIP).

Theory of operation
-------------------
:class:`SipWebSocketService` is an aiohttp request handler for a route such as ``/sip``. It
accepts a WebSocket upgrade only when the client offers the ``sip`` subprotocol (RFC 7118
section 4; anything else gets ``400``), then runs one
:class:`~sip_gateway.aio.endpoint.SipEndpoint` over a :class:`WebSocketWire` for as long as
the socket lives. The request handler's own task is the read pump. Before the upgrade a
session must get a slot from the service's
:class:`~sip_gateway.aio.admission.ConnectionLimits` (per source address and in total);
one that does not gets ``503`` with ``Retry-After`` and is counted.

Framing is the WebSocket's: one SIP message per WebSocket message, text or binary
(RFC 7118 section 5); a message is sent as text when it is valid UTF-8, else as binary. The
Via transport is ``WSS`` (``WS`` only when TLS ends in front of us, at a proxy), and the
TLS facts come from the live ``ssl_object`` of the request's transport. aiohttp refuses a
WebSocket message above twice ``max_message_size`` by closing with 1009; smaller
oversize messages reach the core, which answers 513 and keeps the connection.

aiohttp's writes are coroutines, so the wire keeps a small outgoing queue and one sender
task; its size counts against ``max_write_buffer`` like a TLS transport's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal

from aiohttp import WSMsgType, web

from sip_gateway.tls import TlsSessionInfo, session_info

from .admission import ConnectionLimits, ConnectionLimitsConfig, QuietLog
from .endpoint import (
    SipEndpoint,
    SipEndpointConfig,
    SipHandler,
    certificate_names,
    format_address,
    socket_address,
)

__all__ = ["SIP_SUBPROTOCOL", "SipWebSocketService", "WebSocketWire", "sip_websocket_handler"]

logger = logging.getLogger("sip_gateway.aio")

SIP_SUBPROTOCOL = "sip"
"""The WebSocket subprotocol of RFC 7118 section 4."""

_WebSocket = web.WebSocketResponse[Literal[False]]
_DONE = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


class WebSocketWire:
    """The :class:`~sip_gateway.aio.endpoint.SipWire` of one SIP WebSocket."""

    stream = False

    def __init__(self, ws: _WebSocket, request: web.BaseRequest) -> None:
        self._ws = ws
        self._transport = request.transport
        extra = self._transport.get_extra_info if self._transport is not None else _no_info
        ssl_object: ssl.SSLObject | None = extra("ssl_object")
        self.transport = "WSS" if ssl_object is not None else "WS"
        self.peer = socket_address(extra("peername"))
        self.local = socket_address(extra("sockname"))
        self.tls: TlsSessionInfo | None = session_info(ssl_object) if ssl_object else None
        self.peer_names = certificate_names(ssl_object)
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._more = asyncio.Event()
        self._closing = False
        self._sender = asyncio.create_task(self._send_all(), name=f"ws sender {self.peer}")

    async def read(self) -> bytes | None:
        """The next WebSocket message, None once the socket is closing.

        Raises:
            ConnectionError: the WebSocket failed (protocol error, message too big).
        """
        while True:
            msg = await self._ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data: bytes = msg.data
                return data
            if msg.type is WSMsgType.ERROR:
                raise ConnectionError(f"WebSocket error: {msg.data}")
            if msg.type in _DONE:
                return None

    def write(self, messages: list[bytes]) -> None:
        """Queue messages, one WebSocket message each."""
        if self._closing:
            return
        self._queue.extend(messages)
        self._queued += sum(len(message) for message in messages)
        self._more.set()

    def write_buffer_size(self) -> int:
        """Bytes queued here plus the transport's own buffer."""
        in_transport = self._transport.get_write_buffer_size() if self._transport else 0
        return self._queued + in_transport

    def close(self) -> None:
        """Send what is queued, then the WebSocket close handshake."""
        self._closing = True
        self._more.set()

    def abort(self) -> None:
        """Drop the queue and the connection."""
        self._closing = True
        self._queue.clear()
        self._sender.cancel()
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Return when the sender has finished (close handshake done or timed out)."""
        await asyncio.gather(self._sender, return_exceptions=True)

    async def _send_all(self) -> None:
        try:
            while not (self._closing and not self._queue):
                await self._more.wait()
                self._more.clear()
                while self._queue:
                    data = self._queue.popleft()
                    self._queued -= len(data)
                    await self._send(data)
        except ConnectionError as exc:
            logger.info("WebSocket %s: write failed: %s", format_address(self.peer), exc)
        with contextlib.suppress(ConnectionError):
            await self._ws.close()

    async def _send(self, data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            await self._ws.send_bytes(data)
        else:
            await self._ws.send_str(text)


def _no_info(name: str, default: Any = None) -> Any:
    return default


class SipWebSocketService:
    """The aiohttp handler of a SIP WebSocket route, and the registry of its endpoints.

    Args:
        handler: receives the events of every WebSocket connection.
        config: per-connection settings (keep-alive pings are never sent: browsers do).
        limits: per-source and total caps on WebSocket sessions (defaults when None).
    """

    def __init__(
        self,
        handler: SipHandler,
        *,
        config: SipEndpointConfig | None = None,
        limits: ConnectionLimitsConfig | None = None,
    ) -> None:
        self._handler = handler
        self._config = replace(config or SipEndpointConfig(), keepalive_interval=None)
        self._endpoints: set[SipEndpoint] = set()
        self.limits = ConnectionLimits(
            limits or ConnectionLimitsConfig(),
            "WSS",
            QuietLog(logger, time.monotonic),
        )
        """The session caps; ``limits.refusals`` counts refused sessions by limit."""
        self.closures: Counter[str] = Counter()
        """Sessions this side closed, by :attr:`SipEndpoint.close_reason` (metrics)."""

    @property
    def endpoints(self) -> frozenset[SipEndpoint]:
        """The live WebSocket connections."""
        return frozenset(self._endpoints)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Upgrade to a SIP WebSocket and run it until it closes.

        Returns:
            The WebSocket response, or ``400`` when the request is not a WebSocket upgrade
            offering the ``sip`` subprotocol.
        """
        ws: _WebSocket = web.WebSocketResponse(
            protocols=(SIP_SUBPROTOCOL,),
            max_msg_size=2 * self._config.max_message_size,
            timeout=self._config.close_timeout,
            decode_text=False,
        )
        ready = ws.can_prepare(request)
        if not ready.ok or ready.protocol != SIP_SUBPROTOCOL:
            logger.warning(
                "WebSocket from %s refused: %s",
                request.remote,
                "no 'sip' subprotocol offered" if ready.ok else "not a WebSocket upgrade",
            )
            return web.Response(status=400, text="SIP over WebSocket needs subprotocol 'sip'\n")
        source = request.remote or ""
        refused = self.limits.admit(source)
        if refused is not None:
            self.limits.refused(source, refused)
            return web.Response(
                status=503, headers={"Retry-After": "30"}, text="too many SIP WebSockets\n"
            )
        try:
            await ws.prepare(request)
            endpoint = SipEndpoint(WebSocketWire(ws, request), self._handler, self._config)
            logger.info(
                "SIP WebSocket from %s (%s)", format_address(endpoint.peer), endpoint.transport
            )
            self._endpoints.add(endpoint)
            try:
                await endpoint.run()
            finally:
                self._endpoints.discard(endpoint)
                if endpoint.close_reason is not None:
                    self.closures[endpoint.close_reason] += 1
        finally:
            self.limits.release(source)
        return ws

    def close(self) -> None:
        """Close every WebSocket connection."""
        for endpoint in self._endpoints:
            endpoint.close()

    async def on_shutdown(self, app: web.Application | None = None) -> None:
        """Close every connection and wait for them; fits ``app.on_shutdown``."""
        endpoints = list(self._endpoints)
        self.close()
        for endpoint in endpoints:
            await endpoint.wait_closed()


def sip_websocket_handler(
    handler: SipHandler, *, config: SipEndpointConfig | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler for a SIP WebSocket route (``app.router.add_get("/sip", ...)``).

    Use :class:`SipWebSocketService` directly to reach its endpoints or close them.
    """
    return SipWebSocketService(handler, config=config).handle
