"""SDP attributes: the raw ``a=`` line and typed views of the common ones.

Theory of operation: a session description keeps every ``a=`` line as an
:class:`Attribute` (name and raw value, in wire order), so serializing a parsed
description gives back the same text. The classes here parse one attribute *value*
on demand (``RtpMap.parse("0 PCMU/8000")``) and ``str()`` it back; they never hold a
reference to the session. Malformed values raise :class:`SdpParseError`.

Secrets: ``a=crypto`` (SRTP keys), ``a=ice-pwd`` and ``a=key-mgmt`` carry key
material. :class:`Attribute` redacts them in ``repr`` and :func:`redact_attribute`
gives the safe text for logs and errors; only ``str()`` (the SDP itself) shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sip_gateway.sdp.errors import SdpParseError

__all__ = [
    "Attribute",
    "Candidate",
    "Direction",
    "Extmap",
    "Fmtp",
    "Group",
    "Rtcp",
    "RtpMap",
    "Ssrc",
    "redact_attribute",
]

_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_DIGITS = re.compile(r"[0-9]{1,10}")
_INLINE_KEY = re.compile(r"(inline:)[^|;\s]*", re.IGNORECASE)
_SECRET_ATTRIBUTES = frozenset({"ice-pwd", "key-mgmt"})
_REDACTED = "<redacted>"


def redact_attribute(name: str, value: str | None) -> str | None:
    """Return ``value`` with any key material replaced by ``<redacted>``.

    Args:
        name: the attribute name (case-insensitive).
        value: the raw attribute value.

    Returns:
        The value, safe to log: ``inline:`` keys of ``a=crypto`` are masked, the whole
        value of ``a=ice-pwd`` and ``a=key-mgmt`` is masked.
    """
    if value is None:
        return None
    lowered = name.lower()
    if lowered in _SECRET_ATTRIBUTES:
        return _REDACTED
    if lowered == "crypto":
        return _INLINE_KEY.sub(r"\1" + _REDACTED, value)
    return value


def is_token(text: str) -> bool:
    """Return True if ``text`` is an RFC 8866 ``token`` (non-empty)."""
    return _TOKEN.fullmatch(text) is not None


def parse_int(text: str, what: str, low: int, high: int) -> int:
    """Parse a bounded decimal integer field.

    Raises:
        SdpParseError: ``text`` is not 1-10 digits or lies outside ``[low, high]``.
    """
    if _DIGITS.fullmatch(text) is None:
        raise SdpParseError(f"malformed {what}: expected a decimal number")
    number = int(text)
    if not low <= number <= high:
        raise SdpParseError(f"{what} {number} out of range {low}..{high}")
    return number


@dataclass(frozen=True, slots=True, repr=False)
class Attribute:
    """One ``a=`` line: ``a=<name>`` (flag, ``value is None``) or ``a=<name>:<value>``."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        """Parse the text after ``a=``.

        Raises:
            SdpParseError: the name is not a token.
        """
        name, sep, value = text.partition(":")
        if not is_token(name):
            raise SdpParseError("malformed attribute name")
        return cls(name, value if sep else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"

    def __repr__(self) -> str:
        return f"Attribute({self.name!r}, {redact_attribute(self.name, self.value)!r})"


class Direction(StrEnum):
    """Media direction attributes of RFC 3264, from the point of view of the SDP's author."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """True if the author of the SDP sends media."""
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        """True if the author of the SDP receives media."""
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        """Return the direction with the given send and receive flags."""
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """Return the same stream seen from the other end (sendonly <-> recvonly)."""
        return Direction.from_flags(sends=self.receives, receives=self.sends)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]``."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        """Parse an rtpmap value such as ``111 opus/48000/2``.

        Raises:
            SdpParseError: the value is malformed.
        """
        pt_text, _, encoding = value.partition(" ")
        parts = encoding.strip().split("/")
        if len(parts) not in (2, 3) or not is_token(parts[0]):
            raise SdpParseError("malformed a=rtpmap")
        channels = parse_int(parts[2], "rtpmap channels", 1, 255) if len(parts) == 3 else None
        return cls(
            payload_type=parse_int(pt_text, "payload type", 0, 127),
            encoding=parts[0],
            clock_rate=parse_int(parts[1], "clock rate", 1, 10_000_000),
            channels=channels,
        )

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fmtp:
    """``a=fmtp:<format> <format specific parameters>``."""

    format: str
    parameters: str

    @classmethod
    def parse(cls, value: str) -> Fmtp:
        """Parse an fmtp value such as ``101 0-16``.

        Raises:
            SdpParseError: the format is missing.
        """
        fmt, _, parameters = value.partition(" ")
        if not is_token(fmt):
            raise SdpParseError("malformed a=fmtp")
        return cls(format=fmt, parameters=parameters)

    def params(self) -> dict[str, str | None]:
        """Split ``key=value;key2=value2`` parameters (keys lowercased)."""
        result: dict[str, str | None] = {}
        for item in self.parameters.split(";"):
            key, sep, val = item.strip().partition("=")
            if key:
                result[key.lower()] = val if sep else None
        return result

    def __str__(self) -> str:
        return f"{self.format} {self.parameters}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605)."""

    port: int
    network_type: str | None = None
    address_type: str | None = None
    address: str | None = None

    @classmethod
    def parse(cls, value: str) -> Rtcp:
        """Parse an rtcp value such as ``9 IN IP4 0.0.0.0``.

        Raises:
            SdpParseError: the value is malformed.
        """
        parts = value.split(" ")
        port = parse_int(parts[0], "a=rtcp port", 0, 65535)
        if len(parts) == 1:
            return cls(port=port)
        if len(parts) != 4 or not all(is_token(p) for p in parts[1:3]) or not parts[3]:
            raise SdpParseError("malformed a=rtcp")
        return cls(port=port, network_type=parts[1], address_type=parts[2], address=parts[3])

    def __str__(self) -> str:
        if self.address is None:
            return str(self.port)
        return f"{self.port} {self.network_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """``a=group:<semantics> <mid> ...`` (RFC 5888), e.g. ``BUNDLE 0 1``."""

    semantics: str
    mids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Group:
        """Parse a group value.

        Raises:
            SdpParseError: the semantics token is missing.
        """
        parts = value.split(" ")
        if not is_token(parts[0]):
            raise SdpParseError("malformed a=group")
        return cls(semantics=parts[0], mids=tuple(p for p in parts[1:] if p))

    def __str__(self) -> str:
        return " ".join((self.semantics, *self.mids))


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """``a=candidate:`` (RFC 8839): one ICE candidate."""

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> Candidate:
        """Parse a candidate value (without the ``candidate:`` prefix).

        Raises:
            SdpParseError: the value is malformed.
        """
        parts = value.split()
        if len(parts) < 8 or parts[6] != "typ" or len(parts) % 2 != 0:
            raise SdpParseError("malformed a=candidate")
        pairs = list(zip(parts[8::2], parts[9::2], strict=True))
        related = dict(p for p in pairs if p[0] in ("raddr", "rport"))
        return cls(
            foundation=parts[0],
            component=parse_int(parts[1], "candidate component", 1, 256),
            transport=parts[2],
            priority=parse_int(parts[3], "candidate priority", 0, 2**32 - 1),
            address=parts[4],
            port=parse_int(parts[5], "candidate port", 0, 65535),
            type=parts[7],
            related_address=related.get("raddr"),
            related_port=(
                parse_int(related["rport"], "candidate rport", 0, 65535)
                if "rport" in related
                else None
            ),
            extensions=tuple(p for p in pairs if p[0] not in ("raddr", "rport")),
        )

    def extension(self, name: str) -> str | None:
        """Return the value of an extension attribute such as ``generation`` or ``ufrag``."""
        return next((v for k, v in self.extensions if k == name), None)

    def __str__(self) -> str:
        words = [self.foundation, str(self.component), self.transport, str(self.priority)]
        words += [self.address, str(self.port), "typ", self.type]
        if self.related_address is not None:
            words += ["raddr", self.related_address]
        if self.related_port is not None:
            words += ["rport", str(self.related_port)]
        for key, val in self.extensions:
            words += [key, val]
        return " ".join(words)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ssrc:
    """``a=ssrc:<ssrc-id> <attribute>[:<value>]`` (RFC 5576)."""

    ssrc: int
    attribute: str
    value: str | None = None

    @classmethod
    def parse(cls, value: str) -> Ssrc:
        """Parse an ssrc value such as ``1001 cname:abc``.

        Raises:
            SdpParseError: the value is malformed.
        """
        ssrc_text, _, rest = value.partition(" ")
        name, sep, val = rest.partition(":")
        if not is_token(name):
            raise SdpParseError("malformed a=ssrc")
        ssrc = parse_int(ssrc_text, "ssrc", 0, 2**32 - 1)
        return cls(ssrc=ssrc, attribute=name, value=val if sep else None)

    def __str__(self) -> str:
        tail = f":{self.value}" if self.value is not None else ""
        return f"{self.ssrc} {self.attribute}{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Extmap:
    """``a=extmap:<id>[/<direction>] <uri> [<extension attributes>]`` (RFC 8285)."""

    id: int
    uri: str
    direction: Direction | None = None
    attributes: str | None = None

    @classmethod
    def parse(cls, value: str) -> Extmap:
        """Parse an extmap value such as ``1 urn:ietf:params:rtp-hdrext:ssrc-audio-level``.

        Raises:
            SdpParseError: the value is malformed.
        """
        head, _, rest = value.partition(" ")
        uri, sep, attributes = rest.partition(" ")
        id_text, slash, direction_text = head.partition("/")
        if not uri:
            raise SdpParseError("malformed a=extmap")
        try:
            direction = Direction(direction_text) if slash else None
        except ValueError:
            raise SdpParseError("malformed a=extmap direction") from None
        return cls(
            id=parse_int(id_text, "extmap id", 1, 4095),
            uri=uri,
            direction=direction,
            attributes=attributes if sep else None,
        )

    def __str__(self) -> str:
        head = f"{self.id}/{self.direction}" if self.direction is not None else str(self.id)
        tail = f" {self.attributes}" if self.attributes is not None else ""
        return f"{head} {self.uri}{tail}"
