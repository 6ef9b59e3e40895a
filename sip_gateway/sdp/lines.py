"""The typed ``o= c= b= t=`` lines of a session description (RFC 8866 section 5).

Theory of operation: each class parses one line value and ``str()`` writes it back
with single spaces. They hold no reference to the session; :mod:`.session` composes
them. Malformed values raise :class:`~sip_gateway.sdp.errors.SdpParseError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from sip_gateway.sdp.attributes import is_token
from sip_gateway.sdp.errors import SdpParseError

__all__ = ["Bandwidth", "Connection", "Origin", "Timing"]

_BIG_NUMBER = re.compile(r"[0-9]{1,20}")


def _big_int(text: str, what: str) -> int:
    if _BIG_NUMBER.fullmatch(text) is None:
        raise SdpParseError(f"malformed {what}")
    return int(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str = "-"
    session_id: str
    session_version: int
    network_type: str = "IN"
    address_type: str = "IP4"
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        """Parse an ``o=`` value.

        Raises:
            SdpParseError: not six fields, or a non-numeric session version.
        """
        parts = value.split()
        if len(parts) != 6 or not all(is_token(p) for p in parts[3:5]):
            raise SdpParseError("malformed o= line")
        return cls(
            username=parts[0],
            session_id=parts[1],
            session_version=_big_int(parts[2], "o= session version"),
            network_type=parts[3],
            address_type=parts[4],
            address=parts[5],
        )

    def next_version(self) -> Origin:
        """Return this origin with the session version incremented (for a new offer)."""
        return replace(self, session_version=self.session_version + 1)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version}"
            f" {self.network_type} {self.address_type} {self.address}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (address may carry ``/ttl/count``)."""

    network_type: str = "IN"
    address_type: str = "IP4"
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        """Parse a ``c=`` value.

        Raises:
            SdpParseError: not three fields.
        """
        parts = value.split()
        if len(parts) != 3 or not all(is_token(p) for p in parts[:2]):
            raise SdpParseError("malformed c= line")
        return cls(network_type=parts[0], address_type=parts[1], address=parts[2])

    @classmethod
    def for_host(cls, host: str) -> Connection:
        """Build ``IN IP4 <host>`` or, for an address containing ``:``, ``IN IP6 <host>``."""
        host = host.strip("[]")
        return cls(address_type="IP6" if ":" in host else "IP4", address=host)

    @property
    def host(self) -> str:
        """The address without any multicast ``/ttl`` or ``/count`` suffix."""
        return self.address.partition("/")[0]

    def __str__(self) -> str:
        return f"{self.network_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` such as ``AS:64`` or ``TIAS:64000``."""

    type: str
    value: int

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        """Parse a ``b=`` value.

        Raises:
            SdpParseError: malformed type or number.
        """
        bwtype, _, number = value.partition(":")
        if not is_token(bwtype):
            raise SdpParseError("malformed b= line")
        return cls(type=bwtype, value=_big_int(number, "b= bandwidth"))

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """``t=<start> <stop>`` with its ``r=`` repeat lines kept verbatim."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Timing:
        """Parse a ``t=`` value.

        Raises:
            SdpParseError: not two decimal numbers.
        """
        parts = value.split()
        if len(parts) != 2:
            raise SdpParseError("malformed t= line")
        return cls(start=_big_int(parts[0], "t= start"), stop=_big_int(parts[1], "t= stop"))

    def lines(self) -> Iterator[str]:
        """Yield the ``t=`` line and its ``r=`` lines."""
        yield f"t={self.start} {self.stop}"
        yield from (f"r={r}" for r in self.repeats)
