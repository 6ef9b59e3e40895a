"""SIP header fields: the ordered multi-map and the typed values SIP itself relies on.

Theory of operation: a message's header section is a :class:`Headers` object, an ordered
list of ``(name, value)`` lines. Names are case-insensitive; compact forms (``v``, ``i``,
``m`` ...) and known names are stored in their canonical spelling (``Via``, ``Call-ID``,
``CSeq``), unknown names as written. Values are unfolded (a continuation line counts as one
SP) and stripped, and never contain CR or LF. :meth:`Headers.get_all` splits the
comma-separated list headers (Via, Contact, Route, Allow ...) on commas outside quotes and
``<>``.

The typed values (:class:`NameAddr` for From/To/Contact/Route, :class:`Via`,
:class:`CSeq`) are immutable dataclasses parsed on demand; ``parse_x(str(x)) == x`` holds
for each. Parsers raise :class:`RemoteProtocolError` (400) and nothing else on bad input.
Header parameters after an addr-spec belong to the header, not to the URI (RFC 3261
20.10). Parameter values keep their quotes when quoted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from ._grammar import (
    TOKEN_CHARS,
    Params,
    bad,
    format_params,
    is_host,
    is_ip_address,
    is_token,
    param_lookup,
    parse_int,
    parse_params,
    parse_quoted,
    quote,
    remove_param,
    replace_param,
    skip_ws,
    split_list,
)
from ._names import LIST_HEADERS, SECRET_HEADERS, canonical_name
from .errors import LocalProtocolError
from .uri import AbsoluteUri, SipUri, parse_uri

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "Via",
    "canonical_name",
    "parse_cseq",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_via",
]

_WS = " \t"
# *(token LWS), liberally with UTF-8 (unquoted non-ASCII names are common in the wild)
_DISPLAY_CHARS = TOKEN_CHARS | frozenset(_WS)


class Headers:
    """An ordered, case-insensitive multi-map of header lines.

    Iteration yields ``(name, value)`` per header line in wire order; ``get``/``get_all``
    look at values (list headers split on commas). Equality compares names
    case-insensitively and values exactly, in order.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        """Create headers from ``(name, value)`` pairs.

        Raises:
            LocalProtocolError: a name is not a token or a value contains CR/LF.
        """
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]]) -> Headers:
        """Wrap already-validated, canonicalized lines (used by the parser)."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (first list element for list headers), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; list headers are split on top-level commas."""
        key = canonical_name(name).lower()
        lines = [value for n, value in self._items if n.lower() == key]
        if key not in LIST_HEADERS:
            return lines
        return [part for line in lines for part in split_list(line) if part]

    def get_lines(self, name: str) -> list[str]:
        """Every header line's value for ``name``, unsplit."""
        key = canonical_name(name).lower()
        return [value for n, value in self._items if n.lower() == key]

    def add(self, name: str, value: str) -> None:
        """Append a header line.

        Raises:
            LocalProtocolError: ``name`` is not a token or ``value`` contains CR/LF.
        """
        self._items.append(_checked(name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one line (at the first one's position)."""
        item = _checked(name, value)
        key = item[0].lower()
        index = next((i for i, (n, _) in enumerate(self._items) if n.lower() == key), None)
        self.remove(name)
        self._items.insert(len(self._items) if index is None else index, item)

    def remove(self, name: str) -> None:
        """Remove every line of ``name`` (no error when absent)."""
        key = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def insert_first(self, name: str, value: str) -> None:
        """Insert a line before the first line of ``name`` (or at the top when absent)."""
        item = _checked(name, value)
        key = item[0].lower()
        index = next((i for i, (n, _) in enumerate(self._items) if n.lower() == key), 0)
        self._items.insert(index, item)

    def copy(self) -> Headers:
        """A shallow copy (the lines are immutable strings)."""
        return Headers._trusted(list(self._items))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name).lower()
        return any(n.lower() == key for n, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [(n, "<redacted>" if n.lower() in SECRET_HEADERS else v) for n, v in self._items]
        return f"Headers({shown!r})"


def _checked(name: str, value: str) -> tuple[str, str]:
    if not is_token(name):
        raise LocalProtocolError("header name must be a token")
    if "\r" in value or "\n" in value:
        raise LocalProtocolError("header value must not contain CR or LF")
    return canonical_name(name), value.strip(_WS)


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route ...).

    Attributes:
        display_name: the display name unquoted and unescaped, or None when absent.
        uri: the URI inside ``<>`` (or the addr-spec).
        params: header parameters in order (``tag``, ``expires``, ``q`` ...); quoted
            values keep their quotes; None means "no value".
    """

    display_name: str | None = None
    uri: SipUri | AbsoluteUri
    params: Params = ()

    def __post_init__(self) -> None:
        if self.display_name is not None and (
            "\r" in self.display_name or "\n" in self.display_name
        ):
            raise LocalProtocolError("display name must not contain CR or LF")

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter, or None."""
        return self.param("tag") or None

    def param(self, name: str) -> str | None:
        """Value of header parameter ``name``; ``""`` if valueless, None if absent."""
        return param_lookup(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        """Return a copy with ``;tag=`` set."""
        return self.with_param("tag", tag)

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        """Return a copy with header parameter ``name`` set."""
        return replace(self, params=replace_param(self.params, name, value))

    def without_param(self, name: str) -> NameAddr:
        """Return a copy without header parameter ``name``."""
        return replace(self, params=remove_param(self.params, name))

    def __str__(self) -> str:
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``name-addr`` or ``addr-spec`` followed by header parameters.

    Liberal where RFC 4475 asks: a token display name may touch ``<`` without LWS, and
    an unquoted display name may hold non-ASCII characters. Other non-token characters
    (``Bell, Alexander <...>``) are an error.

    Raises:
        RemoteProtocolError: 400 on any syntax error.
    """
    text = text.strip(_WS)
    display: str | None = None
    pos = 0
    if text.startswith('"'):
        display, pos = parse_quoted(text, 0)
        pos = skip_ws(text, pos)
        if not text.startswith("<", pos):
            raise bad("name-addr: quoted display name without <URI>")
    else:
        while pos < len(text) and (text[pos] in _DISPLAY_CHARS or text[pos] > "\x7f"):
            pos += 1
        if text.startswith("<", pos):
            display = text[:pos].strip(_WS) or None
        else:
            pos = 0
    if text.startswith("<", pos):
        close = text.find(">", pos)
        if close < 0:
            raise bad("name-addr: missing >")
        uri = _parse_enclosed_uri(text[pos + 1 : close])
        pos = close + 1
    else:
        uri, pos = _parse_addr_spec(text)
    params, pos = parse_params(text, pos, "name-addr")
    if pos != len(text):
        raise bad("name-addr: trailing characters")
    return NameAddr(display_name=display, uri=uri, params=params)


def _parse_enclosed_uri(text: str) -> SipUri | AbsoluteUri:
    if not text or any(ch in text for ch in " \t<>"):
        raise bad("name-addr: whitespace inside <>")
    return parse_uri(text)


def _parse_addr_spec(text: str) -> tuple[SipUri | AbsoluteUri, int]:
    end = 0
    while end < len(text) and text[end] not in ";" + _WS:
        end += 1
    spec = text[:end]
    # RFC 3261 20: a URI holding , ? or ; must be enclosed in <>.
    if not spec or "?" in spec or "," in spec:
        raise bad("addr-spec: URI must be enclosed in <>")
    return parse_uri(spec), end


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Parse a comma-separated list of name-addrs (Contact, Route, Record-Route ...).

    Raises:
        RemoteProtocolError: 400 on an empty element or a syntax error.
    """
    items = split_list(value)
    if any(not item for item in items):
        raise bad("empty element in name-addr list")
    return [parse_name_addr(item) for item in items]


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via value (RFC 3261 20.42, RFC 3581 rport, RFC 5923 alias).

    Attributes:
        transport: uppercase transport (``"UDP"``, ``"TLS"``, ``"WSS"`` ...).
        host: sent-by host (IPv6 with brackets).
        port: sent-by port, or None.
        params: via-params in order; None means "no value".
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter, or None."""
        return self.param("branch") or None

    @property
    def received(self) -> str | None:
        """The ``received`` parameter, or None."""
        return self.param("received") or None

    @property
    def rport(self) -> str | None:
        """The ``rport`` parameter: None when absent, ``""`` when present without value."""
        return self.param("rport")

    @property
    def sent_by(self) -> str:
        """``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def param(self, name: str) -> str | None:
        """Value of via-param ``name``; ``""`` if valueless, None if absent."""
        return param_lookup(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> Via:
        """Return a copy with via-param ``name`` set."""
        return replace(self, params=replace_param(self.params, name, value))

    def with_params(self, **kv: str | None) -> Via:
        """Return a copy with each keyword set as a via-param (None means valueless)."""
        params = self.params
        for name, value in kv.items():
            params = replace_param(params, name, value)
        return replace(self, params=params)

    def without_param(self, name: str) -> Via:
        """Return a copy without via-param ``name``."""
        return replace(self, params=remove_param(self.params, name))

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


_VIA_PROTOCOL_RE = re.compile(r"([^ \t/]+)[ \t]*/[ \t]*([^ \t/]+)[ \t]*/[ \t]*([^ \t/]+)[ \t]+")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def parse_via(value: str) -> list[Via]:
    """Parse a Via header value (one or more comma-separated via-parms).

    Raises:
        RemoteProtocolError: 400 on any syntax error, an empty element, or a protocol
            other than SIP/2.0.
    """
    items = split_list(value)
    if any(not item for item in items):
        raise bad("Via: empty element")
    return [_parse_one_via(item) for item in items]


def _parse_one_via(text: str) -> Via:
    match = _VIA_PROTOCOL_RE.match(text)
    if match is None:
        raise bad("Via: bad sent-protocol")
    name, version, transport = match.groups()
    if name.upper() != "SIP" or version != "2.0" or not is_token(transport):
        raise bad("Via: unsupported sent-protocol")
    pos = match.end()
    if text.startswith("[", pos):
        end = text.find("]", pos) + 1
        if end == 0:
            raise bad("Via: bad IPv6 reference")
    else:
        end = pos
        while end < len(text) and text[end] in _HOST_CHARS:
            end += 1
    host = text[pos:end]
    if not is_host(host):
        raise bad("Via: bad sent-by host")
    port, pos = _parse_via_port(text, end)
    params, pos = parse_params(text, pos, "Via")
    if pos != len(text):
        raise bad("Via: trailing characters")
    _check_via_params(params)
    return Via(transport=transport.upper(), host=host, port=port, params=params)


def _parse_via_port(text: str, pos: int) -> tuple[int | None, int]:
    colon = skip_ws(text, pos)
    if not text.startswith(":", colon):
        return None, pos
    start = skip_ws(text, colon + 1)
    end = start
    while end < len(text) and text[end].isdigit():
        end += 1
    return parse_int(text[start:end], 0, 65535, "Via port"), end


def _check_via_params(params: Params) -> None:
    for name, value in params:
        key = name.lower()
        if key == "branch" and (value is None or not is_token(value)):
            raise bad("Via: bad branch")
        if key == "received" and (value is None or not is_ip_address(value)):
            raise bad("Via: bad received")
        if key == "rport" and value is not None:
            parse_int(value, 0, 65535, "Via rport")
        if key == "ttl":
            parse_int(value or "", 0, 255, "Via ttl")
        if key == "maddr" and (value is None or not is_host(value)):
            raise bad("Via: bad maddr")


@dataclass(frozen=True, slots=True, kw_only=True)
class CSeq:
    """A CSeq value: sequence number (0..2**31-1) and method."""

    seq: int
    method: str

    def __post_init__(self) -> None:
        if not 0 <= self.seq < 2**31:
            raise LocalProtocolError("CSeq number out of range")
        if not is_token(self.method):
            raise LocalProtocolError("CSeq method must be a token")

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_CSEQ_RE = re.compile(r"([0-9]+)[ \t]+([^ \t]+)")


def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value such as ``"0009 INVITE"``.

    Raises:
        RemoteProtocolError: 400 when malformed or the number is out of range.
    """
    match = _CSEQ_RE.fullmatch(value.strip(_WS))
    if match is None or not is_token(match.group(2)):
        raise bad("CSeq: malformed")
    seq = parse_int(match.group(1), 0, 2**31 - 1, "CSeq")
    return CSeq(seq=seq, method=match.group(2))
