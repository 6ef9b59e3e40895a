"""Connection caps and a handshake deadline for the HTTPS listener (aiohttp).

Theory of operation
-------------------
aiohttp's :class:`~aiohttp.web.TCPSite` accepts every TCP connection and gives a TLS
handshake 60 s. :class:`GuardedSite` listens the same way but with ``handshake_timeout``
and puts a thin :class:`_Guarded` protocol in front of aiohttp's request handler: when a
connection is established (after the TLS handshake) it asks the site's
:class:`~sip_gateway.aio.admission.ConnectionLimits` for a slot (per source address and in
total). A connection that gets none is aborted before aiohttp sees a byte, counted by limit
and logged (rate-limited); the slot of an admitted one is given back when it closes. Every
other protocol callback goes straight to aiohttp's handler.

SIP WebSocket sessions have their own, smaller per-source cap in
:class:`~sip_gateway.aio.websocket.SipWebSocketService`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sip_gateway.aio.admission import ConnectionLimits, ConnectionLimitsConfig, QuietLog

__all__ = ["GuardedSite", "HttpLimits"]

logger = logging.getLogger("bridge.web")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The HTTPS listener's bounds."""

    connections: ConnectionLimitsConfig
    """Connections held at once, per source address and in total."""
    handshake_timeout: float = 10.0
    """Seconds a TLS handshake may take."""


class _Guarded(asyncio.Protocol):
    """Admission in front of one aiohttp request handler."""

    def __init__(self, inner: Any, limits: ConnectionLimits) -> None:
        self._inner = inner
        self._limits = limits
        self._source: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refused = self._limits.admit(source)
        if refused is not None:
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            self._limits.refused(source, refused)
            return
        self._source = source
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._source is None:
            return
        self._limits.release(self._source)
        self._source = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._source is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._source is None:
            return None
        return bool(self._inner.eof_received())

    def pause_writing(self) -> None:
        if self._source is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._source is not None:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TLS :class:`~aiohttp.web.TCPSite` with connection caps and a handshake deadline.

    Args:
        runner: the set-up application runner.
        host: the address to bind.
        port: the port (0: any free one).
        ssl_context: the server TLS context.
        limits: the caps per source address and in total.
        handshake_timeout: seconds a TLS handshake may take.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        limits: ConnectionLimitsConfig,
        handshake_timeout: float,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.limits = ConnectionLimits(limits, "HTTPS", QuietLog(logger, time.monotonic))
        """The caps; ``limits.refusals`` counts refused connections by limit (metrics)."""
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        """Listen (called by ``await site.start()``)."""
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def guarded() -> asyncio.Protocol:
            return _Guarded(server(), self.limits)

        self._server = await loop.create_server(
            guarded,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=min(self.limits.config.max_connections, 1024),
            ssl_handshake_timeout=self._handshake_timeout,
        )
        self._bound_port = int(self._server.sockets[0].getsockname()[1])
