"""The control protocol between the signaling process and a media worker (sans-IO).

Theory of operation
-------------------
The signaling process keeps every call's logic; a media worker process
(:mod:`bridge.media.worker`) holds the calls' :class:`~bridge.media.pipeline.CallMedia`
objects. They talk over one local stream socket (a socketpair made by the parent) in
small frozen messages:

* Requests (signaling to worker). Those the call awaits carry a ``request_id`` and get
  exactly one reply (:class:`Opened`, :class:`WebRtcPortMade`, :class:`Done` or
  :class:`Refused`); the others (apply a config, close a port, send a digit) are
  fire-and-forget, as their in-process counterparts are synchronous. Per call they are
  executed in the order sent.
* Pushes (worker to signaling): media events (:class:`EventPushed`), each call's
  counters and DTLS facts about once a second and at its close (:class:`StatsPushed`),
  and the worker's resource counts (:class:`ResourcesPushed`) for ``/metrics``.

On the wire each message is a frame: a 4-byte big-endian length, then a JSON object.
Values are encoded structurally: ``bytes``, tuples, dicts, enums and dataclasses are
tagged objects, and a dataclass or enum is accepted only if its name is in a closed
registry (the message classes and the types reachable from their fields: the SDP's
:class:`~sip_gateway.sdp.MediaConfig`, the pipeline's settings, the stats records), so
decoding never builds anything else and never runs code from the peer (no pickle).
:class:`ControlDecoder` takes bytes in any chunks and gives whole messages; a frame that
is too long, not JSON or not a known message raises :class:`ControlProtocolError`.

SDES keys (:class:`~sip_gateway.sdp.SdesCrypto`) and ICE passwords cross this socket,
which never leaves the host; their fields are ``repr=False``, so a message's ``repr``
is safe to log, and nothing here formats a frame's content into an error.

Error hierarchy::

    MediaPlaneError
    ├── ControlProtocolError   a frame could not be decoded (the peer is broken)
    └── MediaWorkerLostError   the worker is gone or did not answer (also a ConnectionError)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import enum
import json
import numbers
import struct
import typing
from collections import deque
from dataclasses import dataclass
from typing import Any

from sip_gateway.aio.rtp import open_media_sockets
from sip_gateway.media.events import MediaStats
from sip_gateway.media.srtp import live_srtp_sessions
from sip_gateway.sdp import Fingerprint, IceParameters, MediaConfig

from ._srtp_path import WebRtcLegStats, started_srtp_paths
from .events import DigitRelayed, MediaEvent, MediaFailed, MediaMode, WebRtcConnected
from .pipeline import MediaCounters, PipelineConfig
from .webrtc_leg import DtlsFacts, open_ice_sockets

__all__ = [
    "MAX_FRAME",
    "ApplyGateway",
    "ApplyWebRtc",
    "ChooseWebRtc",
    "CloseGateway",
    "CloseMedia",
    "CloseWebRtcPort",
    "Configure",
    "ControlDecoder",
    "ControlMessage",
    "ControlProtocolError",
    "Done",
    "EventPushed",
    "MediaPlaneError",
    "MediaSnapshot",
    "MediaWorkerLostError",
    "NewWebRtcPort",
    "OpenMedia",
    "Opened",
    "Refused",
    "ResourcesPushed",
    "SendDigit",
    "StatsPushed",
    "WebRtcPortMade",
    "WorkerResources",
    "encode",
    "read_messages",
]

MAX_FRAME = 1 << 20
"""Largest frame body accepted (1 MiB; a config with 32 candidates is ~10 kB)."""
_HEADER = struct.Struct("!I")


class MediaPlaneError(Exception):
    """Base class of the media plane's errors."""


class ControlProtocolError(MediaPlaneError):
    """A control frame could not be decoded (too long, not JSON, not a known message)."""


class MediaWorkerLostError(MediaPlaneError, ConnectionError):
    """The media worker of a call is gone, or did not answer a request in time."""


# -- records carried inside messages ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSnapshot:
    """One call's media counters and facts as of the worker's last push.

    Attributes:
        counters: the pipeline's counters.
        webrtc: the browser leg's SRTP path counters (None before a leg is chosen).
        gateway: the gateway leg's session counters (None before it is open).
        facts: what the browser leg's DTLS session negotiated (None before it exists,
            and when unchanged since the call's previous snapshot).
    """

    counters: MediaCounters
    webrtc: WebRtcLegStats | None = None
    gateway: MediaStats | None = None
    facts: DtlsFacts | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerResources:
    """What a worker process holds now (summed into ``/metrics``).

    Attributes:
        calls: calls it hosts.
        rtp_sockets: the gateway legs' UDP sockets.
        ice_sockets: the WebRTC legs' ICE UDP sockets.
        gateway_srtp: SDES SRTP sessions alive.
        webrtc_srtp: WebRTC legs' SRTP contexts in use.
        tasks: asyncio tasks of its loop.
    """

    calls: int = 0
    rtp_sockets: int = 0
    ice_sockets: int = 0
    gateway_srtp: int = 0
    webrtc_srtp: int = 0
    tasks: int = 0

    @classmethod
    def held_here(cls, calls: int = 0) -> WorkerResources:
        """What this process holds now, from its modules' registries (the worker pushes
        it; ``/metrics`` reads it for the signaling process)."""
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # outside a running loop
            tasks = 0
        return cls(
            calls=calls,
            rtp_sockets=open_media_sockets(),
            ice_sockets=open_ice_sockets(),
            gateway_srtp=live_srtp_sessions(),
            webrtc_srtp=started_srtp_paths(),
            tasks=tasks,
        )

    def __add__(self, other: WorkerResources) -> WorkerResources:
        return WorkerResources(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )


# -- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlMessage:
    """Base class of control messages."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Configure(ControlMessage):
    """The worker's media settings; the first message it gets."""

    pipeline: PipelineConfig
    stats_interval: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenMedia(ControlMessage):
    """Make a call's media and bind its gateway leg (reply: :class:`Opened`)."""

    request_id: int
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewWebRtcPort(ControlMessage):
    """Gather candidates for one browser leg (reply: :class:`WebRtcPortMade`)."""

    request_id: int
    call_id: str
    controlling: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ChooseWebRtc(ControlMessage):
    """The browser leg that answered; the others close (reply: :class:`Done`)."""

    request_id: int
    call_id: str
    port_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyWebRtc(ControlMessage):
    """Apply a browser leg's negotiated config (no reply)."""

    call_id: str
    port_id: int
    config: MediaConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseWebRtcPort(ControlMessage):
    """Stop a browser leg's connect attempt (no reply)."""

    call_id: str
    port_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyGateway(ControlMessage):
    """Apply the gateway leg's negotiated config (no reply; a failure is pushed)."""

    call_id: str
    config: MediaConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseGateway(ControlMessage):
    """Close the gateway leg's port, dropping its keys (no reply)."""

    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDigit(ControlMessage):
    """Send a browser's digit to the carrier as RFC 4733 (no reply)."""

    call_id: str
    digit: str
    duration_ms: int
    via: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseMedia(ControlMessage):
    """Close both legs and forget the call (reply: :class:`Done`, after a last
    :class:`StatsPushed`)."""

    request_id: int
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened(ControlMessage):
    """Reply to :class:`OpenMedia`: the gateway leg's RTP address for the trunk SDP."""

    request_id: int
    gateway_address: tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebRtcPortMade(ControlMessage):
    """Reply to :class:`NewWebRtcPort`: what our SDP toward that browser needs."""

    request_id: int
    port_id: int
    local_address: tuple[str, int]
    local_ice: IceParameters
    fingerprints: tuple[Fingerprint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Done(ControlMessage):
    """A request without a result succeeded."""

    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused(ControlMessage):
    """A request failed.

    Attributes:
        kind: ``os`` (a socket could not be bound), ``webrtc`` (a
            :class:`~bridge.media.webrtc_leg.WebRtcLegError`), ``unknown-call`` or ``error``.
        reason: the WebRTC error's reason code, or the exception's class name.
        detail: a human-readable description (never key material).
    """

    request_id: int
    kind: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventPushed(ControlMessage):
    """A call's media reported an event."""

    call_id: str
    event: MediaEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsPushed(ControlMessage):
    """A call's counters and facts now."""

    call_id: str
    snapshot: MediaSnapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourcesPushed(ControlMessage):
    """The worker's resource counts now."""

    resources: WorkerResources


_MESSAGES: tuple[type[ControlMessage], ...] = (
    Configure,
    OpenMedia,
    NewWebRtcPort,
    ChooseWebRtc,
    ApplyWebRtc,
    CloseWebRtcPort,
    ApplyGateway,
    CloseGateway,
    SendDigit,
    CloseMedia,
    Opened,
    WebRtcPortMade,
    Done,
    Refused,
    EventPushed,
    StatsPushed,
    ResourcesPushed,
)
_EXTRA: tuple[type, ...] = (WebRtcConnected, MediaFailed, DigitRelayed, MediaMode, DtlsFacts)


# -- the registry of types that may cross ----------------------------------------------------


def _collect(roots: tuple[type, ...]) -> dict[str, type]:
    """Every dataclass and enum reachable from ``roots`` through their field types."""
    found: dict[str, type] = {}
    pending = list(roots)
    while pending:
        cls = pending.pop()
        if cls.__name__ in found:
            if found[cls.__name__] is not cls:
                raise TypeError(f"two types named {cls.__name__} in the control registry")
            continue
        found[cls.__name__] = cls
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            hints = typing.get_type_hints(cls)
        except NameError:  # a TYPE_CHECKING-only name: such types are listed in _EXTRA
            continue
        pending.extend(t for hint in hints.values() for t in _types_in(hint))
    return found


def _types_in(hint: Any) -> list[type]:
    """The dataclasses and enums named in a type hint (unions, tuples, mappings)."""
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or issubclass(hint, enum.Enum)):
        return [hint]
    return [t for arg in typing.get_args(hint) for t in _types_in(arg)]


_REGISTRY: dict[str, type] = _collect(_MESSAGES + _EXTRA)


# -- values <-> JSON ---------------------------------------------------------------------------


_PRIMITIVES = frozenset({type(None), bool, int, float, str})
_SHAPES: dict[type, tuple[str, tuple[tuple[str, Any], ...]]] = {}


def _shape(cls: type) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """A registered dataclass's name and its init fields with their plain defaults."""
    shape = _SHAPES.get(cls)
    if shape is None:
        fields = dataclasses.fields(cls)
        shape = (_registered(cls), tuple((f.name, f.default) for f in fields if f.init))
        _SHAPES[cls] = shape
    return shape


def _to_json(value: Any) -> Any:
    """A JSON-able form of ``value`` (module docstring: tagged objects). A dataclass
    field equal to its default (same type) is left out: the decoder's constructor call
    puts the default back."""
    kind = type(value)
    if kind in _PRIMITIVES:
        return value
    if kind is tuple:
        return {"#t": [_to_json(item) for item in value]}
    if kind is bytes:
        return {"#b": base64.b64encode(value).decode("ascii")}
    if "__dataclass_fields__" in kind.__dict__:
        name, fields = _shape(kind)
        out = {}
        for field_name, default in fields:
            item = getattr(value, field_name)
            if item is default or (type(item) is type(default) and item == default):
                continue
            out[field_name] = _to_json(item)
        return {"#": name, "f": out}
    if isinstance(value, enum.Enum):
        return {"#e": _registered(kind), "v": value.value}
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, typing.Mapping):
        return {"#d": {str(key): _to_json(item) for key, item in value.items()}}
    if isinstance(value, numbers.Integral):  # numpy's integers are not int
        return int(value)
    if isinstance(value, numbers.Real):  # nor are all its floats float
        return float(value)
    raise TypeError(f"a {kind.__name__} cannot cross the control socket")


def _registered(cls: type) -> str:
    if _REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"{cls.__name__} is not in the control registry")
    return cls.__name__


def _from_json(value: Any) -> Any:
    """The value :func:`_to_json` made.

    Raises:
        ControlProtocolError: an unknown tag or type, or fields the type refuses.
    """
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "#" in value:
        return _dataclass_from_json(value)
    (tag, body), *rest = value.items() if len(value) in (1, 2) else ((None, None),)
    if tag == "#b" and not rest and isinstance(body, str):
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            raise ControlProtocolError("bad base64 in a control frame") from None
    if tag == "#t" and not rest and isinstance(body, list):
        return tuple(_from_json(item) for item in body)
    if tag == "#d" and not rest and isinstance(body, dict):
        return {key: _from_json(item) for key, item in body.items()}
    if tag == "#e" and len(value) == 2 and "v" in value:
        cls = _REGISTRY.get(body) if isinstance(body, str) else None
        if cls is None or not issubclass(cls, enum.Enum):
            raise ControlProtocolError("unknown enum in a control frame")
        try:
            return cls(value["v"])
        except ValueError:
            raise ControlProtocolError(f"bad {cls.__name__} value in a control frame") from None
    raise ControlProtocolError("unknown object in a control frame")


def _dataclass_from_json(value: dict[str, Any]) -> Any:
    name, fields = value.get("#"), value.get("f")
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None or not dataclasses.is_dataclass(cls) or len(value) != 2:
        raise ControlProtocolError("unknown type in a control frame")
    if not isinstance(fields, dict):
        raise ControlProtocolError(f"bad fields of {name} in a control frame")
    try:
        return cls(**{str(key): _from_json(item) for key, item in fields.items()})
    except (TypeError, ValueError) as exc:
        raise ControlProtocolError(f"{name} refused its fields: {type(exc).__name__}") from None


# -- framing ---------------------------------------------------------------------------------


def encode(message: ControlMessage) -> bytes:
    """One frame: length prefix and JSON body.

    Raises:
        TypeError: the message holds a value that may not cross (a programming error).
    """
    body = json.dumps(_to_json(message), separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise TypeError(f"{type(message).__name__} is too long for a control frame")
    return _HEADER.pack(len(body)) + body


class ControlDecoder:
    """Frames in, messages out (sans-IO): :meth:`feed` bytes, then :meth:`next_message`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ready: deque[ControlMessage] = deque()

    def feed(self, data: bytes) -> None:
        """Take bytes from the socket, in any chunks.

        Raises:
            ControlProtocolError: a frame is too long or does not decode; the stream is
                lost after this (the caller closes it).
        """
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ControlProtocolError(f"control frame of {length} bytes is too long")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                return
            body = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            self._ready.append(_decode_body(body))

    def next_message(self) -> ControlMessage | None:
        """The next whole message, or None until more bytes come."""
        return self._ready.popleft() if self._ready else None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held."""
        return len(self._buffer)


def _decode_body(body: bytes) -> ControlMessage:
    try:
        raw = json.loads(body)
    except RecursionError:
        raise ControlProtocolError("control frame nests too deep") from None
    except (UnicodeDecodeError, ValueError):
        raise ControlProtocolError("control frame is not JSON") from None
    if not isinstance(raw, dict) or raw.get("#") not in {m.__name__ for m in _MESSAGES}:
        raise ControlProtocolError("control frame is not a control message")
    try:
        message = _from_json(raw)
    except RecursionError:
        raise ControlProtocolError("control frame nests too deep") from None
    assert isinstance(message, ControlMessage)
    return message


_READ_SIZE = 1 << 16


async def read_messages(
    reader: asyncio.StreamReader, handle: typing.Callable[[ControlMessage], None]
) -> None:
    """Hand every message read from ``reader`` to ``handle``, until the stream ends.

    Raises:
        ControlProtocolError: a frame that does not decode (the connection is unusable).
    """
    decoder = ControlDecoder()
    while data := await reader.read(_READ_SIZE):
        decoder.feed(data)
        while (message := decoder.next_message()) is not None:
            handle(message)
