"""Authentication header values: challenges and credentials (RFC 3261 sections 22 and 25.1).

Theory of operation: this module owns the text of four header fields. A challenge is the
value of one ``WWW-Authenticate`` or ``Proxy-Authenticate`` field; credentials are the value
of one ``Authorization`` or ``Proxy-Authorization`` field. Both have the same shape::

    scheme LWS auth-param *(COMMA auth-param)
    auth-param = token EQUAL ( token / quoted-string )

:func:`parse_challenge` and :func:`parse_credentials` turn a field value into a
:class:`DigestChallenge` / :class:`DigestCredentials`, or into :class:`UnknownAuthScheme` for
any other scheme (``Basic``, ``NoOneKnowsThisScheme`` of RFC 4475 regaut01): the remainder
of such a value is kept verbatim and never interpreted. ``str()`` of each value is its wire
form. Parsing is strict about structure (unbalanced quotes, control characters, missing
``=``, duplicate or missing mandatory directives raise :class:`RemoteProtocolError` 400) and
lenient about style (directive names in any case, ``algorithm="MD5"`` quoted, unknown
directives kept in ``extra``). Digest arithmetic lives in :mod:`sip_gateway.sip.auth`; this
module never hashes and never sees a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DigestChallenge",
    "DigestCredentials",
    "UnknownAuthScheme",
    "parse_challenge",
    "parse_credentials",
]

# RFC 3261 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# An unquoted directive value: a token in the grammar; we also take any other visible ASCII
# except DQUOTE, comma and backslash (slashes and colons appear in the wild).
_BARE_VALUE = re.compile(r"[!#-+\--\[\]-~]+")
# quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE, qdtext taking UTF-8 beyond ASCII.
_QUOTED = re.compile(
    r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"'
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_WSP = re.compile(r"[ \t]*")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# After unfolding, a value may hold no line break, no other control but TAB, no surrogate.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_NEEDS_ESCAPE = re.compile(r'["\\]')
_NC = re.compile(r"[0-9A-Fa-f]{8}")

_CHALLENGE_KNOWN = ("realm", "domain", "nonce", "opaque", "stale", "algorithm", "qop")
_CREDENTIALS_KNOWN = (
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "opaque",
    "qop",
    "nc",
)
_CREDENTIALS_REQUIRED = ("username", "realm", "nonce", "uri", "response")

Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownAuthScheme:
    """A challenge or credentials of a scheme other than Digest, kept verbatim.

    Attributes:
        scheme: the scheme token as received (``Basic``, ``NoOneKnowsThisScheme``).
        data: everything after the scheme, uninterpreted. Hidden from ``repr`` because
            ``Basic`` credentials carry a password.
    """

    scheme: str
    data: str = field(default="", repr=False)

    def __str__(self) -> str:
        _require_token("scheme", self.scheme)
        if _FORBIDDEN.search(self.data):
            raise LocalProtocolError("an authentication header cannot hold control characters")
        return f"{self.scheme} {self.data}" if self.data else self.scheme


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestChallenge:
    """One Digest challenge (RFC 3261 22.4, RFC 7616 3.3, RFC 8760).

    Attributes:
        realm: the protection domain; the realm string alone identifies it in SIP.
        nonce: the server's nonce.
        algorithm: the algorithm token as received, or None when absent (meaning MD5).
        qop: the qop-options tokens, or None when the challenge carries no qop
            (an RFC 2069 style challenge).
        opaque: the opaque string to echo, if any.
        stale: True when the server rejected a previous answer only because its nonce
            was stale (any value but ``true`` means False).
        domain: the domain directive, if any (kept, unused in SIP).
        extra: unknown directives, names as received, values unquoted.
    """

    realm: str
    nonce: str
    algorithm: str | None = None
    qop: tuple[str, ...] | None = None
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    extra: Params = ()

    def __str__(self) -> str:
        parts = [_quoted_param("realm", self.realm)]
        if self.domain is not None:
            parts.append(_quoted_param("domain", self.domain))
        parts.append(_quoted_param("nonce", self.nonce))
        if self.opaque is not None:
            parts.append(_quoted_param("opaque", self.opaque))
        if self.stale:
            parts.append("stale=true")
        if self.algorithm is not None:
            parts.append(_token_param("algorithm", self.algorithm))
        if self.qop is not None:
            for option in self.qop:
                _require_token("qop", option)
            parts.append(_quoted_param("qop", ",".join(self.qop)))
        parts.extend(_extra_params(self.extra, _CHALLENGE_KNOWN))
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestCredentials:
    """One Digest credentials value: the answer to a challenge (RFC 3261 22.4).

    Attributes:
        username: the user name.
        realm: the realm these credentials are for.
        nonce: the server nonce being answered.
        uri: the digest-uri, a copy of the Request-URI.
        response: the request-digest (hex). Hidden from ``repr``: it allows offline
            password guessing.
        algorithm: the algorithm token as sent, or None (meaning MD5).
        cnonce: the client nonce (with qop).
        opaque: the challenge's opaque string, echoed.
        qop: the quality of protection chosen (``auth`` / ``auth-int``), None in
            RFC 2069 style.
        nc: the nonce count, eight hex digits exactly as sent (with qop).
        extra: unknown directives, names as received, values unquoted.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None
    extra: Params = ()

    @property
    def nonce_count(self) -> int | None:
        """The nonce count as a number, or None without ``nc``."""
        return None if self.nc is None else int(self.nc, 16)

    def __str__(self) -> str:
        parts = [
            _quoted_param("username", self.username),
            _quoted_param("realm", self.realm),
            _quoted_param("nonce", self.nonce),
            _quoted_param("uri", self.uri),
            _quoted_param("response", self.response),
        ]
        if self.algorithm is not None:
            parts.append(_token_param("algorithm", self.algorithm))
        if self.cnonce is not None:
            parts.append(_quoted_param("cnonce", self.cnonce))
        if self.opaque is not None:
            parts.append(_quoted_param("opaque", self.opaque))
        if self.qop is not None:
            parts.append(_token_param("qop", self.qop))
        if self.nc is not None:
            if not _NC.fullmatch(self.nc):
                raise LocalProtocolError("nc must be eight hexadecimal digits")
            parts.append(f"nc={self.nc}")
        parts.extend(_extra_params(self.extra, _CREDENTIALS_KNOWN))
        return "Digest " + ", ".join(parts)


def parse_challenge(value: str) -> DigestChallenge | UnknownAuthScheme:
    """Parse one ``WWW-Authenticate`` / ``Proxy-Authenticate`` field value.

    Args:
        value: the field value (folded continuation lines allowed).

    Returns:
        The Digest challenge, or the verbatim value of any other scheme.

    Raises:
        RemoteProtocolError: (400) the value is malformed, or a Digest challenge lacks
            ``realm`` or ``nonce`` or repeats a directive.
    """
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        return UnknownAuthScheme(scheme=scheme, data=rest)
    params = _parse_params(rest)
    known, extra = _pick_known(params, _CHALLENGE_KNOWN)
    for name in ("realm", "nonce"):
        if name not in known:
            raise RemoteProtocolError(f"Digest challenge lacks {name!r}")
    qop = known.get("qop")
    return DigestChallenge(
        realm=known["realm"],
        nonce=known["nonce"],
        algorithm=_optional_token(known, "algorithm"),
        qop=None if qop is None else _parse_qop_options(qop),
        opaque=known.get("opaque"),
        stale=known.get("stale", "").lower() == "true",
        domain=known.get("domain"),
        extra=extra,
    )


def parse_credentials(value: str) -> DigestCredentials | UnknownAuthScheme:
    """Parse one ``Authorization`` / ``Proxy-Authorization`` field value.

    Args:
        value: the field value (folded continuation lines allowed).

    Returns:
        The Digest credentials, or the verbatim value of any other scheme.

    Raises:
        RemoteProtocolError: (400) the value is malformed, or Digest credentials lack one
            of username, realm, nonce, uri, response, repeat a directive, carry an ``nc``
            that is not eight hex digits, or carry ``qop`` without ``nc`` and ``cnonce``.
    """
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        return UnknownAuthScheme(scheme=scheme, data=rest)
    params = _parse_params(rest)
    known, extra = _pick_known(params, _CREDENTIALS_KNOWN)
    for name in _CREDENTIALS_REQUIRED:
        if name not in known:
            raise RemoteProtocolError(f"Digest credentials lack {name!r}")
    nc = known.get("nc")
    if nc is not None and not _NC.fullmatch(nc):
        raise RemoteProtocolError("Digest nc is not eight hexadecimal digits")
    qop = _optional_token(known, "qop")
    if qop is not None and (nc is None or "cnonce" not in known):
        raise RemoteProtocolError("Digest credentials with qop lack nc or cnonce")
    return DigestCredentials(
        username=known["username"],
        realm=known["realm"],
        nonce=known["nonce"],
        uri=known["uri"],
        response=known["response"],
        algorithm=_optional_token(known, "algorithm"),
        cnonce=known.get("cnonce"),
        opaque=known.get("opaque"),
        qop=qop,
        nc=nc,
        extra=extra,
    )


# --- parsing helpers ---------------------------------------------------------------------


def _split_scheme(value: str) -> tuple[str, str]:
    """Unfold ``value`` and split it into its scheme token and the rest (stripped)."""
    text = _FOLD.sub(" ", value)
    if _FORBIDDEN.search(text):
        raise RemoteProtocolError("control character in an authentication header")
    text = text.strip(" \t")
    match = _TOKEN.match(text)
    if match is None:
        raise RemoteProtocolError("authentication header lacks a scheme")
    rest = text[match.end() :]
    if rest and rest[0] not in " \t":
        raise RemoteProtocolError("authentication scheme is not followed by whitespace")
    return match.group(), rest.lstrip(" \t")


def _parse_params(text: str) -> list[tuple[str, str]]:
    """Parse ``auth-param *(COMMA auth-param)``; quoted values come back unescaped."""
    params: list[tuple[str, str]] = []
    pos = 0
    while True:
        name = _TOKEN.match(text, pos)
        if name is None:
            raise RemoteProtocolError("expected a directive name in an authentication header")
        pos = _skip_ws(text, name.end())
        if not text.startswith("=", pos):
            raise RemoteProtocolError("expected '=' after a directive name")
        value, pos = _parse_value(text, _skip_ws(text, pos + 1))
        params.append((name.group(), value))
        pos = _skip_ws(text, pos)
        if pos == len(text):
            return params
        if text[pos] != ",":
            raise RemoteProtocolError("expected ',' between directives")
        pos = _skip_ws(text, pos + 1)


def _parse_value(text: str, pos: int) -> tuple[str, int]:
    """Parse a token or quoted-string at ``pos``; return the value and the next position."""
    if text.startswith('"', pos):
        quoted = _QUOTED.match(text, pos)
        if quoted is None:
            raise RemoteProtocolError("malformed quoted string in an authentication header")
        return _QUOTED_PAIR.sub(r"\1", quoted.group(1)), quoted.end()
    bare = _BARE_VALUE.match(text, pos)
    if bare is None:
        raise RemoteProtocolError("expected a directive value in an authentication header")
    return bare.group(), bare.end()


def _skip_ws(text: str, pos: int) -> int:
    match = _WSP.match(text, pos)
    return pos if match is None else match.end()


def _pick_known(
    params: list[tuple[str, str]], known_names: tuple[str, ...]
) -> tuple[dict[str, str], Params]:
    """Split directives into known ones (by lower-case name) and the rest; no repeats."""
    seen: set[str] = set()
    known: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for name, value in params:
        lowered = name.lower()
        if lowered in seen:
            raise RemoteProtocolError(f"directive {lowered!r} appears twice")
        seen.add(lowered)
        if lowered in known_names:
            known[lowered] = value
        else:
            extra.append((name, value))
    return known, tuple(extra)


def _optional_token(known: dict[str, str], name: str) -> str | None:
    value = known.get(name)
    if value is not None and not _TOKEN.fullmatch(value):
        raise RemoteProtocolError(f"directive {name!r} is not a token")
    return value


def _parse_qop_options(value: str) -> tuple[str, ...]:
    options = tuple(part.strip(" \t") for part in value.split(","))
    if not all(_TOKEN.fullmatch(option) for option in options):
        raise RemoteProtocolError("qop options are not a list of tokens")
    return options


# --- serializing helpers -----------------------------------------------------------------


def _quote(value: str) -> str:
    if _FORBIDDEN.search(value):
        raise LocalProtocolError("an authentication directive cannot hold control characters")
    return '"' + _NEEDS_ESCAPE.sub(lambda m: "\\" + m.group(), value) + '"'


def _require_token(name: str, value: str) -> None:
    if not _TOKEN.fullmatch(value):
        raise LocalProtocolError(f"directive {name!r} must be a token")


def _quoted_param(name: str, value: str) -> str:
    return f"{name}={_quote(value)}"


def _token_param(name: str, value: str) -> str:
    _require_token(name, value)
    return f"{name}={value}"


def _extra_params(extra: Params, known_names: tuple[str, ...]) -> list[str]:
    parts = []
    seen: set[str] = set()
    for name, value in extra:
        _require_token("extra", name)
        if name.lower() in known_names or name.lower() in seen:
            raise LocalProtocolError(f"extra directive {name!r} repeats a directive")
        seen.add(name.lower())
        parts.append(f"{name}={value}" if _TOKEN.fullmatch(value) else _quoted_param(name, value))
    return parts
