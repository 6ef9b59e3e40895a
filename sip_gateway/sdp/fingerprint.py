"""DTLS-SRTP attributes: ``a=fingerprint`` (RFC 8122) and ``a=setup`` (RFC 4145, RFC 8842).

Theory of operation: a WebRTC peer proves which certificate it will present in the
DTLS handshake by a hash in the signaling. :class:`Fingerprint` parses and compares
those hashes (hash names and hex digits are case-insensitive) and can compute one
from a DER certificate with :mod:`hashlib`. :class:`SetupRole` parses ``a=setup``
and knows which role an answerer takes. Verifying the live DTLS certificate against
the fingerprint is the media layer's job; this module only carries the facts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from sip_gateway.sdp.attributes import Attribute
from sip_gateway.sdp.errors import SdpParseError

__all__ = ["HASH_LENGTHS", "Fingerprint", "SetupRole"]

HASH_LENGTHS: dict[str, int] = {
    "sha-1": 20,
    "sha-224": 28,
    "sha-256": 32,
    "sha-384": 48,
    "sha-512": 64,
    "md5": 16,
    "md2": 16,
}
"""Digest sizes of the hash functions of the IANA "Hash Function Textual Names" registry."""

_HASHLIB_NAMES = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256"}
_HASHLIB_NAMES |= {"sha-384": "sha384", "sha-512": "sha512"}
_HASH_NAME = re.compile(r"[A-Za-z0-9-]{1,32}")
_HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){0,127}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fingerprint:
    """``a=fingerprint:<hash function> <hex pairs>``, kept as written.

    Attributes:
        algorithm: the hash function name, e.g. ``sha-256``.
        value: colon-separated hex pairs, e.g. ``AB:CD:...``.
    """

    algorithm: str
    value: str

    @classmethod
    def parse(cls, value: str) -> Fingerprint:
        """Parse a fingerprint value.

        Raises:
            SdpParseError: malformed hash name or hex pairs, or a digest whose length
                does not match a known hash function.
        """
        algorithm, _, digest = value.strip().partition(" ")
        digest = digest.strip()
        if _HASH_NAME.fullmatch(algorithm) is None or _HEX_PAIRS.fullmatch(digest) is None:
            raise SdpParseError("malformed a=fingerprint")
        expected = HASH_LENGTHS.get(algorithm.lower())
        if expected is not None and (len(digest) + 1) // 3 != expected:
            raise SdpParseError(f"a=fingerprint {algorithm.lower()} digest has the wrong length")
        return cls(algorithm=algorithm, value=digest)

    @classmethod
    def from_digest(cls, algorithm: str, digest: bytes) -> Fingerprint:
        """Build a fingerprint from raw digest bytes (upper-case hex, as browsers write it)."""
        return cls(algorithm=algorithm.lower(), value=":".join(f"{b:02X}" for b in digest))

    @classmethod
    def of_certificate(cls, der: bytes, algorithm: str = "sha-256") -> Fingerprint:
        """Hash a DER-encoded certificate.

        Raises:
            ValueError: the hash function is not one of sha-1/224/256/384/512.
        """
        name = _HASHLIB_NAMES.get(algorithm.lower())
        if name is None:
            raise ValueError(f"unsupported fingerprint hash function {algorithm}")
        return cls.from_digest(algorithm, hashlib.new(name, der).digest())

    @property
    def digest(self) -> bytes:
        """The digest as bytes."""
        return bytes.fromhex(self.value.replace(":", ""))

    def matches(self, other: Fingerprint) -> bool:
        """Compare two fingerprints ignoring case."""
        same_algorithm = self.algorithm.lower() == other.algorithm.lower()
        return same_algorithm and self.value.upper() == other.value.upper()

    def to_attribute(self) -> Attribute:
        """Return the ``a=fingerprint`` attribute."""
        return Attribute("fingerprint", str(self))

    def __str__(self) -> str:
        return f"{self.algorithm} {self.value}"


class SetupRole(StrEnum):
    """``a=setup`` values: who starts the DTLS (or TCP) connection."""

    ACTPASS = "actpass"
    ACTIVE = "active"
    PASSIVE = "passive"
    HOLDCONN = "holdconn"

    @classmethod
    def parse(cls, value: str) -> SetupRole:
        """Parse an ``a=setup`` value (case-insensitive).

        Raises:
            SdpParseError: unknown role.
        """
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise SdpParseError("malformed a=setup") from None

    def answer(self) -> SetupRole:
        """Return the role an answerer takes for this offered role (RFC 8842 section 5.2).

        ``actpass`` is answered ``active`` (the answerer starts the handshake, which
        saves a round trip), ``active`` with ``passive``, ``passive`` with ``active``
        and ``holdconn`` with ``holdconn``.
        """
        return {
            SetupRole.ACTPASS: SetupRole.ACTIVE,
            SetupRole.ACTIVE: SetupRole.PASSIVE,
            SetupRole.PASSIVE: SetupRole.ACTIVE,
            SetupRole.HOLDCONN: SetupRole.HOLDCONN,
        }[self]

    def to_attribute(self) -> Attribute:
        """Return the ``a=setup`` attribute."""
        return Attribute("setup", self.value)
