"""SIP over WebSocket as a client (RFC 7118) for the test browser: a ``SipWire`` on aiohttp.

Theory of operation: :class:`ClientWebSocketWire` is the client-side twin of
:class:`sip_gateway.aio.websocket.WebSocketWire`. A :class:`~sip_gateway.aio.SipEndpoint`
runs over it exactly as the bridge's endpoints do: one WebSocket message per SIP message
(sent as text), reads until the socket closes, a small outgoing queue drained by one
sender task (aiohttp's writes are coroutines). The TLS facts come from the live
``ssl_object``. :meth:`ClientWebSocketWire.send_raw` writes bytes that are not SIP, for
hostile-input tests. It stays in ``tests/``: the product never dials out over WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import aiohttp

from sip_gateway.aio.endpoint import socket_address
from sip_gateway.tls import TlsSessionInfo, session_info

__all__ = ["ClientWebSocketWire"]


class ClientWebSocketWire:
    """The :class:`~sip_gateway.aio.endpoint.SipWire` of a client SIP WebSocket (aiohttp)."""

    stream = False

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        ssl_object = ws.get_extra_info("ssl_object")
        self.transport = "WSS" if ssl_object is not None else "WS"
        self.peer = socket_address(ws.get_extra_info("peername"))
        self.local = socket_address(ws.get_extra_info("sockname"))
        self.tls: TlsSessionInfo | None = session_info(ssl_object) if ssl_object else None
        self.peer_names: frozenset[str] = frozenset()
        self._queue: deque[bytes] = deque()
        self._more = asyncio.Event()
        self._closing = False
        self._sender = asyncio.create_task(self._send_all(), name="client ws sender")

    async def read(self) -> bytes | None:
        """The next SIP message, None once the socket closes."""
        msg = await self._ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            return str(msg.data).encode()
        if msg.type is aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type is aiohttp.WSMsgType.ERROR:
            raise ConnectionError(f"WebSocket error: {msg.data}")
        return None

    def write(self, messages: list[bytes]) -> None:
        """Queue messages, one WebSocket message each."""
        if not self._closing:
            self._queue.extend(messages)
            self._more.set()

    def write_buffer_size(self) -> int:
        """Bytes queued."""
        return sum(len(m) for m in self._queue)

    def close(self) -> None:
        """Send what is queued, then close."""
        self._closing = True
        self._more.set()

    def abort(self) -> None:
        """Drop the queue and close at once."""
        self._closing = True
        self._queue.clear()
        self._more.set()

    async def wait_closed(self) -> None:
        """Wait for the sender (and the close handshake)."""
        await asyncio.gather(self._sender, return_exceptions=True)

    async def send_raw(self, data: bytes) -> None:
        """Send bytes that are not SIP (hostile-input tests)."""
        await self._ws.send_bytes(data)

    async def _send_all(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not (self._closing and not self._queue):
                await self._more.wait()
                self._more.clear()
                while self._queue:
                    await self._ws.send_str(self._queue.popleft().decode("utf-8", "replace"))
        with contextlib.suppress(ConnectionError, RuntimeError):
            async with asyncio.timeout(2):
                await self._ws.close()
