"""SDES ``a=crypto`` attributes (RFC 4568, with the suites of RFC 6188 and RFC 7714).

Theory of operation: :class:`CryptoAttribute` is the parsed value of one
``a=crypto:<tag> <suite> <key params> [<session params>]`` line. It validates the
syntax and, for suites it knows, the length of each ``inline:`` key (master key ||
master salt). It takes no policy decision: which suites, MKIs or session parameters
are acceptable is decided by :mod:`sip_gateway.sdp.offer_answer`.

Secrets: the key material lives only in :attr:`KeyParams.key_salt`, a
``field(repr=False)``. ``repr()`` of every class here and every error message omit
it; ``str()`` re-serializes the attribute value *for the SDP body only*, which is the
one place SDES keys are allowed to go. Never log ``str()`` of these objects.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sip_gateway.sdp.attributes import Attribute, parse_int, redact_attribute
from sip_gateway.sdp.errors import SdpParseError

__all__ = ["SUITES", "CryptoAttribute", "CryptoSuite", "KeyParams"]

_SUITE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_LIFETIME = re.compile(r"[0-9]{1,20}")
_MAX_LIFETIME_EXPONENT = 64
_MAX_TAG = 999_999_999


@dataclass(frozen=True, slots=True, kw_only=True)
class CryptoSuite:
    """An SRTP crypto suite and the sizes of its master key and salt."""

    name: str
    master_key_length: int
    master_salt_length: int

    @property
    def key_salt_length(self) -> int:
        """Bytes of the ``inline:`` key: master key followed by master salt."""
        return self.master_key_length + self.master_salt_length


def _suites(*entries: tuple[str, int, int]) -> Mapping[str, CryptoSuite]:
    table = {
        n: CryptoSuite(name=n, master_key_length=k, master_salt_length=s) for n, k, s in entries
    }
    return MappingProxyType(table)


SUITES: Mapping[str, CryptoSuite] = _suites(
    ("AES_CM_128_HMAC_SHA1_80", 16, 14),  # RFC 4568
    ("AES_CM_128_HMAC_SHA1_32", 16, 14),  # RFC 4568
    ("F8_128_HMAC_SHA1_80", 16, 14),  # RFC 4568
    ("AES_192_CM_HMAC_SHA1_80", 24, 14),  # RFC 6188
    ("AES_192_CM_HMAC_SHA1_32", 24, 14),  # RFC 6188
    ("AES_256_CM_HMAC_SHA1_80", 32, 14),  # RFC 6188
    ("AES_256_CM_HMAC_SHA1_32", 32, 14),  # RFC 6188
    ("AES_CM_256_HMAC_SHA1_80", 32, 14),  # non-standard alias seen in the field
    ("AES_CM_256_HMAC_SHA1_32", 32, 14),  # non-standard alias seen in the field
    ("AEAD_AES_128_GCM", 16, 12),  # RFC 7714
    ("AEAD_AES_256_GCM", 32, 12),  # RFC 7714
)
"""Suites whose key length is known and therefore validated when parsed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyParams:
    """One ``inline:<key||salt>[|<lifetime>][|<MKI>:<MKI length>]`` key parameter.

    Attributes:
        key_salt: master key followed by master salt (secret, never in repr).
        lifetime: maximum number of packets protected with this key, if given.
        lifetime_power: True when the lifetime was written as ``2^n``.
        mki: the master key identifier value, if given.
        mki_length: length of the MKI field in bytes (1-128), if given.
    """

    key_salt: bytes = field(repr=False)
    lifetime: int | None = None
    lifetime_power: bool = False
    mki: int | None = None
    mki_length: int | None = None

    def __post_init__(self) -> None:
        if (self.mki is None) != (self.mki_length is None):
            raise ValueError("mki and mki_length go together")
        if self.mki_length is not None and not 1 <= self.mki_length <= 128:
            raise ValueError("MKI length must be 1..128")
        if self.mki is not None and self.mki_length and self.mki >= 256**self.mki_length:
            raise ValueError("MKI value does not fit its length")
        if self.lifetime is not None and self.lifetime < 1:
            raise ValueError("lifetime must be positive")
        if self.lifetime_power and (self.lifetime is None or self.lifetime.bit_count() != 1):
            raise ValueError("lifetime_power needs a lifetime that is a power of two")

    @classmethod
    def parse(cls, text: str) -> KeyParams:
        """Parse one key parameter (``inline:...``).

        Raises:
            SdpParseError: the key method is not ``inline`` or the parameter is malformed.
        """
        method, sep, rest = text.partition(":")
        if not sep or method.lower() != "inline":
            raise SdpParseError("a=crypto key method is not inline")
        key_text, *extras = rest.split("|")
        if len(extras) > 2:
            raise SdpParseError("malformed a=crypto key parameter")
        lifetime: tuple[int, bool] | None = None
        mki: tuple[int, int] | None = None
        for i, extra in enumerate(extras):
            if ":" in extra and i == len(extras) - 1:
                mki = _parse_mki(extra)
            elif i == 0:
                lifetime = _parse_lifetime(extra)
            else:
                raise SdpParseError("malformed a=crypto key parameter")
        return cls(
            key_salt=_decode_key(key_text),
            lifetime=lifetime[0] if lifetime else None,
            lifetime_power=lifetime[1] if lifetime else False,
            mki=mki[0] if mki else None,
            mki_length=mki[1] if mki else None,
        )

    def __str__(self) -> str:
        """Serialize for the SDP body. Contains the key: never log it."""
        text = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            power = f"2^{self.lifetime.bit_length() - 1}"
            text += f"|{power}" if self.lifetime_power else f"|{self.lifetime}"
        if self.mki is not None:
            text += f"|{self.mki}:{self.mki_length}"
        return text


def _decode_key(text: str) -> bytes:
    if _BASE64.fullmatch(text) is None:
        raise SdpParseError("a=crypto key is not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SdpParseError("a=crypto key is not base64") from None


def _parse_lifetime(text: str) -> tuple[int, bool]:
    if text.startswith("2^"):
        exponent = parse_int(text[2:], "a=crypto lifetime exponent", 0, _MAX_LIFETIME_EXPONENT)
        return 1 << exponent, True
    if _LIFETIME.fullmatch(text) is None or int(text) == 0:
        raise SdpParseError("malformed a=crypto lifetime")
    return int(text), False


def _parse_mki(text: str) -> tuple[int, int]:
    value_text, _, length_text = text.partition(":")
    length = parse_int(length_text, "a=crypto MKI length", 1, 128)
    if not value_text.isdigit() or not value_text.isascii() or len(value_text) > 310:
        raise SdpParseError("malformed a=crypto MKI")
    value = int(value_text)
    if value >= 256**length:
        raise SdpParseError("a=crypto MKI value does not fit its length")
    return value, length


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CryptoAttribute:
    """The value of one ``a=crypto`` line.

    Attributes:
        tag: the decimal tag (0-999999999) the answer mirrors.
        suite: the crypto suite name, e.g. ``AES_CM_128_HMAC_SHA1_80``.
        key_params: one or more key parameters (keys hidden from repr).
        session_params: session parameters as written, e.g. ``("KDR=0", "WSH=128")``.
    """

    tag: int
    suite: str
    key_params: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.tag <= _MAX_TAG:
            raise ValueError("a=crypto tag must be 0..999999999")
        if _SUITE_NAME.fullmatch(self.suite) is None:
            raise ValueError("a=crypto suite name is malformed")
        if not self.key_params:
            raise ValueError("a=crypto needs at least one key parameter")
        known = SUITES.get(self.suite)
        for params in self.key_params:
            if known is not None and len(params.key_salt) != known.key_salt_length:
                raise ValueError(
                    f"{self.suite} needs a {known.key_salt_length}-byte key||salt,"
                    f" got {len(params.key_salt)} bytes"
                )
        if any(not p or any(c.isspace() for c in p) for p in self.session_params):
            raise ValueError("a=crypto session parameters must be non-empty words")

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """Parse the value after ``a=crypto:``.

        Raises:
            SdpParseError: the value is malformed or a key has the wrong length for
                its suite. The message never contains key material.
        """
        words = value.split()
        if len(words) < 3:
            raise SdpParseError("malformed a=crypto: expected tag, suite and key parameters")
        tag = parse_int(words[0], "a=crypto tag", 0, _MAX_TAG)
        key_params = tuple(KeyParams.parse(p) for p in words[2].split(";"))
        try:
            return cls(
                tag=tag, suite=words[1], key_params=key_params, session_params=tuple(words[3:])
            )
        except ValueError as exc:
            raise SdpParseError(f"invalid a=crypto: {exc}") from None

    @classmethod
    def create(cls, *, tag: int, suite: str, key_salt: bytes) -> CryptoAttribute:
        """Build a fresh local attribute with one key, no lifetime and no MKI.

        Raises:
            ValueError: unknown suite or wrong key length (local misuse).
        """
        if suite not in SUITES:
            raise ValueError(f"unknown crypto suite {suite}")
        return cls(tag=tag, suite=suite, key_params=(KeyParams(key_salt=key_salt),))

    @property
    def key_salt(self) -> bytes:
        """The first key parameter's master key || master salt (secret)."""
        return self.key_params[0].key_salt

    @property
    def has_mki(self) -> bool:
        """True if any key parameter carries an MKI."""
        return any(p.mki is not None for p in self.key_params)

    def to_attribute(self) -> Attribute:
        """Return the ``a=crypto`` attribute for an SDP body."""
        return Attribute("crypto", str(self))

    def __str__(self) -> str:
        """Serialize for the SDP body. Contains the keys: never log it."""
        keys = ";".join(str(p) for p in self.key_params)
        return " ".join((str(self.tag), self.suite, keys, *self.session_params))

    def __repr__(self) -> str:
        params = tuple(redact_attribute("crypto", p) for p in self.session_params)
        return (
            f"CryptoAttribute(tag={self.tag}, suite={self.suite!r},"
            f" key_params={self.key_params!r}, session_params={params!r})"
        )
