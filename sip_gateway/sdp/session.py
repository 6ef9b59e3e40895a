"""The SDP session model (RFC 8866, formerly RFC 4566): parse and serialize.

Theory of operation: :func:`parse_sdp` turns a body (bytes or text, CRLF or bare LF)
into an :class:`SdpSession` holding typed ``v= o= s= c= b= t=`` lines, an ordered list
of :class:`~sip_gateway.sdp.attributes.Attribute` and a list of :class:`SdpMedia`.
``str()`` writes the lines back in the order of the RFC 8866 grammar with CRLF line
endings, keeping every attribute (known or not) in its original order and every
rare line (``i= u= e= p= r= z= k=``) verbatim, so ``str(parse_sdp(x)) == x`` for any
well-ordered description with CRLF endings. Typed helpers (``rtpmaps``, ``direction``,
``candidates``, ``crypto`` ...) parse attribute values on demand and never cache.

The parser is strict where ambiguity would hurt (``v=0`` first, one ``o=`` and ``s=``,
known line types only, numeric fields bounded) and lenient where real peers are sloppy
(blank lines, bare LF, lines out of grammar order within a section, missing ``t=``).
Every malformed input raises :class:`~sip_gateway.sdp.errors.SdpParseError`; messages
give the line number and never echo key material.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sip_gateway.sdp.attributes import (
    Attribute,
    Candidate,
    Direction,
    Extmap,
    Fmtp,
    Group,
    Rtcp,
    RtpMap,
    Ssrc,
    is_token,
    parse_int,
)
from sip_gateway.sdp.crypto import CryptoAttribute
from sip_gateway.sdp.errors import SdpParseError
from sip_gateway.sdp.fingerprint import Fingerprint, SetupRole
from sip_gateway.sdp.lines import Bandwidth, Connection, Origin, Timing

__all__ = ["Bandwidth", "Connection", "Origin", "SdpMedia", "SdpSession", "Timing", "parse_sdp"]

_T = TypeVar("_T")
_CRLF = "\r\n"
_PTIME = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_MAX_LINES = 4096


class _AttributeList:
    """Attribute access shared by the session and media levels."""

    __slots__ = ()
    attributes: list[Attribute]

    def attribute(self, name: str) -> str | None:
        """Return the value of the first ``a=<name>`` (None if absent or a flag)."""
        return next((a.value for a in self.attributes if a.name.lower() == name.lower()), None)

    def attribute_values(self, name: str) -> list[str]:
        """Return the values of every ``a=<name>:<value>`` in order."""
        lowered = name.lower()
        return [
            a.value for a in self.attributes if a.name.lower() == lowered and a.value is not None
        ]

    def has_attribute(self, name: str) -> bool:
        """Return True if any ``a=<name>`` line is present."""
        return any(a.name.lower() == name.lower() for a in self.attributes)

    def add_attribute(self, name: str, value: str | None = None) -> None:
        """Append ``a=<name>[:<value>]``."""
        self.attributes.append(Attribute(name, value))

    def remove_attribute(self, name: str) -> None:
        """Remove every ``a=<name>`` line."""
        self.attributes[:] = [a for a in self.attributes if a.name.lower() != name.lower()]

    def set_attribute(self, name: str, value: str | None = None) -> None:
        """Replace the first ``a=<name>`` in place (dropping the others) or append it."""
        self._replace(lambda a: a.name.lower() == name.lower(), Attribute(name, value))

    def _replace(self, match: Callable[[Attribute], bool], new: Attribute) -> None:
        index = next((i for i, a in enumerate(self.attributes) if match(a)), None)
        kept = [a for a in self.attributes if not match(a)]
        kept.insert(len(kept) if index is None else index, new)
        self.attributes[:] = kept

    def _parsed(self, name: str, parse: Callable[[str], _T]) -> list[_T]:
        return [parse(v) for v in self.attribute_values(name)]

    @property
    def direction(self) -> Direction | None:
        """The first direction attribute at this level (None if there is none)."""
        names = {d.value for d in Direction}
        return next((Direction(a.name) for a in self.attributes if a.name in names), None)

    def set_direction(self, direction: Direction) -> None:
        """Set the direction attribute, replacing any existing one in place."""
        names = {d.value for d in Direction}
        self._replace(lambda a: a.name in names, Attribute(direction.value))

    @property
    def ice_ufrag(self) -> str | None:
        """``a=ice-ufrag``."""
        return self.attribute("ice-ufrag")

    @property
    def ice_pwd(self) -> str | None:
        """``a=ice-pwd`` (an ICE credential: do not log)."""
        return self.attribute("ice-pwd")

    @property
    def fingerprints(self) -> list[Fingerprint]:
        """Every ``a=fingerprint`` at this level.

        Raises:
            SdpParseError: a fingerprint is malformed.
        """
        return self._parsed("fingerprint", Fingerprint.parse)

    @property
    def setup(self) -> SetupRole | None:
        """``a=setup``.

        Raises:
            SdpParseError: the role is unknown.
        """
        value = self.attribute("setup")
        return None if value is None else SetupRole.parse(value)


@dataclass(slots=True, kw_only=True)
class SdpMedia(_AttributeList):
    """One media description: the ``m=`` line and the lines that follow it.

    Attributes:
        kind: media type, e.g. ``audio``, ``video``, ``application``.
        port: transport port; 0 marks a declined stream.
        proto: transport protocol, e.g. ``RTP/SAVP`` or ``UDP/TLS/RTP/SAVPF``.
        formats: media formats (RTP payload types as strings).
        port_count: the ``/<number of ports>`` suffix, if written.
        title: the ``i=`` line.
        connections: ``c=`` lines (several only for multicast).
        bandwidths: ``b=`` lines.
        encryption_key: the obsolete ``k=`` line (secret, never in repr).
        attributes: ``a=`` lines in order.
    """

    kind: str
    port: int
    proto: str
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    title: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    encryption_key: str | None = field(default=None, repr=False)
    attributes: list[Attribute] = field(default_factory=list)

    @classmethod
    def parse_media_line(cls, value: str) -> SdpMedia:
        """Parse an ``m=`` value into a media description without other lines.

        Raises:
            SdpParseError: malformed media type, port or protocol.
        """
        parts = value.split()
        if len(parts) < 3 or not is_token(parts[0]):
            raise SdpParseError("malformed m= line")
        port_text, slash, count_text = parts[1].partition("/")
        proto_ok = all(is_token(p) for p in parts[2].split("/"))
        if not proto_ok or not all(is_token(f) for f in parts[3:]):
            raise SdpParseError("malformed m= line")
        return cls(
            kind=parts[0],
            port=parse_int(port_text, "m= port", 0, 65535),
            port_count=parse_int(count_text, "m= port count", 1, 65535) if slash else None,
            proto=parts[2],
            formats=parts[3:],
        )

    @property
    def rtpmaps(self) -> list[RtpMap]:
        """Every ``a=rtpmap``.

        Raises:
            SdpParseError: an rtpmap is malformed.
        """
        return self._parsed("rtpmap", RtpMap.parse)

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """Return the rtpmap of one payload type (malformed rtpmaps are skipped)."""
        for value in self.attribute_values("rtpmap"):
            if value.partition(" ")[0] == str(payload_type):
                try:
                    return RtpMap.parse(value)
                except SdpParseError:
                    continue
        return None

    def fmtp(self, fmt: str) -> str | None:
        """Return the format parameters of one format (``a=fmtp:<fmt> <params>``)."""
        for value in self.attribute_values("fmtp"):
            parsed = Fmtp.parse(value) if is_token(value.partition(" ")[0]) else None
            if parsed is not None and parsed.format == fmt:
                return parsed.parameters
        return None

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (rounded).

        Raises:
            SdpParseError: the value is not a positive number.
        """
        return _milliseconds(self.attribute("ptime"), "a=ptime")

    @property
    def maxptime(self) -> int | None:
        """``a=maxptime`` in milliseconds (rounded).

        Raises:
            SdpParseError: the value is not a positive number.
        """
        return _milliseconds(self.attribute("maxptime"), "a=maxptime")

    @property
    def rtcp_mux(self) -> bool:
        """True if ``a=rtcp-mux`` is present."""
        return self.has_attribute("rtcp-mux")

    @property
    def rtcp(self) -> Rtcp | None:
        """``a=rtcp``.

        Raises:
            SdpParseError: the value is malformed.
        """
        value = self.attribute("rtcp")
        return None if value is None else Rtcp.parse(value)

    @property
    def mid(self) -> str | None:
        """``a=mid``."""
        return self.attribute("mid")

    @property
    def candidates(self) -> list[Candidate]:
        """Every ``a=candidate``.

        Raises:
            SdpParseError: a candidate is malformed.
        """
        return self._parsed("candidate", Candidate.parse)

    @property
    def ssrcs(self) -> list[Ssrc]:
        """Every ``a=ssrc``.

        Raises:
            SdpParseError: an ssrc line is malformed.
        """
        return self._parsed("ssrc", Ssrc.parse)

    @property
    def extmaps(self) -> list[Extmap]:
        """Every ``a=extmap``.

        Raises:
            SdpParseError: an extmap is malformed.
        """
        return self._parsed("extmap", Extmap.parse)

    @property
    def crypto(self) -> list[CryptoAttribute]:
        """Every ``a=crypto`` (use the negotiation code to skip malformed ones).

        Raises:
            SdpParseError: a crypto attribute is malformed.
        """
        return self._parsed("crypto", CryptoAttribute.parse)

    def lines(self) -> Iterator[str]:
        """Yield the media description's lines without line endings."""
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        yield " ".join((f"m={self.kind}", port, self.proto, *self.formats))
        if self.title is not None:
            yield f"i={self.title}"
        yield from (f"c={c}" for c in self.connections)
        yield from (f"b={b}" for b in self.bandwidths)
        if self.encryption_key is not None:
            yield f"k={self.encryption_key}"
        yield from (f"a={a}" for a in self.attributes)

    def __str__(self) -> str:
        return "".join(line + _CRLF for line in self.lines())


def _milliseconds(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    text = value.strip(" \t")  # not str.strip(): float() refuses some of what it strips
    if _PTIME.fullmatch(text) is None or float(text) <= 0:
        raise SdpParseError(f"malformed {what}")
    return max(1, round(float(text)))


@dataclass(slots=True, kw_only=True)
class SdpSession(_AttributeList):
    """A session description (``v=0`` is implied).

    Attributes:
        origin: the ``o=`` line.
        session_name: the ``s=`` line (``-`` when there is nothing to say).
        info: the ``i=`` line.
        uri: the ``u=`` line.
        emails: ``e=`` lines.
        phones: ``p=`` lines.
        connection: the session-level ``c=`` line.
        bandwidths: session-level ``b=`` lines.
        timings: ``t=`` lines with their ``r=`` lines.
        time_zones: the ``z=`` line, verbatim.
        encryption_key: the obsolete ``k=`` line (secret, never in repr).
        attributes: session-level ``a=`` lines in order.
        media: the media descriptions in order.
    """

    origin: Origin
    session_name: str = "-"
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=lambda: [Timing()])
    time_zones: str | None = None
    encryption_key: str | None = field(default=None, repr=False)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[SdpMedia] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> SdpSession:
        """Parse a session description; see :func:`parse_sdp`.

        Raises:
            SdpParseError: the description is malformed.
        """
        return parse_sdp(data)

    @property
    def groups(self) -> list[Group]:
        """Every ``a=group`` (RFC 5888).

        Raises:
            SdpParseError: a group is malformed.
        """
        return self._parsed("group", Group.parse)

    @property
    def bundle_mids(self) -> tuple[str, ...]:
        """The mids of the first ``a=group:BUNDLE`` (empty when there is none)."""
        bundle = next((g for g in self.groups if g.semantics.upper() == "BUNDLE"), None)
        return bundle.mids if bundle is not None else ()

    def connection_for(self, media: SdpMedia) -> Connection | None:
        """Return the connection of a media description (its own, else the session's)."""
        return media.connections[0] if media.connections else self.connection

    def direction_of(self, media: SdpMedia) -> Direction:
        """Return the effective direction of a media description (default sendrecv)."""
        return media.direction or self.direction or Direction.SENDRECV

    def fingerprints_of(self, media: SdpMedia) -> list[Fingerprint]:
        """Return the media's fingerprints, else the session-level ones.

        Raises:
            SdpParseError: a fingerprint is malformed.
        """
        return media.fingerprints or self.fingerprints

    def lines(self) -> Iterator[str]:
        """Yield every line of the description without line endings."""
        yield "v=0"
        yield f"o={self.origin}"
        yield f"s={self.session_name}"
        for letter, value in (("i", self.info), ("u", self.uri)):
            if value is not None:
                yield f"{letter}={value}"
        yield from (f"e={e}" for e in self.emails)
        yield from (f"p={p}" for p in self.phones)
        if self.connection is not None:
            yield f"c={self.connection}"
        yield from (f"b={b}" for b in self.bandwidths)
        for timing in self.timings:
            yield from timing.lines()
        for letter, value in (("z", self.time_zones), ("k", self.encryption_key)):
            if value is not None:
                yield f"{letter}={value}"
        yield from (f"a={a}" for a in self.attributes)
        for media in self.media:
            yield from media.lines()

    def to_bytes(self) -> bytes:
        """Serialize to a UTF-8 body with CRLF line endings."""
        return str(self).encode("utf-8")

    def __str__(self) -> str:
        return "".join(line + _CRLF for line in self.lines())


def parse_sdp(data: bytes | str) -> SdpSession:
    """Parse a session description.

    Args:
        data: the SDP body as bytes (UTF-8) or text; CRLF or bare LF line endings.

    Returns:
        The parsed session.

    Raises:
        SdpParseError: the description is malformed (status 400).
    """
    lines = _split_lines(_decode(data))
    if not lines or lines[0][1] != "v" or lines[0][2] != "0":
        raise SdpParseError("SDP must start with v=0")
    session = SdpSession(origin=Origin(session_id="0", session_version=0, address="-"), timings=[])
    seen: set[str] = set()
    media: SdpMedia | None = None
    for number, letter, value in lines[1:]:
        try:
            if letter == "m":
                media = SdpMedia.parse_media_line(value)
                session.media.append(media)
            elif media is None:
                _apply_session_line(session, letter, value, seen)
            else:
                _apply_media_line(media, letter, value)
        except SdpParseError as exc:
            raise SdpParseError(f"line {number}: {exc}") from None
    if "o" not in seen or "s" not in seen:
        raise SdpParseError("SDP needs an o= and an s= line")
    return session


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpParseError("SDP is not valid UTF-8") from None


def _split_lines(text: str) -> list[tuple[int, str, str]]:
    result: list[tuple[int, str, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            raise SdpParseError(f"line {number}: expected <type>=<value>")
        if "\r" in line or "\x00" in line:
            raise SdpParseError(f"line {number}: stray CR or NUL")
        result.append((number, line[0], line[2:]))
        if len(result) > _MAX_LINES:
            raise SdpParseError("SDP has too many lines")
    return result


def _once(seen: set[str], letter: str) -> None:
    if letter in seen:
        raise SdpParseError(f"more than one {letter}= line")
    seen.add(letter)


def _apply_session_line(session: SdpSession, letter: str, value: str, seen: set[str]) -> None:
    if letter in "vosiuczk":
        _once(seen, letter)
    match letter:
        case "v":
            raise SdpParseError("more than one v= line")
        case "o":
            session.origin = Origin.parse(value)
        case "s":
            session.session_name = value
        case "i":
            session.info = value
        case "u":
            session.uri = value
        case "e":
            session.emails.append(value)
        case "p":
            session.phones.append(value)
        case "c":
            session.connection = Connection.parse(value)
        case "b":
            session.bandwidths.append(Bandwidth.parse(value))
        case "t":
            session.timings.append(Timing.parse(value))
        case "r":
            if not session.timings:
                raise SdpParseError("r= line without t= line")
            last = session.timings[-1]
            session.timings[-1] = replace(last, repeats=(*last.repeats, value))
        case "z":
            session.time_zones = value
        case "k":
            session.encryption_key = value
        case "a":
            session.attributes.append(Attribute.parse(value))
        case _:
            raise SdpParseError(f"unknown or misplaced {letter}= line")


def _apply_media_line(media: SdpMedia, letter: str, value: str) -> None:
    match letter:
        case "i" if media.title is None:
            media.title = value
        case "c":
            media.connections.append(Connection.parse(value))
        case "b":
            media.bandwidths.append(Bandwidth.parse(value))
        case "k" if media.encryption_key is None:
            media.encryption_key = value
        case "a":
            media.attributes.append(Attribute.parse(value))
        case _:
            raise SdpParseError(f"unknown, repeated or misplaced {letter}= line in a media section")
