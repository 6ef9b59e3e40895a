"""The asyncio adapter of one SIP connection, whatever carries it (TLS stream or WebSocket).

Theory of operation
-------------------
A :class:`SipEndpoint` wraps one sans-IO :class:`~sip_gateway.sip.connection.SipConnection`
and one *wire*: a small object that reads and writes the bytes of a concrete transport
(:class:`SipWire`; ``stream.py`` has the TLS one, ``websocket.py`` the RFC 7118 one). The
endpoint is thin, like aioquic's ``QuicConnectionProtocol``:

* one read pump (:meth:`SipEndpoint.run`): wire bytes go into the connection, its events go
  to the user's :data:`SipHandler`, its output goes back to the wire;
* one timer task: it sleeps until ``conn.get_timer()`` (or the next keep-alive instant) and
  then calls ``conn.handle_timer(loop.time())``;
* futures for awaiting: :meth:`SipEndpoint.request` resolves on the final response of its
  client transaction, and :attr:`SipEndpoint.closed` when the connection is gone.

Every protocol decision (framing, validation, error responses, transactions, pongs) is made
by the sans-IO core. The endpoint owns only I/O policy: it closes the connection when the
core says the stream is unusable (``MessageRejected(fatal=True)``, after flushing the error
response), when the peer stops reading (the write buffer passes ``max_write_buffer``),
when a message takes longer than ``message_timeout`` to arrive (the first one counted from
the start of the connection, later ones from their first byte: a slow-loris peer) and, on
outbound connections, when a CRLF keep-alive ping (RFC 5626 4.4.1) gets no pong. Why it
closed is left in :attr:`SipEndpoint.close_reason` for the listener's counters.

The handler is synchronous and must not block; an exception in it is logged and the
connection carries on. Logs go to the ``sip_gateway.aio`` logger and name the peer address.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sip_gateway.sip.connection import SipConnection, SipConnectionConfig
from sip_gateway.sip.errors import LocalProtocolError
from sip_gateway.sip.events import (
    KeepAliveReceived,
    MessageRejected,
    ResponseReceived,
    SipEvent,
    TransactionTimedOut,
)
from sip_gateway.sip.headers import Via
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.transaction import MAGIC_COOKIE, TimerSettings
from sip_gateway.tls import TlsSessionInfo

from .errors import SipConnectionClosedError, SipRequestTimeoutError

__all__ = [
    "SipEndpoint",
    "SipEndpointConfig",
    "SipHandler",
    "SipWire",
    "certificate_names",
    "format_address",
    "socket_address",
]

logger = logging.getLogger("sip_gateway.aio")

SipHandler = Callable[["SipEndpoint", SipEvent], None]
"""Receives every event of an endpoint; synchronous, must not block, exceptions are logged."""


def _token() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True, slots=True, kw_only=True)
class SipEndpointConfig:
    """How the asyncio transports run their connections."""

    max_message_size: int = 65536
    """Largest SIP message accepted; a larger one gets 513 (and closes a TLS stream)."""
    max_write_buffer: int = 1 << 20
    """Bytes that may wait unsent for a peer; past this the peer is not reading and the
    connection is closed."""
    keepalive_interval: float | None = 90.0
    """Idle seconds before an outbound connection sends a CRLF ping (RFC 5626 4.4.1); None
    disables pings. Inbound connections never ping (their clients do)."""
    pong_timeout: float = 10.0
    """Seconds a ping may wait for its pong before the connection is declared dead."""
    handshake_timeout: float = 10.0
    """Upper bound of a TLS handshake, inbound and outbound."""
    message_timeout: float | None = None
    """Seconds a message may take to arrive whole (slow-loris bound), counted from its first
    byte, and for the first message of an inbound connection from its start; None: no
    bound."""
    connect_timeout: float = 10.0
    """Upper bound of a TCP connect plus TLS handshake of an outbound connection."""
    close_timeout: float = 2.0
    """Seconds a closing connection may spend flushing before it is aborted."""
    timers: TimerSettings = field(default_factory=TimerSettings)
    """RFC 3261 timer values for the transactions of every connection."""
    supported_extensions: frozenset[str] = frozenset()
    """Option tags we support; a request that requires another one gets 420."""
    branch_token: Callable[[], str] = _token
    """Source of the random part of Via branches (after ``z9hG4bK``); injected in tests."""


class SipWire(Protocol):
    """The bytes side of one connection, as the endpoint needs it."""

    transport: str
    """Via transport token: ``"TLS"``, ``"WSS"`` (or ``"WS"`` behind a TLS proxy)."""
    stream: bool
    """True for a byte stream (framed by Content-Length), False for one message per read."""
    peer: tuple[str, int]
    """The peer's address as the socket sees it."""
    local: tuple[str, int]
    """Our address of this connection."""
    tls: TlsSessionInfo | None
    """The negotiated TLS session, or None when the wire is not TLS."""
    peer_names: frozenset[str]
    """DNS names and IP addresses of the verified peer certificate (lowercase); empty when
    the peer presented none."""

    async def read(self) -> bytes | None:
        """The next bytes (stream) or message (WebSocket); None when the peer is gone.

        Raises:
            OSError: the transport failed (reset, TLS alert).
        """

    def write(self, messages: list[bytes]) -> None:
        """Queue whole messages (a stream writes them back to back)."""

    def write_buffer_size(self) -> int:
        """Bytes queued and not yet handed to the kernel."""

    def close(self) -> None:
        """Flush what is queued, then close (aborting after the close timeout); idempotent."""

    def abort(self) -> None:
        """Close at once, dropping what is queued."""

    async def wait_closed(self) -> None:
        """Return when the transport is closed."""


def format_address(address: tuple[str, int]) -> str:
    """``host:port`` with IPv6 hosts in brackets."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def socket_address(info: object) -> tuple[str, int]:
    """(host, port) of a ``peername``/``sockname`` extra info; ("", 0) when unknown."""
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return ("", 0)


def certificate_names(ssl_object: ssl.SSLObject | None) -> frozenset[str]:
    """Subject alternative names (DNS, IP; lowercase) of a verified peer certificate."""
    if ssl_object is None:
        return frozenset()
    cert = ssl_object.getpeercert()  # empty unless the chain was verified
    names = cert.get("subjectAltName", ()) if cert else ()
    found: set[str] = set()
    for entry in names:
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] in ("DNS", "IP Address"):
            found.add(str(entry[1]).lower())
    return frozenset(found)


class SipEndpoint:
    """One live SIP connection: send requests and responses, receive events.

    Create through :class:`~sip_gateway.aio.stream.SipTlsServer`,
    :class:`~sip_gateway.aio.stream.SipTlsConnector` or
    :func:`~sip_gateway.aio.websocket.sip_websocket_handler`; they run :meth:`run`.
    """

    def __init__(
        self,
        wire: SipWire,
        handler: SipHandler,
        config: SipEndpointConfig | None = None,
        *,
        keepalive: bool = False,
    ) -> None:
        self._wire = wire
        self._handler = handler
        self._config = config or SipEndpointConfig()
        self._keepalive = self._config.keepalive_interval if keepalive else None
        self._conn = SipConnection(
            SipConnectionConfig(
                transport=wire.transport,
                peer_host=wire.peer[0],
                peer_port=wire.peer[1],
                max_message_size=self._config.max_message_size,
                timers=self._config.timers,
                supported_extensions=self._config.supported_extensions,
            )
        )
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        """Resolves (with None) once the connection is gone and every waiter was failed."""
        self._pending: dict[str, asyncio.Future[SipResponse]] = {}
        self._wake = asyncio.Event()
        self._dispatching = False
        self._closing = False
        self._wire_closed = False
        self._last_activity = self._loop.time()
        self._pong_deadline: float | None = None
        self._message_since = None if keepalive else self._last_activity  # inbound: 1st message
        self.close_reason: str | None = None
        """Why this side closed the connection: ``"oversize"``, ``"message-timeout"``,
        ``"write-buffer"``, ``"keepalive"``, ``"protocol"``; None otherwise."""

    def __repr__(self) -> str:
        return f"<SipEndpoint {self._wire.transport} {format_address(self.peer)}>"

    # -- facts -----------------------------------------------------------------------

    @property
    def peer(self) -> tuple[str, int]:
        """The peer's (host, port) as the socket sees it."""
        return self._wire.peer

    @property
    def local(self) -> tuple[str, int]:
        """Our (host, port) of this connection."""
        return self._wire.local

    @property
    def transport(self) -> str:
        """The Via transport token: ``"TLS"`` or ``"WSS"``."""
        return self._wire.transport

    @property
    def tls(self) -> TlsSessionInfo | None:
        """The negotiated TLS session (for the call security record), or None."""
        return self._wire.tls

    @property
    def peer_certificate_names(self) -> frozenset[str]:
        """DNS names and IP addresses of the peer's verified certificate."""
        return self._wire.peer_names

    @property
    def is_closing(self) -> bool:
        """True once :meth:`close` was called or the connection failed."""
        return self._closing

    # -- building requests -----------------------------------------------------------

    def new_branch(self) -> str:
        """A fresh RFC 3261 branch: the magic cookie and an injected random token."""
        return MAGIC_COOKIE + self._config.branch_token()

    def make_via(self, branch: str | None = None) -> Via:
        """The Via of a request sent on this connection.

        It carries our address of the connection, the transport, ``rport`` (RFC 3581) and,
        on TLS, ``alias`` (RFC 5923) so the peer may send its requests back on it.

        Args:
            branch: the branch to use; None draws a fresh one (:meth:`new_branch`).
        """
        host, port = self.local
        params: list[tuple[str, str | None]] = [("branch", branch or self.new_branch())]
        params.append(("rport", None))
        if self.transport == "TLS":
            params.append(("alias", None))
        return Via(
            transport=self.transport,
            host=f"[{host}]" if ":" in host else host,
            port=port,
            params=tuple(params),
        )

    # -- sending ---------------------------------------------------------------------

    def send_request(self, request: SipRequest) -> str | None:
        """Send a request; all but ACK start a client transaction.

        Returns:
            The transaction id that its :class:`ResponseReceived` events carry, or None for
            an ACK.

        Raises:
            SipConnectionClosedError: the connection is closed or closing.
            LocalProtocolError: the core refused the request (e.g. a reused branch).
        """
        self._check_open()
        transaction_id = self._conn.send_request(request, self._loop.time())
        self._after_input()
        return transaction_id

    def send_response(self, transaction_id: str, response: SipResponse) -> None:
        """Answer a request received in :class:`RequestReceived`.

        Raises:
            SipConnectionClosedError: the connection is closed or closing.
            LocalProtocolError: no such transaction, or the response is not allowed now.
        """
        self._check_open()
        self._conn.send_response(transaction_id, response, self._loop.time())
        self._after_input()

    async def request(
        self,
        request: SipRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-request deadline, maps to 408
    ) -> SipResponse:
        """Send a request and wait for its final response.

        Provisional responses still go to the handler; the final one is returned here only.

        Args:
            request: any request but ACK.
            timeout: seconds to wait; None leaves it to the transaction (Timer B or F).

        Returns:
            The final (200-699) response.

        Raises:
            SipRequestTimeoutError: no final response within ``timeout`` or the transaction's own
                time-out.
            SipConnectionClosedError: the connection closed first.
            LocalProtocolError: ``request`` is an ACK or the core refused it.
        """
        if request.method == "ACK":
            raise LocalProtocolError("an ACK has no response to wait for")
        transaction_id = self.send_request(request)
        assert transaction_id is not None  # only ACK has none
        future: asyncio.Future[SipResponse] = self._loop.create_future()
        self._pending[transaction_id] = future
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await future
        except TimeoutError:
            if deadline.expired():
                raise SipRequestTimeoutError(
                    f"no final response to {request.method} from "
                    f"{format_address(self.peer)} within {timeout} s"
                ) from None
            raise
        finally:
            self._pending.pop(transaction_id, None)

    def send_keepalive(self) -> None:
        """Send a CRLF keep-alive ping now; a missing pong closes the connection.

        Raises:
            SipConnectionClosedError: the connection is closed or closing.
        """
        self._check_open()
        self._ping(self._loop.time())
        self._after_input()

    def close(self) -> None:
        """Flush what is queued and close the connection (idempotent)."""
        if self._closing:
            return
        self._closing = True
        self._flush()
        self._wire_closed = True
        self._wire.close()
        self._wake.set()

    async def wait_closed(self) -> None:
        """Return once the connection is gone (:attr:`closed` resolved)."""
        await asyncio.shield(self.closed)

    # -- the pump --------------------------------------------------------------------

    async def run(self) -> None:
        """Run the connection until it closes: the read pump plus the timer task.

        The transports call this; a TU never needs to.
        """
        timer = asyncio.create_task(self._run_timers(), name=f"{self!r} timers")
        try:
            await self._pump()
        finally:
            timer.cancel()
            self._finish()
            try:
                await asyncio.wait({timer})
                await self._wire.wait_closed()
            finally:
                if not self.closed.done():
                    self.closed.set_result(None)

    async def _pump(self) -> None:
        while True:
            try:
                data = await self._wire.read()
            except OSError as exc:
                if not self._closing:
                    logger.info("SIP connection %s failed: %s", format_address(self.peer), exc)
                return
            if data is None:
                if not self._closing:
                    logger.info("SIP connection %s closed by the peer", format_address(self.peer))
                return
            now = self._loop.time()
            self._last_activity = now
            if self._wire.stream:
                self._conn.receive_data(data, now)
            else:
                self._conn.receive_message(data, now)
            self._track_message(now)
            self._after_input()

    def _track_message(self, now: float) -> None:
        """Start or stop the clock of a message still arriving (slow-loris bound)."""
        if self._config.message_timeout is None:
            return
        if self._conn.buffered == 0:
            if self._message_since is not None:
                self._message_since = None
                self._wake.set()
        elif self._message_since is None:
            self._message_since = now
            self._wake.set()

    async def _run_timers(self) -> None:
        while True:
            self._wake.clear()
            deadline = self._next_deadline()
            delay = None if deadline is None else max(0.0, deadline - self._loop.time())
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
                continue
            except TimeoutError:
                pass
            self._on_timer(max(self._loop.time(), deadline or 0.0))

    def _next_deadline(self) -> float | None:
        if self._closing:
            return None
        deadlines = [self._conn.get_timer(), self._pong_deadline, self._message_deadline()]
        if self._keepalive is not None and self._pong_deadline is None:
            deadlines.append(self._last_activity + self._keepalive)
        return min((d for d in deadlines if d is not None), default=None)

    def _message_deadline(self) -> float | None:
        if self._message_since is None or self._config.message_timeout is None:
            return None
        return self._message_since + self._config.message_timeout

    def _on_timer(self, now: float) -> None:
        if self._closing:
            return
        deadline = self._message_deadline()
        if deadline is not None and now >= deadline:
            logger.warning(
                "no whole message from %s within %s s (%d bytes buffered); closing",
                format_address(self.peer),
                self._config.message_timeout,
                self._conn.buffered,
            )
            self.close_reason = "message-timeout"
            self.close()
            return
        timer = self._conn.get_timer()
        if timer is not None and timer <= now:
            self._conn.handle_timer(now)
        if self._pong_deadline is not None and now >= self._pong_deadline:
            logger.warning(
                "no keep-alive pong from %s within %s s; closing",
                format_address(self.peer),
                self._config.pong_timeout,
            )
            self.close_reason = "keepalive"
            self._after_input()
            self.close()
            return
        if self._keepalive is not None and now >= self._last_activity + self._keepalive:
            self._ping(now)
        self._after_input()

    def _ping(self, now: float) -> None:
        self._conn.send_keepalive()
        if self._pong_deadline is None:
            self._pong_deadline = now + self._config.pong_timeout

    # -- events and output -----------------------------------------------------------

    def _after_input(self) -> None:
        """Hand the core's events out, write its output, act on a fatal error.

        Not re-entrant: when the handler sends from inside an event, the nested call only
        writes the output; the outer loop hands out the remaining events one at a time, so
        a burst of requests in one read never nests handler calls.
        """
        if self._dispatching:
            self._flush()
            self._wake.set()
            return
        self._dispatching = True
        try:
            while (event := self._conn.next_event()) is not None:
                if not self._settle(event):
                    self._observe(event)
                    self._dispatch(event)
        finally:
            self._dispatching = False
        self._flush()
        if self._conn.closed and not self._closing:
            self.close()
        self._wake.set()

    def _settle(self, event: SipEvent) -> bool:
        """Resolve a :meth:`request` waiter; True when the event was its answer."""
        if isinstance(event, ResponseReceived):
            future = self._pending.get(event.transaction_id)
            if future is None or event.response.status_code < 200:
                return False
            if not future.done():
                future.set_result(event.response)
            return True
        if isinstance(event, TransactionTimedOut):
            future = self._pending.get(event.transaction_id)
            if future is None:
                return False
            if not future.done():
                future.set_exception(self._timeout_error(event))
            return True
        return False

    def _timeout_error(self, event: TransactionTimedOut) -> Exception:
        peer = format_address(self.peer)
        if event.timer == "transport":
            return SipConnectionClosedError(
                f"connection to {peer} closed before the final response"
            )
        return SipRequestTimeoutError(f"Timer {event.timer} fired: no final response from {peer}")

    def _observe(self, event: SipEvent) -> None:
        if isinstance(event, KeepAliveReceived) and not event.ping:
            self._pong_deadline = None
        elif isinstance(event, MessageRejected):
            if event.fatal and self.close_reason is None:
                self.close_reason = "oversize" if event.status_code == 513 else "protocol"
            logger.warning(
                "rejected a message from %s: %s %s (%s)%s",
                format_address(self.peer),
                event.status_code,
                event.reason,
                event.detail,
                "; closing the connection" if event.fatal else "",
            )

    def _dispatch(self, event: SipEvent) -> None:
        try:
            self._handler(self, event)
        except Exception:
            logger.exception(
                "SIP handler failed on %s from %s", type(event).__name__, format_address(self.peer)
            )

    def _flush(self) -> None:
        messages = self._conn.messages_to_send()
        if not messages or self._wire_closed:
            return
        self._wire.write(messages)
        self._last_activity = self._loop.time()
        buffered = self._wire.write_buffer_size()
        if buffered > self._config.max_write_buffer:
            logger.warning(
                "%s is not reading (%d bytes unsent, limit %d); closing",
                format_address(self.peer),
                buffered,
                self._config.max_write_buffer,
            )
            self.close_reason = "write-buffer"
            self._closing = self._wire_closed = True
            self._wire.abort()
            self._wake.set()

    def _finish(self) -> None:
        """The wire is gone: fail the core's transactions and every waiter."""
        self._closing = self._wire_closed = True
        self._conn.connection_lost(self._loop.time())
        self._after_input()
        peer = format_address(self.peer)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SipConnectionClosedError(f"connection to {peer} closed"))
        self._wire.close()  # idempotent; the wire aborts itself after close_timeout

    def _check_open(self) -> None:
        if self._closing or self._conn.closed:
            raise SipConnectionClosedError(f"connection to {format_address(self.peer)} is closed")
