"""SIP and SIPS URIs (RFC 3261 section 19.1) and other absolute URIs.

Theory of operation: :func:`parse_uri` turns the text of one URI (a Request-URI, or the
inside of ``<...>``) into an immutable value. ``sip:`` and ``sips:`` URIs are decomposed
into :class:`SipUri`; every other scheme (``tel:``, ``http:``, ``soap.beep:`` ...) is kept
as an :class:`AbsoluteUri` (scheme + opaque text) so that a UAS can answer 416 later
instead of failing to parse. Components are kept as on the wire (``%HH`` escapes are
validated, not decoded), so ``parse_uri(str(uri)) == uri`` always holds. Comparison rules
of RFC 3261 19.1.4 are not applied by ``==``; equality is structural.

This module never decides what a URI means for routing; it only parses and prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ._grammar import (
    ALPHANUM,
    Params,
    bad,
    format_params,
    param_lookup,
    remove_param,
    replace_param,
    split_hostport,
)
from .errors import LocalProtocolError

__all__ = ["AbsoluteUri", "SipUri", "parse_uri"]

_MARK = frozenset("-_.!~*'()")
_UNRESERVED = ALPHANUM | _MARK
_USER_CHARS = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_CHARS = _UNRESERVED | frozenset("&=+$,")
_PARAM_CHARS = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_CHARS = _UNRESERVED | frozenset("[]/?:+$")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_FORBIDDEN_OPAQUE = frozenset(' <>"\\\x7f')
_UNSAFE_RE = re.compile(r'[\x00-\x20\x7f<>"]')
_UNSAFE_HOST_RE = re.compile(r'[\x00-\x20\x7f<>";?@/,]')


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI.

    Attributes:
        scheme: ``"sip"`` or ``"sips"`` (lowercase).
        user: the user part as on the wire (``%HH`` escapes kept), or None.
        password: the password part (deprecated by RFC 3261; never shown in repr).
        host: hostname, IPv4 address or bracketed IPv6 reference.
        port: the port, or None when absent.
        params: uri-parameters in order; a value of None means "no value" (``;lr``).
        headers: ``?name=value&...`` headers in order.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Guards locally built URIs (a dialed number, a user name) against injection
        # into a start line or header; parsed URIs always pass.
        if self.scheme not in ("sip", "sips"):
            raise LocalProtocolError("SipUri scheme must be 'sip' or 'sips'")
        if not self.host or _UNSAFE_HOST_RE.search(self.host):
            raise LocalProtocolError("SipUri host is empty or contains separators")
        parts = [self.user or "", self.password or ""]
        if _UNSAFE_RE.search("".join(parts)) or any("@" in part for part in parts):
            raise LocalProtocolError("SipUri user or password contains unsafe characters")
        for name, value in (*self.params, *self.headers):
            if not name or _UNSAFE_RE.search(name + (value or "")):
                raise LocalProtocolError("SipUri parameter or header contains unsafe characters")

    def param(self, name: str) -> str | None:
        """Value of uri-parameter ``name`` (any case); ``""`` if valueless, None if absent."""
        return param_lookup(self.params, name)

    def has_param(self, name: str) -> bool:
        """Whether the uri-parameter ``name`` is present (case-insensitive)."""
        return param_lookup(self.params, name) is not None

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter lowercased, or None."""
        value = self.param("transport")
        return value.lower() if value else None

    @property
    def user_param(self) -> str | None:
        """The ``user`` parameter lowercased (``"phone"``, ``"ip"`` ...), or None."""
        value = self.param("user")
        return value.lower() if value else None

    @property
    def host_port(self) -> str:
        """``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """Return a copy with ``name`` set (replaced in place if present, else appended)."""
        return replace(self, params=replace_param(self.params, name, value))

    def with_params(self, **kv: str | None) -> SipUri:
        """Return a copy with each keyword set as a parameter (None means valueless)."""
        params = self.params
        for name, value in kv.items():
            params = replace_param(params, name, value)
        return replace(self, params=params)

    def without_param(self, name: str) -> SipUri:
        """Return a copy without parameter ``name`` (case-insensitive)."""
        return replace(self, params=remove_param(self.params, name))

    def without_headers(self) -> SipUri:
        """Return a copy without ``?headers`` (e.g. to use a Contact as a Request-URI)."""
        return replace(self, headers=())

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            parts.append("@")
        parts.append(self.host_port)
        parts.append(format_params(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{name}={value}" for name, value in self.headers))
        return "".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class AbsoluteUri:
    """A URI of another scheme (``tel:``, ``http:``, ``urn:`` ...), kept opaque.

    Attributes:
        scheme: the scheme, lowercased.
        opaque: everything after the first ``:``.
    """

    scheme: str
    opaque: str

    def __post_init__(self) -> None:
        if _SCHEME_RE.fullmatch(self.scheme) is None or not self.opaque:
            raise LocalProtocolError("AbsoluteUri needs a scheme and opaque text")
        if _UNSAFE_RE.search(self.opaque):
            raise LocalProtocolError("AbsoluteUri contains unsafe characters")

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


def parse_uri(text: str) -> SipUri | AbsoluteUri:
    """Parse one URI (no surrounding ``<>``, no whitespace).

    Args:
        text: the URI text, e.g. ``"sips:alice@example.com;transport=tls"``.

    Returns:
        A :class:`SipUri` for ``sip:``/``sips:``, else an :class:`AbsoluteUri`.

    Raises:
        RemoteProtocolError: 400 when the text is not a URI.
    """
    scheme, sep, rest = text.partition(":")
    if not sep or _SCHEME_RE.fullmatch(scheme) is None:
        raise bad("URI: bad or missing scheme")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip_uri(scheme, rest)
    if not rest or not rest.isascii() or any(ch <= " " or ch in _FORBIDDEN_OPAQUE for ch in rest):
        raise bad("URI: bad characters")
    return AbsoluteUri(scheme=scheme, opaque=rest)


def _parse_sip_uri(scheme: str, rest: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, sep, pw = userinfo.partition(":")
        password = pw if sep else None
        if not user:
            raise bad("SIP URI: empty user")
        _check_chars(user, _USER_RE, "SIP URI user")
        if password is not None:
            _check_chars(password, _PASSWORD_RE, "SIP URI password")
    rest, has_headers, header_text = rest.partition("?")
    hostport, has_params, param_text = rest.partition(";")
    host, port = split_hostport(hostport, "SIP URI")
    params = _parse_uri_params(param_text) if has_params else ()
    headers = _parse_uri_headers(header_text) if has_headers else ()
    try:
        return SipUri(
            scheme=scheme,
            user=user,
            password=password,
            host=host,
            port=port,
            params=params,
            headers=headers,
        )
    except LocalProtocolError as exc:  # pragma: no cover - validated above
        raise bad("SIP URI: invalid") from exc


def _parse_uri_params(text: str) -> Params:
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, sep, value = item.partition("=")
        if not name or (sep and not value):
            raise bad("SIP URI: empty parameter")
        _check_chars(name, _PARAM_RE, "SIP URI parameter")
        if sep:
            _check_chars(value, _PARAM_RE, "SIP URI parameter")
        params.append((name, value if sep else None))
    return tuple(params)


def _parse_uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for item in text.split("&"):
        name, sep, value = item.partition("=")
        if not name or not sep:
            raise bad("SIP URI: malformed header")
        _check_chars(name, _HEADER_RE, "SIP URI header")
        _check_chars(value, _HEADER_RE, "SIP URI header")
        headers.append((name, value))
    return tuple(headers)


def _escaped_re(chars: frozenset[str]) -> re.Pattern[str]:
    """``*( chars / "%" HEXDIG HEXDIG )`` as a compiled pattern."""
    return re.compile("(?:[" + re.escape("".join(sorted(chars))) + "]|%[0-9A-Fa-f]{2})*")


_USER_RE = _escaped_re(_USER_CHARS)
_PASSWORD_RE = _escaped_re(_PASSWORD_CHARS)
_PARAM_RE = _escaped_re(_PARAM_CHARS)
_HEADER_RE = _escaped_re(_HEADER_CHARS)


def _check_chars(text: str, pattern: re.Pattern[str], what: str) -> None:
    """Check ``text`` against a character class plus ``%HH`` escapes.

    Raises:
        RemoteProtocolError: 400 on a disallowed character or a broken escape.
    """
    if pattern.fullmatch(text) is None:
        raise bad(f"{what}: bad character or escape")
