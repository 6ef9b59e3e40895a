"""Digest arithmetic: algorithms, HA1 and request-digest (RFC 7616 section 3.4, RFC 8760).

Theory of operation: pure functions over strings. :class:`DigestAlgorithm` names the
algorithms of the IANA "HTTP Digest Hash Algorithms" registry that RFC 8760 brings to SIP
(MD5, SHA-256, SHA-512-256 and their ``-sess`` variants); :func:`compute_ha1` gives the
value a server stores instead of a password; :func:`compute_response` gives the
request-digest both sides compare. Strings are hashed as UTF-8, lone surrogates passed
through so that hashing never fails. Nothing here keeps state, reads a clock or logs.
"""

from __future__ import annotations

import enum
import hashlib
import re

from .errors import LocalProtocolError

__all__ = ["DigestAlgorithm", "check_ha1", "compute_ha1", "compute_response"]


class DigestAlgorithm(enum.Enum):
    """Digest algorithms of the IANA registry that RFC 8760 brings to SIP; values are tokens."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    SHA_512_256 = "SHA-512-256"
    SHA_512_256_SESS = "SHA-512-256-sess"

    @classmethod
    def from_token(cls, token: str | None) -> DigestAlgorithm | None:
        """The algorithm a directive names (absent means MD5), or None if unsupported."""
        if token is None:
            return cls.MD5
        return _ALGORITHMS_BY_TOKEN.get(token.lower())

    @property
    def is_session(self) -> bool:
        """True for the ``-sess`` variants, whose HA1 also covers nonce and cnonce."""
        return self.value.endswith("-sess")

    @property
    def base(self) -> DigestAlgorithm:
        """The variant without ``-sess``: the one a stored HA1 belongs to."""
        return DigestAlgorithm(self.value.removesuffix("-sess"))

    @property
    def hex_length(self) -> int:
        """Length of this algorithm's hex digests (32 for MD5, 64 otherwise)."""
        return 32 if self.base is DigestAlgorithm.MD5 else 64

    def hexdigest(self, data: bytes) -> str:
        """H(data): the lower-case hex digest of ``data``."""
        return hashlib.new(_HASH_NAMES[self.base.value], data).hexdigest()


_HASH_NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_ALGORITHMS_BY_TOKEN = {
    algorithm.value.lower(): algorithm
    for algorithm in DigestAlgorithm
    if _HASH_NAMES[algorithm.base.value] in hashlib.algorithms_available
}

_HEX = re.compile(r"[0-9a-fA-F]+")


def compute_ha1(username: str, realm: str, password: str, algorithm: DigestAlgorithm | str) -> str:
    """H(username:realm:password), the value a server stores instead of the password.

    Args:
        username: the user name as sent in credentials.
        realm: the realm.
        password: the password; it is only hashed.
        algorithm: a :class:`DigestAlgorithm` or its token; a ``-sess`` variant gives the
            HA1 of its base algorithm (the stored one; the session HA1 needs a nonce).

    Returns:
        The lower-case hex HA1.

    Raises:
        LocalProtocolError: the algorithm is unknown or not available here.
    """
    resolved = _resolve(algorithm)
    return resolved.hexdigest(_utf8(f"{username}:{realm}:{password}"))


def compute_response(
    *,
    algorithm: DigestAlgorithm,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest of RFC 7616 section 3.4.1 (RFC 2069 form when ``qop`` is None).

    Args:
        algorithm: the algorithm; for ``-sess`` variants ``ha1`` is the stored HA1 and
            the session HA1 is derived here.
        ha1: the stored hex HA1 (see :func:`compute_ha1`).
        nonce: the server nonce.
        method: the request method.
        uri: the digest-uri.
        qop: ``auth``, ``auth-int`` or None.
        nc: the nonce count, eight hex digits as sent (with qop).
        cnonce: the client nonce (with qop or a ``-sess`` algorithm).
        body: the message body, hashed into A2 for ``auth-int``.

    Returns:
        The lower-case hex response.

    Raises:
        LocalProtocolError: qop or a ``-sess`` algorithm is used without nc/cnonce.
    """

    def hash_(text: str) -> str:
        return algorithm.hexdigest(_utf8(text))

    if algorithm.is_session:
        if cnonce is None:
            raise LocalProtocolError("a -sess algorithm needs a cnonce")
        ha1 = hash_(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop is not None and qop.lower() == "auth-int":
        a2 = f"{a2}:{algorithm.hexdigest(body)}"
    ha2 = hash_(a2)
    if qop is None:
        return hash_(f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise LocalProtocolError("qop needs nc and cnonce")
    return hash_(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _resolve(algorithm: DigestAlgorithm | str) -> DigestAlgorithm:
    if isinstance(algorithm, DigestAlgorithm):
        resolved: DigestAlgorithm | None = algorithm
    else:
        resolved = DigestAlgorithm.from_token(algorithm)
    if resolved is None or resolved.value.lower() not in _ALGORITHMS_BY_TOKEN:
        raise LocalProtocolError("unsupported digest algorithm")
    return resolved.base


def check_ha1(ha1: str, algorithm: DigestAlgorithm) -> str:
    """Return ``ha1`` in lower case, refusing anything that is not an HA1 (a password?).

    Raises:
        LocalProtocolError: ``ha1`` is not a hex digest of ``algorithm``'s length.
    """
    if len(ha1) != algorithm.hex_length or not _HEX.fullmatch(ha1):
        raise LocalProtocolError(
            f"a stored {algorithm.base.value} HA1 must be {algorithm.hex_length} hex digits"
        )
    return ha1.lower()
