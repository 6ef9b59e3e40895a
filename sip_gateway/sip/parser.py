"""Stream framing of SIP messages for TLS, TCP and byte streams (RFC 3261 18.3).

Theory of operation: a :class:`StreamFramer` owns one connection's receive buffer.
``receive_data`` appends bytes; ``next_message`` returns the next complete message, a
:class:`KeepAlive`, or None when more bytes are needed. A message ends after its header
section and Content-Length bytes of body (a missing Content-Length counts as 0, so a
body-less message from a lax peer still frames; a body without one is then framed as
a message of its own and rejected). Framing reads Content-Length with exactly the rules
of the parser (folding, compact ``l``, equal repeated values), so both agree.

Limits: a header section, or header section plus declared body, larger than
``max_message_size`` raises :class:`MessageTooLargeError` (513) as soon as that is known (the
body is never awaited), so the buffer holds at most one limit plus the last read, as
long as the caller drains ``next_message`` after each ``receive_data``.

Keep-alives (RFC 5626 4.4.1): at a message boundary a double CRLF is a ping
(``KeepAlive(ping=True)``) and a single CRLF a pong (``ping=False``). A CRLF followed by
a lone CR waits for one more byte; a ping split as ``"\\r\\n"`` + ``"\\r\\n"`` across two reads
is reported as two pongs (TLS and TCP peers send a ping in one write).

Framing and parsing are separate steps. Framing needs only the end of the header
section and a valid Content-Length; when those are sound but the message itself is
malformed (a bad URI, an unbalanced quote...), ``next_message`` returns a
:class:`RejectedFrame` carrying the raw bytes and the error, and the stream goes on, so
the connection can answer 400 and keep serving. A framing error (bad or conflicting
Content-Length, oversize) cannot be resynchronized: the framer drops its buffer and
raises the same error again on every later ``next_message``; close the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._wire import frame_length, parse_head
from .errors import MessageTooLargeError, RemoteProtocolError
from .message import SipMessage, message_from_head

__all__ = ["KeepAlive", "RejectedFrame", "StreamFramer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    """A CRLF keep-alive between messages: ``ping`` for CRLFCRLF, else a CRLF pong."""

    ping: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedFrame:
    """A well-framed message that failed to parse; the stream stays in sync.

    Attributes:
        frame: the raw bytes of the message (header section and body).
        error: why it was rejected, with the status code to answer.
    """

    frame: bytes
    error: RemoteProtocolError


class StreamFramer:
    """Splits a byte stream into SIP messages (sans-IO)."""

    def __init__(self, max_message_size: int = 65536) -> None:
        """Create a framer.

        Args:
            max_message_size: the largest message (header section plus body) accepted.
        """
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._scan_from = 0
        self._head: bytes | None = None
        self._content_length = 0
        self._head_size = 0
        self._error: RemoteProtocolError | None = None
        self.failed_data = b""
        """The start of the unframed bytes when framing failed, for a best-effort error response."""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Append received bytes (ignored once the framer has failed)."""
        if self._error is None:
            self._buffer += data

    def next_message(self) -> SipMessage | KeepAlive | RejectedFrame | None:
        """Return the next message or keep-alive, or None if more data is needed.

        Raises:
            MessageTooLargeError: the message exceeds ``max_message_size`` (513).
            RemoteProtocolError: the stream is malformed (400, 505 ...); the connection
                should be closed after answering, if answering is possible.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._error = exc
            self.failed_data = bytes(self._buffer[: self.max_message_size])
            self._buffer.clear()
            raise

    def _next(self) -> SipMessage | KeepAlive | RejectedFrame | None:
        if self._head is None:
            keepalive = self._keepalive()
            if keepalive is not None or bytes(self._buffer[:4]) in (b"", b"\r", b"\r\n\r"):
                return keepalive
            if not self._read_head():
                return None
        assert self._head is not None
        total = self._head_size + self._content_length
        if len(self._buffer) < total:
            return None
        body = bytes(self._buffer[self._head_size : total])
        del self._buffer[:total]
        head, self._head = self._head, None
        try:
            return message_from_head(parse_head(head), body)
        except RemoteProtocolError as exc:
            return RejectedFrame(frame=head + b"\r\n\r\n" + body, error=exc)

    def _keepalive(self) -> KeepAlive | None:
        buffer = self._buffer
        if buffer.startswith(b"\r\n\r\n"):
            del buffer[:4]
            return KeepAlive(ping=True)
        if buffer.startswith(b"\r\n") and buffer != b"\r\n\r":
            del buffer[:2]
            return KeepAlive(ping=False)
        return None

    def _read_head(self) -> bool:
        limit = self.max_message_size
        end = self._buffer.find(b"\r\n\r\n", max(0, self._scan_from - 3))
        if end < 0:
            if len(self._buffer) > limit:
                raise MessageTooLargeError("header section larger than the message size limit")
            self._scan_from = len(self._buffer)
            return False
        self._scan_from = 0
        head_size = end + 4
        if head_size > limit:
            raise MessageTooLargeError("header section larger than the message size limit")
        head = bytes(self._buffer[:end])
        length = frame_length(head) or 0
        if head_size + length > limit:
            raise MessageTooLargeError("message larger than the message size limit")
        self._head, self._head_size, self._content_length = head, head_size, length
        return True
