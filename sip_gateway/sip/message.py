"""SIP requests and responses: the model, datagram parsing, serialization, UAS checks.

Theory of operation: a message is a :class:`SipRequest` or a :class:`SipResponse`, a
mutable dataclass holding a start line, a :class:`Headers` and the body as ``bytes``
(binary-safe). The typed accessors (``call_id``, ``cseq``, ``vias`` ...) parse on demand
and raise :class:`RemoteProtocolError` (400) when a header is missing, repeated where it
must be single, or malformed.

:func:`parse_message` treats its input as one datagram (or one WebSocket message): CRLFs
before the start line are skipped; without Content-Length the body is the rest of the
data; with it, a shorter remainder is an error (400) and bytes after the body are ignored
(RFC 4475 dblreq). Content-Length is framing: parsing consumes it and :meth:`to_bytes`
always writes the true length, so ``parse_message(m.to_bytes()) == m``. Stream framing
lives in :mod:`parser`.

:func:`validate_request` holds the UAS checks of RFC 3261 8.2 that need no
application state (mandatory headers, CSeq method, scheme, Require, Date ...), each
mapped to the status RFC 4475 names. It never decides on bodies (415/406/488 belong to
the layers that understand them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._grammar import bad, is_call_id, parse_int
from ._reasons import reason_phrase
from ._wire import ParsedHead, parse_head
from .errors import LocalProtocolError, RemoteProtocolError
from .headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
)
from .uri import AbsoluteUri, SipUri

__all__ = [
    "BadExtensionError",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "build_response",
    "parse_message",
    "reason_phrase",
    "validate_request",
]

_WS = " \t"


class BadExtensionError(RemoteProtocolError):
    """A request requires option tags we do not support (420 Bad Extension).

    Attributes:
        unsupported: the option tags to list in the response's Unsupported header.
    """

    def __init__(self, unsupported: Iterable[str]) -> None:
        self.unsupported: tuple[str, ...] = tuple(unsupported)
        super().__init__(
            "unsupported option tags: " + ", ".join(self.unsupported),
            status_code=420,
            headers=(("Unsupported", ", ".join(self.unsupported)),),
        )


class _MessageBase:
    """Typed header accessors shared by requests and responses."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def _single(self, name: str) -> str:
        lines = self.headers.get_lines(name)
        if not lines:
            raise bad(f"missing {name}")
        if len(lines) > 1:
            raise bad(f"more than one {name}")
        return lines[0]

    @property
    def call_id(self) -> str:
        """The Call-ID (raises 400 when missing, repeated or malformed)."""
        value = self._single("Call-ID")
        if not is_call_id(value):
            raise bad("Call-ID: malformed")
        return value

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq (raises 400 when missing, repeated or malformed)."""
        return parse_cseq(self._single("CSeq"))

    @property
    def from_addr(self) -> NameAddr:
        """The parsed From (raises 400 when missing, repeated or malformed)."""
        return parse_name_addr(self._single("From"))

    @property
    def to_addr(self) -> NameAddr:
        """The parsed To (raises 400 when missing, repeated or malformed)."""
        return parse_name_addr(self._single("To"))

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first (raises 400 when none or malformed)."""
        lines = self.headers.get_lines("Via")
        if not lines:
            raise bad("missing Via")
        return [via for line in lines for via in parse_via(line)]

    @property
    def top_via(self) -> Via:
        """The topmost Via value (raises 400 when none or malformed)."""
        lines = self.headers.get_lines("Via")
        if not lines:
            raise bad("missing Via")
        return parse_via(lines[0])[0]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0..255), or None when absent (raises 400 when malformed)."""
        lines = self.headers.get_lines("Max-Forwards")
        if not lines:
            return None
        if len(lines) > 1:
            raise bad("more than one Max-Forwards")
        return parse_int(lines[0], 0, 255, "Max-Forwards")

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value in order; the ``*`` wildcard is left out (see below)."""
        return self.name_addrs("Contact")

    @property
    def contact_wildcard(self) -> bool:
        """Whether a ``Contact: *`` line is present (REGISTER removal of all bindings)."""
        return "*" in self.headers.get_lines("Contact")

    @property
    def routes(self) -> list[NameAddr]:
        """Every Route value in order."""
        return self.name_addrs("Route")

    @property
    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route value in order."""
        return self.name_addrs("Record-Route")

    def name_addrs(self, name: str) -> list[NameAddr]:
        """Every name-addr value of header ``name`` in order (``*`` lines skipped).

        Raises:
            RemoteProtocolError: 400 when a value is malformed.
        """
        lines = self.headers.get_lines(name)
        return [addr for line in lines if line != "*" for addr in parse_name_addr_list(line)]

    def option_tags(self, name: str) -> list[str]:
        """The option tags of Require, Supported, Proxy-Require or Unsupported."""
        return self.headers.get_all(name)

    @property
    def content_type(self) -> str | None:
        """The Content-Type value as received (with parameters), or None."""
        return self.headers.get("Content-Type")

    @property
    def media_type(self) -> str | None:
        """The Content-Type's ``type/subtype`` lowercased, without parameters, or None."""
        value = self.content_type
        return None if value is None else value.partition(";")[0].strip(_WS).lower()

    def _head_lines(self) -> list[str]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always written and always matches the body.

        Raises:
            LocalProtocolError: the message cannot be put on the wire as it stands.
        """
        lines = self._head_lines()
        if "\r" in lines[0] or "\n" in lines[0]:
            raise LocalProtocolError("start line must not contain CR or LF")
        lines += [f"{name}: {value}" for name, value in self.headers if name != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        try:
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError("message text is not encodable as UTF-8") from None
        return head + bytes(self.body)


@dataclass(slots=True)
class SipRequest(_MessageBase):
    """A SIP request. The body is never shown in repr (it may carry SDES keys)."""

    method: str
    uri: SipUri | AbsoluteUri
    headers: Headers
    body: bytes = field(default=b"", repr=False)
    version: str = "SIP/2.0"

    def _head_lines(self) -> list[str]:
        if not _is_token(self.method):
            raise LocalProtocolError("method must be a token")
        if isinstance(self.uri, SipUri) and self.uri.headers:
            raise LocalProtocolError("a Request-URI must not carry headers")
        return [f"{self.method} {self.uri} {self.version}"]


@dataclass(slots=True)
class SipResponse(_MessageBase):
    """A SIP response. The body is never shown in repr."""

    status_code: int
    reason: str
    headers: Headers
    body: bytes = field(default=b"", repr=False)
    version: str = "SIP/2.0"

    def _head_lines(self) -> list[str]:
        if not 100 <= self.status_code <= 699:
            raise LocalProtocolError("status code out of range")
        if "\r" in self.reason or "\n" in self.reason:
            raise LocalProtocolError("reason phrase must not contain CR or LF")
        return [f"{self.version} {self.status_code} {self.reason}"]


SipMessage = SipRequest | SipResponse

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def parse_message(data: bytes) -> SipMessage:
    """Parse one complete message received as a datagram (or a WebSocket message).

    Args:
        data: the datagram. Leading CRLFs are skipped; bytes after a Content-Length
            body are ignored; without Content-Length the body is the rest.

    Returns:
        The :class:`SipRequest` or :class:`SipResponse`.

    Raises:
        RemoteProtocolError: 400 on malformed input (including a Content-Length larger
            than the data), 505 for a request with another SIP version.
    """
    data = bytes(data).lstrip(b"\r\n")
    if not data:
        raise bad("empty message")
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, rest = data[:end], data[end + 4 :]
    elif data.endswith(b"\r\n"):
        head, rest = data[:-2], b""
    else:
        raise bad("header section not terminated")
    parsed = parse_head(head)
    if parsed.content_length is None:
        return message_from_head(parsed, rest)
    if parsed.content_length > len(rest):
        raise bad("Content-Length larger than the message")
    return message_from_head(parsed, rest[: parsed.content_length])


def message_from_head(parsed: ParsedHead, body: bytes) -> SipMessage:
    """Build a message from a parsed header section and its body (used by framers)."""
    if parsed.method is not None and parsed.uri is not None:
        return SipRequest(
            method=parsed.method,
            uri=parsed.uri,
            headers=parsed.headers,
            body=body,
            version=parsed.version,
        )
    return SipResponse(
        status_code=parsed.status_code,
        reason=parsed.reason,
        headers=parsed.headers,
        body=body,
        version=parsed.version,
    )


def build_response(
    request: SipRequest,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """Build a response to ``request`` as RFC 3261 8.2.6 says.

    Via, From, To, Call-ID and CSeq lines are copied as received (whatever is present,
    so that even a malformed request can be answered); ``to_tag`` is added to To when
    it has no tag yet. Timestamp is copied into 100 responses (8.2.6.1).

    Args:
        request: the request being answered.
        status_code: 100..699.
        reason: the reason phrase; the RFC's phrase by default.
        to_tag: the UAS's tag for the To header (ignored when To already has one).
        headers: extra header lines appended after the copied ones.
        body: the response body.

    Raises:
        LocalProtocolError: bad status code or extra header.
    """
    if not 100 <= status_code <= 699:
        raise LocalProtocolError("status code out of range")
    out = Headers()
    copied = ("Via", "From", "To", "Call-ID", "CSeq")
    for name, value in request.headers:
        if name in copied:
            out.add(name, _to_with_tag(value, to_tag) if name == "To" else value)
    if status_code == 100:
        for value in request.headers.get_lines("Timestamp"):
            out.add("Timestamp", value)
    for name, value in headers:
        out.add(name, value)
    return SipResponse(
        status_code=status_code,
        reason=reason_phrase(status_code) if reason is None else reason,
        headers=out,
        body=body,
    )


def _to_with_tag(value: str, to_tag: str | None) -> str:
    if to_tag is None:
        return value
    try:
        has_tag = parse_name_addr(value).param("tag") is not None
    except RemoteProtocolError:
        return value
    return value if has_tag else f"{value};tag={to_tag}"


_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)
_NO_REQUIRE_CHECK = frozenset({"ACK", "CANCEL"})


def validate_request(
    request: SipRequest,
    *,
    supported_extensions: frozenset[str] = frozenset(),
    schemes: frozenset[str] = frozenset({"sip", "sips"}),
    methods: frozenset[str] | None = None,
    forwarding: bool = False,
) -> None:
    """Apply the stateless UAS checks of RFC 3261 8.2 (with RFC 4475's answers).

    In order: mandatory headers present once and well formed (400; RFC 4475 insuf,
    multi01), method known when ``methods`` is given (501), CSeq method equal to the
    request method (400; mismatch01/02), Request-URI scheme (416; unkscm, novelsc),
    Date in RFC 1123 GMT form (400; baddate), Require option tags (420 with
    :attr:`BadExtensionError.unsupported`; bext01; not for ACK and CANCEL), REGISTER's To
    must be a SIP or SIPS AOR (400; unksm2), Max-Forwards 0 when ``forwarding`` (483;
    zeromf: a UAS answers it like any request). Proxy-Require is a proxy's business and
    is ignored; so is a branch without the magic cookie's identifier (badbranch).

    Args:
        request: the request to check.
        supported_extensions: option tags this UAS understands (e.g. ``{"timer"}``).
        schemes: Request-URI schemes accepted.
        methods: the methods this UAS implements; None skips the 501 check.
        forwarding: the request is about to be forwarded (B2BUA outbound leg).

    Raises:
        RemoteProtocolError: with the status code to answer (400, 416, 420, 483, 501).
    """
    _check_mandatory(request)
    if methods is not None and request.method not in methods:
        raise RemoteProtocolError("method not implemented", status_code=501)
    if request.cseq.method != request.method:
        raise bad("CSeq method does not match the request method")
    if request.uri.scheme not in schemes:
        raise RemoteProtocolError("unsupported Request-URI scheme", status_code=416)
    for value in request.headers.get_lines("Date"):
        if _DATE_RE.fullmatch(value) is None:
            raise bad("Date is not an RFC 1123 GMT date")
    if request.method not in _NO_REQUIRE_CHECK:
        wanted = request.option_tags("Require")
        unsupported = [tag for tag in wanted if tag not in supported_extensions]
        if unsupported:
            raise BadExtensionError(unsupported)
    if request.method == "REGISTER" and not isinstance(request.to_addr.uri, SipUri):
        raise bad("REGISTER To must be a SIP or SIPS URI")
    if forwarding and request.max_forwards == 0:
        raise RemoteProtocolError("Max-Forwards exhausted", status_code=483)


def _check_mandatory(request: SipRequest) -> None:
    """Every header RFC 3261 8.1.1 makes mandatory, present once and parseable.

    Max-Forwards may be absent (RFC 2543 peers, RFC 4475 inv2543) but not repeated.
    """
    _ = request.call_id, request.cseq, request.from_addr, request.to_addr, request.vias
    _ = request.max_forwards
