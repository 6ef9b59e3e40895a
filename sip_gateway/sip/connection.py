"""One SIP transport connection (TLS stream or WebSocket), sans-IO.

Theory of operation: a :class:`SipConnection` owns the framing of one connection and
the transactions that run over it (RFC 3261 section 18 over a reliable transport: a
response goes back on the connection its request came in on). Its user, the transaction
user (TU), drives it like h11 or aioquic::

    conn.receive_data(raw, now=clock())          # TLS byte stream
    conn.receive_message(ws_payload, now=clock()) # one WebSocket message (RFC 7118)
    while (event := conn.next_event()) is not None:
        handle(event)
    writer.write(conn.data_to_send())
    timer_at(conn.get_timer())  ->  conn.handle_timer(now)

Bad input is answered here with the RFC's error response where a response is possible,
and reported as :class:`MessageRejected`; only an unrecoverable stream (broken framing)
is marked ``fatal`` so the adapter closes the connection. Nothing in here performs I/O,
reads a clock or draws randomness.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .errors import LocalProtocolError, RemoteProtocolError
from .events import KeepAliveReceived, MessageRejected, SipEvent
from .message import (
    SipMessage,
    SipRequest,
    SipResponse,
    build_response,
    parse_message,
    validate_request,
)
from .parser import KeepAlive, RejectedFrame, StreamFramer
from .transaction import TimerSettings, TransactionLayer

__all__ = ["SipConnection", "SipConnectionConfig"]

_ECHOED = {
    "via": "Via",
    "v": "Via",
    "from": "From",
    "f": "From",
    "to": "To",
    "t": "To",
    "call-id": "Call-ID",
    "i": "Call-ID",
    "cseq": "CSeq",
}


@dataclass(frozen=True, slots=True)
class SipConnectionConfig:
    """How one connection behaves.

    Attributes:
        transport: the Via transport token of this connection ("TLS" or "WSS").
        peer_host: the peer's IP address as seen by the socket (for received/rport).
        peer_port: the peer's source port (for rport, RFC 3581).
        max_message_size: largest message accepted; larger gets 513 and closes the stream.
        timers: RFC 3261 timer values; reliable transports arm no retransmissions.
        supported_extensions: option tags we support (others in Require get 420).
    """

    transport: str = "TLS"
    peer_host: str = ""
    peer_port: int = 0
    max_message_size: int = 65536
    timers: TimerSettings = field(default_factory=TimerSettings)
    supported_extensions: frozenset[str] = frozenset()


class SipConnection:
    """Framing, validation and transactions of one connection."""

    def __init__(self, config: SipConnectionConfig | None = None) -> None:
        self.config = config or SipConnectionConfig()
        self.transactions = TransactionLayer(self.config.timers)
        self._framer = StreamFramer(max_message_size=self.config.max_message_size)
        self._events: deque[SipEvent] = deque()
        self._out: list[bytes] = []
        self.closed = False

    # -- input -----------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes of a stream transport (TLS); framing is by Content-Length."""
        if self.closed:
            return
        self._framer.receive_data(data)
        while not self.closed:
            try:
                item = self._framer.next_message()
            except RemoteProtocolError as exc:
                self._reject(self._framer.failed_data, exc, fatal=True)
                return
            if item is None:
                return
            if isinstance(item, KeepAlive):
                self._keepalive(item)
            elif isinstance(item, RejectedFrame):
                self._reject(item.frame, item.error, fatal=False)
            else:
                self._receive_message(item, frame=None, now=now)

    def receive_message(self, data: bytes, now: float) -> None:
        """Feed one whole message of a message transport (one WebSocket message)."""
        if self.closed:
            return
        if not data.strip(b"\r\n"):
            self._keepalive(KeepAlive(ping=data.startswith(b"\r\n\r\n")))
            return
        if len(data) > self.config.max_message_size:
            self._reject(
                data, RemoteProtocolError("message too large", status_code=513), fatal=False
            )
            return
        try:
            message = parse_message(data)
        except RemoteProtocolError as exc:
            self._reject(data, exc, fatal=False)
            return
        self._receive_message(message, frame=data, now=now)

    def _keepalive(self, item: KeepAlive) -> None:
        if item.ping:
            self._out.append(b"\r\n")  # RFC 5626 4.4.1: a pong for every ping
        self._events.append(KeepAliveReceived(ping=item.ping))

    def _receive_message(self, message: SipMessage, *, frame: bytes | None, now: float) -> None:
        try:
            if isinstance(message, SipRequest):
                validate_request(message, supported_extensions=self.config.supported_extensions)
                self._stamp_via(message)
            else:
                _check_response(message)
        except RemoteProtocolError as exc:
            self._reject(frame or b"", exc, fatal=False, message=message)
            return
        if isinstance(message, SipRequest):
            self.transactions.receive_request(message, now)
        else:
            self.transactions.receive_response(message, now)
        self._drain_transactions()

    def _stamp_via(self, request: SipRequest) -> None:
        """Add received/rport to the top Via (RFC 3261 18.2.1, RFC 3581)."""
        if not self.config.peer_host:
            return
        via = request.top_via
        params: dict[str, str] = {}
        if via.host.strip("[]") != self.config.peer_host:
            params["received"] = self.config.peer_host
        if via.rport is not None and self.config.peer_port:
            params["rport"] = str(self.config.peer_port)
            params["received"] = self.config.peer_host
        if params:
            values = request.headers.get_all("Via")
            request.headers.set("Via", str(via.with_params(**params)))
            for value in values[1:]:
                request.headers.add("Via", value)

    def _reject(
        self,
        frame: bytes,
        exc: RemoteProtocolError,
        *,
        fatal: bool,
        message: SipMessage | None = None,
    ) -> None:
        """Answer what can be answered and report the rejection.

        A message that parsed is answered from its model; raw bytes that did not parse are
        answered from their header lines (:func:`_raw_error_response`). ACKs and responses
        are never answered.
        """
        if message is None:
            response = _raw_error_response(frame, exc)
        elif isinstance(message, SipRequest) and message.method != "ACK":
            answer = build_response(message, exc.status_code, exc.reason, headers=exc.headers)
            response = answer.to_bytes()
        else:
            response = None
        if response is not None:
            self._out.append(response)
        self._events.append(
            MessageRejected(
                status_code=exc.status_code,
                reason=exc.reason,
                detail=str(exc),
                response_sent=response is not None,
                fatal=fatal,
            )
        )
        if fatal:
            self.closed = True

    # -- output ----------------------------------------------------------------------

    def send_request(self, request: SipRequest, now: float) -> str | None:
        """Send a request; all but ACK start a client transaction.

        Returns:
            the transaction id, or None for an ACK (sent outside any transaction).

        Raises:
            LocalProtocolError: the connection is closed or the request is invalid to send.
        """
        self._check_open()
        if request.method == "ACK":
            self._out.append(request.to_bytes())
            return None
        transaction_id = self.transactions.send_request(request, now)
        self._drain_transactions()
        return transaction_id

    def send_response(self, transaction_id: str, response: SipResponse, now: float) -> None:
        """Answer a request received with :class:`RequestReceived`.

        Raises:
            LocalProtocolError: no such transaction, or the response is not allowed now.
        """
        self._check_open()
        self.transactions.send_response(transaction_id, response, now)
        self._drain_transactions()

    def send_keepalive(self) -> None:
        """Queue a CRLF keep-alive ping (RFC 5626 4.4.1)."""
        self._check_open()
        self._out.append(b"\r\n\r\n")

    def data_to_send(self) -> bytes:
        """Bytes to write to a stream transport, clearing the output."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def messages_to_send(self) -> list[bytes]:
        """Whole messages for a message transport (one WebSocket message each)."""
        out, self._out = self._out, []
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held by the stream framer (0 between messages)."""
        return self._framer.buffered

    def next_event(self) -> SipEvent | None:
        """The next event for the TU, or None."""
        return self._events.popleft() if self._events else None

    # -- time and teardown -----------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next deadline at which :meth:`handle_timer` must be called."""
        return self.transactions.get_timer()

    def handle_timer(self, now: float) -> None:
        """Fire the transaction timers due at ``now``."""
        self.transactions.handle_timer(now)
        self._drain_transactions()

    def connection_lost(self, now: float) -> None:
        """The transport is gone: fail every pending transaction."""
        self.closed = True
        self.transactions.transport_failed(now)
        self._drain_transactions()
        self._out.clear()

    def _drain_transactions(self) -> None:
        while self.transactions.messages_to_send:
            message: SipMessage = self.transactions.messages_to_send.popleft()
            self._out.append(message.to_bytes())
        while self.transactions.events:
            self._events.append(self.transactions.events.popleft())

    def _check_open(self) -> None:
        if self.closed:
            raise LocalProtocolError("the connection is closed")


def _check_response(response: SipResponse) -> None:
    """The headers a client transaction matches a response on, present once and well formed.

    A response failing this is discarded (RFC 3261 18.1.2), never answered.

    Raises:
        RemoteProtocolError: 400, naming the header.
    """
    _ = response.top_via, response.cseq, response.call_id, response.from_addr, response.to_addr


def _raw_error_response(frame: bytes, exc: RemoteProtocolError) -> bytes | None:
    """An error response built from the raw header lines of a request that did not parse.

    Works on text that may not parse: it copies Via, From, To, Call-ID and CSeq verbatim
    (RFC 3261 8.2.6.2) and never answers an ACK or a response.
    """
    head = frame.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.replace("\r\n", "\n").split("\n")
    first = lines[0].split()
    if len(first) < 3 or first[0] in ("ACK", "SIP/2.0") or not first[-1].startswith("SIP/"):
        return None
    out = [f"SIP/2.0 {exc.status_code} {exc.reason}"]
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        canonical = _ECHOED.get(name.strip().lower())
        if sep and canonical and "\x00" not in value:
            out.append(f"{canonical}: {value.strip()}")
    out.extend(f"{name}: {value}" for name, value in exc.headers)
    out.append("Content-Length: 0")
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8", "replace")
