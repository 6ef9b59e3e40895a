"""The header section on the wire: start line, header lines, folding, Content-Length.

Theory of operation: :func:`parse_head` takes the bytes of one header section (start line
and header lines, without the blank line that ends it) and returns a :class:`ParsedHead`.
It decodes UTF-8 strictly, unfolds continuation lines, canonicalizes header names, checks
the syntax of the headers SIP itself depends on (Via, CSeq, From, To, Call-ID,
Max-Forwards, Contact, Route, Record-Route), and consumes Content-Length (framing
information: the body length is the truth, serializers write it back). It does not know
whether the bytes came from a datagram or a stream; :mod:`message` and :mod:`parser` do
the framing. Every failure is a :class:`RemoteProtocolError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._grammar import bad, is_call_id, is_token, parse_int, split_list
from ._names import canonical_name
from .errors import RemoteProtocolError
from .headers import Headers, parse_cseq, parse_name_addr, parse_via
from .uri import AbsoluteUri, SipUri, parse_uri

__all__ = ["ParsedHead", "frame_length", "parse_head"]

_WS = " \t"
_VERSION_RE = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.IGNORECASE)
_MAX_CONTENT_LENGTH = 2**31 - 1


@dataclass(slots=True, kw_only=True)
class ParsedHead:
    """A parsed header section: either request fields or response fields are set."""

    method: str | None = None
    uri: SipUri | AbsoluteUri | None = None
    status_code: int = 0
    reason: str = ""
    version: str = "SIP/2.0"
    headers: Headers
    content_length: int | None = None


def parse_head(head: bytes) -> ParsedHead:
    """Parse a header section (without its terminating empty line).

    Raises:
        RemoteProtocolError: 400 on any syntax error, 505 for a request with a SIP
            version other than 2.0.
    """
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("header section is not UTF-8") from None
    lines = text.split("\r\n")
    if any("\r" in line or "\n" in line for line in lines):
        raise bad("bare CR or LF in header section")
    parsed = _parse_start_line(lines[0])
    items = _parse_header_lines(lines[1:])
    parsed.content_length = _take_content_length(items)
    parsed.headers = Headers._trusted(items)
    check_headers(parsed.headers)
    return parsed


def _parse_start_line(line: str) -> ParsedHead:
    if line[:4].upper() == "SIP/":
        return _parse_status_line(line)
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise bad("malformed Request-Line")
    method, uri_text, version = parts
    if not is_token(method):
        raise bad("method is not a token")
    match = _VERSION_RE.fullmatch(version)
    if match is None:
        raise bad("malformed SIP-Version")
    if version[4:] != "2.0":
        raise RemoteProtocolError("SIP version not supported", status_code=505)
    uri = parse_uri(uri_text)
    if isinstance(uri, SipUri) and uri.headers:
        raise bad("headers are not allowed in a Request-URI")
    return ParsedHead(method=method, uri=uri, headers=Headers())


def _parse_status_line(line: str) -> ParsedHead:
    version, _, rest = line.partition(" ")
    code_text, _, reason = rest.partition(" ")
    match = _VERSION_RE.fullmatch(version)
    if match is None or version[4:] != "2.0":
        raise bad("unsupported SIP-Version in Status-Line")
    if len(code_text) != 3 or not code_text.isascii() or not code_text.isdigit():
        raise bad("Status-Code is not three digits")
    status_code = int(code_text)
    if not 100 <= status_code <= 699:
        raise bad("Status-Code out of range")
    if any(ord(ch) < 0x20 and ch != "\t" for ch in reason) or "\x7f" in reason:
        raise bad("control character in Reason-Phrase")
    return ParsedHead(status_code=status_code, reason=reason, headers=Headers())


def _unfold(lines: list[str]) -> list[str]:
    """Join continuation lines to their header line (a fold counts as one SP).

    Raises:
        RemoteProtocolError: 400 when the first line is a continuation.
    """
    logical: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not logical:
                raise bad("continuation line before any header")
            extra = line.strip(_WS)
            if extra:
                logical[-1] = f"{logical[-1].rstrip(_WS)} {extra}"
            continue
        logical.append(line)
    return logical


def _parse_header_lines(lines: list[str]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for line in _unfold(lines):
        name, colon, value = line.partition(":")
        name = name.rstrip(_WS)
        if not colon or not is_token(name):
            raise bad("malformed header line")
        items.append((canonical_name(name), value.strip(_WS)))
    return items


def _take_content_length(items: list[tuple[str, str]]) -> int | None:
    """Remove the Content-Length lines from ``items`` and return their one value."""
    values = [value for name, value in items if name == "Content-Length"]
    if not values:
        return None
    items[:] = [(name, value) for name, value in items if name != "Content-Length"]
    lengths = {parse_int(value, 0, _MAX_CONTENT_LENGTH, "Content-Length") for value in values}
    if len(lengths) != 1:
        raise bad("conflicting Content-Length values")
    return lengths.pop()


def frame_length(head: bytes) -> int | None:
    """The Content-Length a header section declares, read without parsing the rest.

    Uses the same unfolding and the same rules as :func:`parse_head` (several equal
    values are fine), so framing and parsing always agree on the body length.

    Returns:
        The declared body length, or None when there is no Content-Length.

    Raises:
        RemoteProtocolError: 400 when a value is not a number or values conflict.
    """
    lines = head.decode("latin-1").split("\r\n")[1:]
    while lines and lines[0][:1] in (" ", "\t"):
        del lines[0]  # a message error for parse_head, not a framing one
    items: list[tuple[str, str]] = []
    for line in _unfold(lines):
        name, colon, value = line.partition(":")
        if colon and canonical_name(name.rstrip(_WS)) == "Content-Length":
            items.append(("Content-Length", value.strip(_WS)))
    return _take_content_length(items)


def check_headers(headers: Headers) -> None:
    """Check the syntax of the headers SIP itself depends on (when present).

    Presence and multiplicity are not checked here (a UAS does that, see
    ``message.validate_request``), so that a message missing them can still be answered.

    Raises:
        RemoteProtocolError: 400 on the first malformed value.
    """
    for name, value in headers:
        checker = _CHECKERS.get(name)
        if checker is not None:
            checker(value)


def _check_call_id(value: str) -> None:
    if not is_call_id(value):
        raise bad("Call-ID: malformed")


def _check_max_forwards(value: str) -> None:
    parse_int(value, 0, 255, "Max-Forwards")


def _check_contact(value: str) -> None:
    if value != "*":
        _check_name_addrs(value)


def _check_name_addrs(value: str) -> None:
    items = split_list(value)
    if any(not item for item in items):
        raise bad("empty element in name-addr list")
    for item in items:
        parse_name_addr(item)


def _check_single_name_addr(value: str) -> None:
    parse_name_addr(value)


def _check_via(value: str) -> None:
    parse_via(value)


def _check_cseq(value: str) -> None:
    parse_cseq(value)


_CHECKERS = {
    "Via": _check_via,
    "CSeq": _check_cseq,
    "From": _check_single_name_addr,
    "To": _check_single_name_addr,
    "Call-ID": _check_call_id,
    "Max-Forwards": _check_max_forwards,
    "Contact": _check_contact,
    "Route": _check_name_addrs,
    "Record-Route": _check_name_addrs,
}
