"""Lexical building blocks of the RFC 3261 grammar (section 25), shared by the SIP parsers.

Theory of operation: every function here works on one already-unfolded header value
(a ``str`` without CR or LF) and either returns plain Python values or raises
:class:`RemoteProtocolError` (400). Nothing here knows about messages or headers by
name; :mod:`uri`, :mod:`headers` and :mod:`message` build on these pieces. Error texts
never quote the offending value: header values may carry secrets (credentials).
"""

from __future__ import annotations

import ipaddress
import re

from .errors import RemoteProtocolError

__all__ = [
    "ALPHANUM",
    "TOKEN_CHARS",
    "Params",
    "bad",
    "format_params",
    "is_call_id",
    "is_host",
    "is_ip_address",
    "is_ipv6",
    "is_token",
    "param_lookup",
    "parse_int",
    "parse_params",
    "parse_quoted",
    "quote",
    "remove_param",
    "replace_param",
    "skip_ws",
    "split_hostport",
    "split_list",
]

Params = tuple[tuple[str, str | None], ...]

ALPHANUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = ALPHANUM | frozenset("-.!%*_+`'~")
_WS = " \t"
_TCHAR_CLASS = r"A-Za-z0-9\-.!%*_+`'~"
_CALL_ID_RE = re.compile(r"[\x21-\x7e]+")
_TOKEN_RE = re.compile(f"[{_TCHAR_CLASS}]+")
# SEMI generic-param: SWS ";" SWS token [ SWS "=" SWS ( quoted-string / token / host ) ] SWS
_PARAM_RE = re.compile(
    f"[ \t]*;[ \t]*([{_TCHAR_CLASS}]+)[ \t]*"
    f'(?:=[ \t]*("(?:[^"\\\\]|\\\\.)*"|[{_TCHAR_CLASS}:\\[\\]]+)[ \t]*)?',
    re.DOTALL,
)
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]+")


def bad(what: str, status_code: int = 400) -> RemoteProtocolError:
    """Return (not raise) a :class:`RemoteProtocolError` describing a syntax error."""
    return RemoteProtocolError(what, status_code=status_code)


def is_token(text: str) -> bool:
    """Whether ``text`` is a non-empty RFC 3261 token."""
    return _TOKEN_RE.fullmatch(text) is not None


def is_call_id(text: str) -> bool:
    """Whether ``text`` is a Call-ID: visible ASCII (RFC 3261 ``word ["@" word]``, liberally)."""
    return _CALL_ID_RE.fullmatch(text) is not None


def skip_ws(text: str, pos: int) -> int:
    """Return the first index at or after ``pos`` that is not SP or HTAB."""
    end = len(text)
    while pos < end and text[pos] in _WS:
        pos += 1
    return pos


def parse_int(text: str, low: int, high: int, what: str) -> int:
    """Parse ``1*DIGIT`` within ``low..high`` without ever building a huge integer.

    Raises:
        RemoteProtocolError: 400 when the text is not digits or out of range.
    """
    if not text or not text.isascii() or not text.isdigit():
        raise bad(f"{what}: not a number")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(high)):
        raise bad(f"{what}: out of range")
    value = int(digits)
    if not low <= value <= high:
        raise bad(f"{what}: out of range")
    return value


def parse_quoted(text: str, pos: int) -> tuple[str, int]:
    """Parse a quoted-string starting at ``text[pos] == '"'``.

    Returns:
        The unescaped content and the index just after the closing quote.

    Raises:
        RemoteProtocolError: 400 on an unterminated string or a bad quoted-pair.
    """
    out: list[str] = []
    i = pos + 1
    end = len(text)
    while i < end:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= end:
                break
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise bad("unterminated quoted string")


def quote(text: str) -> str:
    """Serialize ``text`` as a quoted-string, escaping quote, backslash and controls.

    CR and LF cannot be carried by a quoted-string; callers reject them earlier.
    """
    out = ['"']
    for ch in text:
        if ch in '"\\' or (ord(ch) < 0x20 and ch != "\t") or ch == "\x7f":
            out.append("\\")
        out.append(ch)
    out.append('"')
    return "".join(out)


def split_list(value: str) -> list[str]:
    """Split a header value on commas outside quoted-strings and ``<...>``.

    Elements are stripped of surrounding whitespace; empty elements are kept so that
    strict callers can reject them. An unterminated quote or bracket makes the rest of
    the value one element (strict callers reject that element when they parse it).
    """
    parts: list[str] = []
    start = 0
    i = 0
    end = len(value)
    in_angle = False
    while i < end:
        ch = value[i]
        if ch == '"' and not in_angle:
            i = _skip_quoted_lenient(value, i)
            continue
        if ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append(value[start:i].strip(_WS))
            start = i + 1
        i += 1
    parts.append(value[start:].strip(_WS))
    return parts


def _skip_quoted_lenient(value: str, pos: int) -> int:
    i = pos + 1
    end = len(value)
    while i < end:
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == '"':
            return i + 1
        i += 1
    return end


def is_host(host: str) -> bool:
    """Whether ``host`` is a hostname, an IPv4 address or a bracketed IPv6 reference."""
    if host.startswith("["):
        return host.endswith("]") and is_ipv6(host[1:-1])
    return host.isascii() and _HOSTNAME_RE.fullmatch(host) is not None


def is_ipv6(text: str) -> bool:
    """Whether ``text`` is an IPv6 address (no brackets, no zone)."""
    if _IPV6_CHARS_RE.fullmatch(text) is None:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def is_ip_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address (IPv6 optionally bracketed)."""
    if text.startswith("[") and text.endswith("]"):
        return is_ipv6(text[1:-1])
    if ":" in text:
        return is_ipv6(text)
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def split_hostport(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host [":" port]`` and validate both parts.

    Raises:
        RemoteProtocolError: 400 on a bad host or port.
    """
    if text.startswith("["):
        close = text.find("]")
        host, rest = text[: close + 1], text[close + 1 :]
        if close < 0 or (rest and not rest.startswith(":")):
            raise bad(f"{what}: bad IPv6 reference")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
    if not is_host(host):
        raise bad(f"{what}: bad host")
    port = None if port_text is None else parse_int(port_text, 0, 65535, f"{what} port")
    return host, port


def parse_params(text: str, pos: int, what: str) -> tuple[Params, int]:
    """Parse ``*(SEMI generic-param)`` starting at ``pos`` (SWS allowed around ; and =).

    Stops at the first character that cannot continue the list (end, ``,`` ...).
    Quoted values keep their quotes so that serialization is exact.

    Returns:
        The parameters in order and the index where parsing stopped.

    Raises:
        RemoteProtocolError: 400 on an empty or malformed parameter.
    """
    params: list[tuple[str, str | None]] = []
    while (match := _PARAM_RE.match(text, pos)) is not None:
        params.append((match.group(1), match.group(2)))
        pos = match.end()
    if text.startswith(";", skip_ws(text, pos)):
        raise bad(f"{what}: empty or malformed parameter")
    return tuple(params), skip_ws(text, pos)


def format_params(params: Params) -> str:
    """Serialize parameters as ``;name=value;flag``."""
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def param_lookup(params: Params, name: str) -> str | None:
    """Value of the first parameter called ``name`` (case-insensitive).

    Returns:
        The value, ``""`` for a parameter present without a value, ``None`` if absent.
    """
    wanted = name.lower()
    for key, value in params:
        if key.lower() == wanted:
            return "" if value is None else value
    return None


def replace_param(params: Params, name: str, value: str | None) -> Params:
    """Return ``params`` with ``name`` set to ``value`` (in place if present, else appended)."""
    wanted = name.lower()
    out: list[tuple[str, str | None]] = []
    done = False
    for key, old in params:
        if key.lower() == wanted:
            if not done:
                out.append((key, value))
                done = True
            continue
        out.append((key, old))
    if not done:
        out.append((name, value))
    return tuple(out)


def remove_param(params: Params, name: str) -> Params:
    """Return ``params`` without any parameter called ``name`` (case-insensitive)."""
    wanted = name.lower()
    return tuple((key, value) for key, value in params if key.lower() != wanted)
