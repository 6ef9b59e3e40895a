"""SIP over TLS (RFC 3261 section 26, RFC 5630): the listener and the connector.

Theory of operation
-------------------
:class:`SipTlsServer` accepts TCP connections and runs the TLS handshake itself
(``StreamWriter.start_tls``), so that a handshake refused by policy (old protocol version,
no shared ECDHE+AEAD suite, missing or untrusted client certificate) or one that takes
longer than ``handshake_timeout`` is logged with the peer address and the reason, and only
that connection is dropped. Before the handshake a new connection must get a slot from
the listener's :class:`~sip_gateway.aio.admission.ConnectionLimits` (per source address and
in total); one that does not is aborted at once and counted. Each established connection
becomes a :class:`~sip_gateway.aio.endpoint.SipEndpoint` over a :class:`StreamWire`; when
it ends, the reason this side closed it (oversize message, slow message, ...) is counted
in :attr:`SipTlsServer.closures`.

:class:`SipTlsConnector` makes outbound connections and keeps one live connection per
(host, port, server name), so every request to a peer reuses it. It also adopts inbound
connections whose top Via carries ``alias`` (RFC 5923) when the peer's verified certificate
names the Via host (RFC 5923 section 9), so requests to that peer go back on the connection
it opened. Outbound connections send CRLF keep-alive pings when idle (RFC 5626 4.4.1).

The TLS contexts come from :mod:`sip_gateway.tls`; this module never builds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.events import RequestReceived, SipEvent
from sip_gateway.sip.headers import Via
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
from .errors import SipConnectError

__all__ = [
    "SipTlsConnector",
    "SipTlsServer",
    "StreamWire",
    "handshake_failure_kind",
    "handshake_failure_reason",
]

logger = logging.getLogger("sip_gateway.aio")

SIPS_PORT = 5061
"""Default port of SIP over TLS (RFC 3261 section 19.1.2)."""
_READ_SIZE = 65536

_HANDSHAKE_REASONS = {
    "UNSUPPORTED_PROTOCOL": "protocol version not allowed by policy (TLS 1.2-1.3 only)",
    "NO_PROTOCOLS_AVAILABLE": "protocol version not allowed by policy (TLS 1.2-1.3 only)",
    "NO_SHARED_CIPHER": "no shared cipher suite (policy: ECDHE with AEAD only)",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "client certificate required but none was sent",
    "CERTIFICATE_VERIFY_FAILED": "peer certificate not trusted",
    "WRONG_VERSION_NUMBER": "not a TLS handshake",
    "HTTP_REQUEST": "plain HTTP on a TLS port",
    "UNEXPECTED_EOF_WHILE_READING": "peer closed the connection during the handshake",
}


_HANDSHAKE_KINDS = {
    "UNSUPPORTED_PROTOCOL": "protocol-version",
    "NO_PROTOCOLS_AVAILABLE": "protocol-version",
    "NO_SHARED_CIPHER": "no-shared-cipher",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no-client-certificate",
    "CERTIFICATE_VERIFY_FAILED": "certificate-untrusted",
    "WRONG_VERSION_NUMBER": "not-tls",
    "HTTP_REQUEST": "not-tls",
    "UNEXPECTED_EOF_WHILE_READING": "closed-by-peer",
}


def handshake_failure_kind(exc: BaseException) -> str:
    """A short, bounded name for a failed TLS handshake (a metrics label)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate-untrusted"
    if isinstance(exc, ssl.SSLError):
        code = exc.reason or ""
        if code.startswith("TLSV1_ALERT_") or code.startswith("SSLV3_ALERT_"):
            return "alert-from-peer"
        return _HANDSHAKE_KINDS.get(code, "tls-error")
    if isinstance(exc, TimeoutError | ConnectionAbortedError):
        return "timeout"
    if isinstance(exc, ConnectionResetError):
        return "closed-by-peer"
    return "other"


def handshake_failure_reason(exc: BaseException) -> str:
    """A short, log-friendly reason for a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"peer certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        code = exc.reason or type(exc).__name__
        explained = _HANDSHAKE_REASONS.get(code)
        if explained is None and code.startswith("TLSV1_ALERT_"):
            explained = "alert from the peer: " + code.removeprefix("TLSV1_ALERT_").lower()
        return f"{explained or exc.strerror or 'TLS error'} ({code})"
    if isinstance(exc, TimeoutError | ConnectionAbortedError):
        return "handshake did not complete in time"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer (did it refuse our certificate?)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class StreamWire:
    """The :class:`~sip_gateway.aio.endpoint.SipWire` of a TLS byte stream."""

    stream = True

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        transport: str = "TLS",
        close_timeout: float = 2.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._close_timeout = close_timeout
        self._abort_handle: asyncio.TimerHandle | None = None
        self.transport = transport
        self.peer = socket_address(writer.get_extra_info("peername"))
        self.local = socket_address(writer.get_extra_info("sockname"))
        ssl_object: ssl.SSLObject | None = writer.get_extra_info("ssl_object")
        self.tls: TlsSessionInfo | None = session_info(ssl_object) if ssl_object else None
        self.peer_names = certificate_names(ssl_object)

    async def read(self) -> bytes | None:
        """The next bytes of the stream, None at end of stream."""
        data = await self._reader.read(_READ_SIZE)
        return data or None

    def write(self, messages: list[bytes]) -> None:
        """Write messages back to back (dropped once the transport is closing)."""
        if not self._writer.is_closing():
            self._writer.write(b"".join(messages))

    def write_buffer_size(self) -> int:
        """Bytes buffered in the transport (TLS records not yet sent)."""
        return self._writer.transport.get_write_buffer_size()

    def close(self) -> None:
        """Flush and close (sending close_notify); abort if that takes too long."""
        if self._abort_handle is not None:
            return
        self._writer.close()
        loop = asyncio.get_running_loop()
        self._abort_handle = loop.call_later(self._close_timeout, self.abort)

    def abort(self) -> None:
        """Drop the connection at once."""
        self._writer.transport.abort()

    async def wait_closed(self) -> None:
        """Return when the transport is closed, at most ``close_timeout`` after closing."""
        self.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        if self._abort_handle is not None:
            self._abort_handle.cancel()


def alias_target(via: Via, peer_names: frozenset[str]) -> tuple[str, int] | None:
    """Where an ``alias``-ed Via (RFC 5923) lets us send requests over its connection.

    Only a TLS Via whose sent-by host is named in the peer's verified certificate qualifies
    (RFC 5923 section 9); its port defaults to 5061.
    """
    if via.param("alias") is None or via.transport != "TLS":
        return None
    host = via.host.strip("[]").lower()
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    if host not in peer_names:
        return None
    return host, via.port or SIPS_PORT


class SipTlsConnector:
    """Outbound SIP-over-TLS connections, one live connection per peer.

    Args:
        handler: receives the events of every connection made here.
        ssl_context: default client context (from :func:`sip_gateway.tls.client_context`).
        config: per-connection settings; ``keepalive_interval`` applies to these
            connections.
    """

    def __init__(
        self,
        handler: SipHandler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        config: SipEndpointConfig | None = None,
    ) -> None:
        self._handler = handler
        self._ssl_context = ssl_context
        self._config = config or SipEndpointConfig()
        self._pool: dict[tuple[str, int, str], SipEndpoint] = {}
        self._dialing: dict[tuple[str, int, str], asyncio.Task[SipEndpoint]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dialed: set[SipEndpoint] = set()

    @property
    def endpoints(self) -> frozenset[SipEndpoint]:
        """Every live connection this connector made or adopted."""
        return frozenset(ep for ep in self._pool.values() if not ep.is_closing)

    async def connect(
        self,
        host: str,
        port: int = SIPS_PORT,
        *,
        server_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> SipEndpoint:
        """A live connection to ``host:port``, reused if there is one.

        Args:
            host: the address or name to connect to.
            port: the TLS port.
            server_hostname: the name the server certificate must carry; defaults to
                ``host`` (an IP address is matched against the IP SANs).
            ssl_context: overrides the connector's context for a new connection.

        Returns:
            The endpoint of the (new or reused) connection.

        Raises:
            SipConnectError: TCP connect or TLS handshake failed, or took longer than
                ``connect_timeout``.
        """
        key = (host.lower(), port, (server_hostname or host).lower())
        live = self._pool.get(key)
        if live is not None and not live.is_closing:
            return live
        task = self._dialing.get(key)
        if task is None:
            context = ssl_context or self._ssl_context
            if context is None:
                raise SipConnectError("no TLS context to connect with")
            task = asyncio.create_task(self._dial(key, context))
            self._dialing[key] = task
            task.add_done_callback(lambda t: self._dial_done(key, t))
        return await asyncio.shield(task)

    def adopt(self, endpoint: SipEndpoint, host: str, port: int) -> None:
        """Use an inbound connection for requests to ``host:port`` (RFC 5923 alias).

        A live connection already made to that peer is kept.
        """
        key = (host.lower(), port, host.lower())
        live = self._pool.get(key)
        if live is endpoint or (live is not None and not live.is_closing):
            return
        logger.info("reusing inbound connection %r for %s (alias)", endpoint, f"{host}:{port}")
        self._keep(key, endpoint)

    def close(self) -> None:
        """Close the connections made here and cancel every connection attempt.

        Adopted inbound connections belong to their listener and stay open.
        """
        for task in self._dialing.values():
            task.cancel()
        for endpoint in self._dialed:
            endpoint.close()

    async def wait_closed(self) -> None:
        """Wait until every connection made here has ended."""
        await asyncio.gather(*self._dialing.values(), *self._tasks, return_exceptions=True)

    async def __aenter__(self) -> SipTlsConnector:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    async def _dial(self, key: tuple[str, int, str], context: ssl.SSLContext) -> SipEndpoint:
        host, port, name = key
        target = f"{host}:{port}"
        try:
            async with asyncio.timeout(self._config.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=context,
                    server_hostname=name,
                    ssl_handshake_timeout=self._config.handshake_timeout,
                )
        except (OSError, TimeoutError) as exc:
            reason = handshake_failure_reason(exc)
            logger.warning("cannot connect to %s (%s): %s", target, name, reason)
            raise SipConnectError(f"cannot connect to {target}: {reason}") from exc
        wire = StreamWire(reader, writer, close_timeout=self._config.close_timeout)
        endpoint = SipEndpoint(wire, self._handler, self._config, keepalive=True)
        logger.info(
            "TLS connection to %s (%s %s)",
            target,
            wire.tls and wire.tls.version,
            wire.tls and wire.tls.cipher,
        )
        task = asyncio.create_task(endpoint.run(), name=f"{endpoint!r}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._dialed.add(endpoint)
        endpoint.closed.add_done_callback(lambda _: self._dialed.discard(endpoint))
        self._keep(key, endpoint)
        return endpoint

    def _dial_done(self, key: tuple[str, int, str], task: asyncio.Task[SipEndpoint]) -> None:
        if self._dialing.get(key) is task:
            del self._dialing[key]
        if not task.cancelled():
            task.exception()  # retrieved: every awaiting caller gets it too

    def _keep(self, key: tuple[str, int, str], endpoint: SipEndpoint) -> None:
        self._pool[key] = endpoint

        def forget(_: asyncio.Future[None]) -> None:
            if self._pool.get(key) is endpoint:
                del self._pool[key]

        endpoint.closed.add_done_callback(forget)


class SipTlsServer:
    """A SIP-over-TLS listener; start it with :meth:`start`."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        handler: SipHandler,
        config: SipEndpointConfig,
        connector: SipTlsConnector | None,
        limits: ConnectionLimitsConfig | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._handler = handler
        self._config = config
        self._connector = connector
        self._server: asyncio.Server | None = None
        self._endpoints: set[SipEndpoint] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handshaking: set[asyncio.StreamWriter] = set()
        self._sockets: tuple[tuple[str, int], ...] = ()
        self._closing = False
        self._quiet = QuietLog(logger, time.monotonic)
        self.handshake_refusals: Counter[str] = Counter()
        """Inbound TLS handshakes that failed, by :func:`handshake_failure_kind` (metrics)."""
        self.limits = ConnectionLimits(limits or ConnectionLimitsConfig(), "SIP-TLS", self._quiet)
        """The connection caps; ``limits.refusals`` counts refused connections by limit."""
        self.closures: Counter[str] = Counter()
        """Connections this side closed, by :attr:`SipEndpoint.close_reason` (metrics)."""

    @classmethod
    async def start(
        cls,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        handler: SipHandler,
        *,
        config: SipEndpointConfig | None = None,
        connector: SipTlsConnector | None = None,
        limits: ConnectionLimitsConfig | None = None,
    ) -> SipTlsServer:
        """Listen on ``host:port`` (port 0 picks a free one).

        Args:
            host: the address to bind.
            port: the TCP port; 0 lets the system choose (see :attr:`port`).
            ssl_context: the server context (from :func:`sip_gateway.tls.server_context`).
            handler: receives the events of every inbound connection.
            config: per-connection settings (keep-alive pings are never sent inbound).
            connector: when given, inbound connections with a Via ``alias`` are offered to
                it for reuse (RFC 5923).
            limits: per-source and total connection caps (defaults when None).

        Returns:
            The running listener.

        Raises:
            OSError: the address cannot be bound.
        """
        server = cls(ssl_context, handler, config or SipEndpointConfig(), connector, limits)
        backlog = min(server.limits.config.max_connections, 1024)  # bursts wait in the kernel
        server._server = await asyncio.start_server(server._accept, host, port, backlog=backlog)
        server._sockets = tuple(socket_address(s.getsockname()) for s in server._server.sockets)
        return server

    @property
    def sockets(self) -> tuple[tuple[str, int], ...]:
        """The bound (host, port) pairs."""
        return self._sockets

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self.sockets[0][1]

    @property
    def endpoints(self) -> frozenset[SipEndpoint]:
        """The live inbound connections."""
        return frozenset(self._endpoints)

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for endpoint in self._endpoints:
            endpoint.close()
        for writer in self._handshaking:
            writer.transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the listener and every connection have ended."""
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> SipTlsServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        source = socket_address(writer.get_extra_info("peername"))[0]
        refused = self.limits.admit(source)
        if refused is not None:
            writer.transport.abort()
            self._tasks.discard(task)
            self.limits.refused(source, refused)
            return
        try:
            if not await self._handshake(writer):
                return
            wire = StreamWire(reader, writer, close_timeout=self._config.close_timeout)
            config = replace(self._config, keepalive_interval=None)
            endpoint = SipEndpoint(wire, self._observe, config)
            self._endpoints.add(endpoint)
            tls = wire.tls
            logger.info(
                "TLS connection from %s (%s %s)",
                format_address(wire.peer),
                tls and tls.version,
                tls and tls.cipher,
            )
            try:
                await endpoint.run()
            finally:
                self._endpoints.discard(endpoint)
                if endpoint.close_reason is not None:
                    self.closures[endpoint.close_reason] += 1
        except asyncio.CancelledError:
            # Closing the server cancels this handler. asyncio's stream callback calls
            # exception() on the finished task, which logs a cancelled one as an error.
            return
        finally:
            writer.transport.abort()
            self._tasks.discard(task)
            self.limits.release(source)

    async def _handshake(self, writer: asyncio.StreamWriter) -> bool:
        peer = format_address(socket_address(writer.get_extra_info("peername")))
        self._handshaking.add(writer)
        try:
            await writer.start_tls(
                self._ssl_context, ssl_handshake_timeout=self._config.handshake_timeout
            )
        except (OSError, TimeoutError) as exc:
            if not self._closing:
                kind = handshake_failure_kind(exc)
                self.handshake_refusals[kind] += 1
                reason = handshake_failure_reason(exc)
                host = peer.rsplit(":", 1)[0]
                self._quiet.report(
                    f"handshake {kind} {host}", "TLS handshake with %s refused: %s", peer, reason
                )
            writer.transport.abort()
            return False
        finally:
            self._handshaking.discard(writer)
        return not self._closing

    def _observe(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        if self._connector is not None and isinstance(event, RequestReceived):
            with contextlib.suppress(RemoteProtocolError):
                target = alias_target(event.request.top_via, endpoint.peer_certificate_names)
                if target is not None:
                    self._connector.adopt(endpoint, *target)
        self._handler(endpoint, event)
