"""RFC 4733 telephone-events: DTMF digits as RTP packets, both ways.

Theory of operation. Sending: a digit is one *event*; every packet of it carries the
RTP timestamp of the event's start, the first one has the marker bit, and one packet
goes out per ptime tick with the duration so far. The last duration goes out with the
end bit, three times (RFC 4733 2.5.1.4), so one lost packet does not lose the end.
Events longer than the 16-bit duration field are split into segments (2.5.1.3).
:class:`DtmfSender` returns the packets; the caller sends one per tick in place of
audio, using the sequence numbers of the audio stream (the packetizer is shared).

Receiving: :class:`DtmfReceiver` identifies an event by its RTP timestamp and event
code, never by the marker bit (many senders omit it, and it can be lost). It reports a
digit once, when the event completes: on the first end packet, or, when every end
packet was lost, when a newer event or audio well past the event shows it is over.
Redundant end packets and late packets of a finished event are ignored.

No I/O, no clock: time is the RTP timestamp the packets carry.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Final, NamedTuple

from .errors import LocalMediaError
from .rtp import RtpPacket, RtpPacketizer

__all__ = [
    "DTMF_DIGITS",
    "DtmfDigit",
    "DtmfReceiver",
    "DtmfSender",
    "EventPayload",
    "pack_event",
    "unpack_event",
]

DTMF_DIGITS: Final = "0123456789*#ABCD"
"""The DTMF digits in event-code order (RFC 4733 section 3.2: codes 0-15)."""
END_REPEATS: Final = 3
MAX_DURATION: Final = 0xFFFF
_PAYLOAD: Final = struct.Struct("!BBH")
_AUDIO_SLACK_MS: Final = 200  # audio this far past an event's last update ends it
_MASK32: Final = 0xFFFFFFFF


class EventPayload(NamedTuple):
    """The four bytes of an RFC 4733 event payload."""

    event: int
    end: bool
    volume: int
    duration: int


def pack_event(event: int, *, end: bool, volume: int, duration: int) -> bytes:
    """Build an event payload (RFC 4733 section 2.3).

    Raises:
        LocalMediaError: a field is out of range.
    """
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= MAX_DURATION:
        raise LocalMediaError("telephone-event field out of range")
    return _PAYLOAD.pack(event, (0x80 if end else 0) | volume, duration)


def unpack_event(payload: bytes) -> EventPayload | None:
    """Read the first event of a payload; None when it is shorter than 4 bytes."""
    if len(payload) < 4:
        return None
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    return EventPayload(event, flags > 0x7F, flags & 0x3F, duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfDigit:
    """A digit the peer sent, reported once per event.

    Attributes:
        digit: ``0-9``, ``*``, ``#`` or ``A-D``.
        event: its event code (0-15).
        duration: the event's duration in RTP timestamp units, all segments together.
        duration_ms: the same in milliseconds.
        timestamp: the RTP timestamp of the event's start.
        volume: the power level, in -dBm0 (0-63).
        ended: True when an end packet was seen; False when the end was inferred
            (every end packet lost) and ``duration`` is the last one known.
    """

    digit: str
    event: int
    duration: int
    duration_ms: int
    timestamp: int
    volume: int
    ended: bool


class DtmfSender:
    """Turns digits into RFC 4733 packets.

    Attributes:
        payload_type: the negotiated ``telephone-event`` payload type.
        clock_rate: its clock rate (8000 next to G.711).
        ptime_ms: the interval between packets, normally the audio ptime.
        duration_ms: the default duration of a digit.
        volume: the power level sent, in -dBm0.
    """

    __slots__ = ("clock_rate", "duration_ms", "payload_type", "ptime_ms", "volume")

    def __init__(
        self,
        payload_type: int,
        clock_rate: int = 8000,
        ptime_ms: int = 20,
        *,
        duration_ms: int = 100,
        volume: int = 10,
    ) -> None:
        """Configure the sender.

        Raises:
            LocalMediaError: a value is out of range.
        """
        if not 0 <= payload_type <= 127 or clock_rate <= 0 or ptime_ms <= 0:
            raise LocalMediaError("telephone-event payload type, clock rate or ptime invalid")
        if not 0 <= volume <= 63 or duration_ms <= 0:
            raise LocalMediaError("DTMF volume or duration out of range")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ptime_ms = ptime_ms
        self.duration_ms = duration_ms
        self.volume = volume

    def packets(
        self, digit: str, packetizer: RtpPacketizer, *, duration_ms: int | None = None
    ) -> list[RtpPacket]:
        """The packets of one digit, to send one per ptime tick in place of audio.

        The event starts at the packetizer's current timestamp; its sequence numbers
        come from the packetizer, whose timestamp then moves past the ticks these
        packets occupy, so the audio that follows continues in step with time.

        Args:
            digit: one of ``0-9 * # A-D`` (case-insensitive).
            packetizer: the audio stream's packetizer.
            duration_ms: the digit's duration (default :attr:`duration_ms`).

        Returns:
            One packet per tick of the digit's duration (the first with the marker
            bit, the last with the end bit), then that end packet twice more.

        Raises:
            LocalMediaError: not a DTMF digit, or a duration that is not positive.
        """
        event = _event_code(digit)
        ms = self.duration_ms if duration_ms is None else duration_ms
        if ms <= 0:
            raise LocalMediaError("DTMF duration must be positive")
        step = max(1, self.clock_rate * self.ptime_ms // 1000)
        total = max(1, self.clock_rate * ms // 1000)
        segment = MAX_DURATION // step * step
        elapsed = [min(step * (i + 1), total) for i in range(-(-total // step))]
        elapsed += [total] * (END_REPEATS - 1)
        start = packetizer.timestamp
        packets = []
        for index, done in enumerate(elapsed):
            offset = (done - 1) // segment * segment
            payload = pack_event(
                event,
                end=index >= len(elapsed) - END_REPEATS,
                volume=self.volume,
                duration=done - offset,
            )
            packets.append(
                packetizer.event_packet(
                    payload,
                    payload_type=self.payload_type,
                    timestamp=start + offset,
                    marker=index == 0,
                )
            )
        packetizer.advance(step * len(packets))
        return packets


def _event_code(digit: str) -> int:
    code = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise LocalMediaError(f"not a DTMF digit: {digit!r}")
    return code


class _Event:
    """The event being received (mutable, one at a time)."""

    __slots__ = ("base", "duration", "event", "start", "timestamp", "volume")

    def __init__(self, timestamp: int, payload: EventPayload) -> None:
        self.start = timestamp  # the first segment's timestamp
        self.timestamp = timestamp  # the current segment's timestamp
        self.event = payload.event
        self.volume = payload.volume
        self.duration = payload.duration
        self.base = 0  # duration of the earlier segments


class DtmfReceiver:
    """Detects digits in a received RTP stream (RFC 4733 section 2.5.2).

    Feed it every packet of the stream (audio too: audio well past an event whose end
    packets were all lost completes it).

    Attributes:
        payload_type: the negotiated ``telephone-event`` payload type.
        clock_rate: its clock rate.
        ignored: event packets ignored (redundant ends, late packets, non-DTMF events).
        malformed: event packets shorter than 4 bytes.
    """

    __slots__ = (
        "_current",
        "_finished",
        "_newest",
        "clock_rate",
        "ignored",
        "malformed",
        "payload_type",
    )

    def __init__(self, payload_type: int, clock_rate: int = 8000) -> None:
        """Start with no event in progress."""
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ignored = 0
        self.malformed = 0
        self._current: _Event | None = None
        self._newest: int | None = None  # timestamp of the newest event segment seen
        self._finished: deque[tuple[int, int]] = deque(maxlen=16)

    @property
    def active(self) -> bool:
        """Whether an event is in progress (only then can an audio packet complete one)."""
        return self._current is not None

    def feed(self, packet: RtpPacket) -> tuple[DtmfDigit, ...]:
        """Account one packet of the stream.

        Returns:
            The digits this packet completed: usually none, at most two (an event
            whose end packets were lost, then a new event seen only by its end).
        """
        return self.feed_payload(packet.payload_type, packet.timestamp, packet.payload)

    def feed_payload(self, payload_type: int, timestamp: int, data: bytes) -> tuple[DtmfDigit, ...]:
        """Like :meth:`feed`, from the packet's payload type, timestamp and payload."""
        if payload_type != self.payload_type:
            return self._audio(timestamp)
        payload = unpack_event(data)
        if payload is None:
            self.malformed += 1
            return ()
        current = self._current
        if (
            (timestamp, payload.event) in self._finished
            or payload.event >= len(DTMF_DIGITS)
            or (self._newest is not None and _serial_before(timestamp, self._newest))
        ):
            self.ignored += 1  # a redundant end, a late packet, or not a DTMF event
            return ()
        if current is not None and (timestamp, payload.event) == (current.timestamp, current.event):
            current.duration = max(current.duration, payload.duration)
        elif current is not None and self._continues(current, timestamp, payload):
            self._finished.append((current.timestamp, current.event))
            current.base += (timestamp - current.timestamp) & _MASK32
            current.timestamp, current.duration = timestamp, payload.duration
        else:
            self._current = _Event(timestamp, payload)
            self._newest = timestamp
            if current is not None:  # every end packet of the previous event was lost
                return self._complete(current, ended=False) + self._maybe_end(payload)
        self._newest = timestamp
        return self._maybe_end(payload)

    def flush(self) -> DtmfDigit | None:
        """Complete the event in progress, if any (at hang-up, or after a timeout)."""
        current = self._current
        if current is None:
            return None
        self._current = None
        return self._complete(current, ended=False)[0]

    @staticmethod
    def _continues(current: _Event, timestamp: int, payload: EventPayload) -> bool:
        """A new segment of a long event (RFC 4733 2.5.1.3): same code, about 2**16 later."""
        delta = (timestamp - current.timestamp) & _MASK32
        return payload.event == current.event and 0x8000 <= delta <= MAX_DURATION

    def _maybe_end(self, payload: EventPayload) -> tuple[DtmfDigit, ...]:
        current = self._current
        if not payload.end or current is None:
            return ()
        self._current = None
        return self._complete(current, ended=True)

    def _audio(self, timestamp: int) -> tuple[DtmfDigit, ...]:
        current = self._current
        if current is None:
            return ()
        slack = self.clock_rate * _AUDIO_SLACK_MS // 1000
        if not _serial_before(current.timestamp + current.duration + slack, timestamp):
            return ()
        self._current = None
        return self._complete(current, ended=False)

    def _complete(self, event: _Event, *, ended: bool) -> tuple[DtmfDigit, ...]:
        self._finished.append((event.timestamp, event.event))
        duration = event.base + event.duration
        digit = DtmfDigit(
            digit=DTMF_DIGITS[event.event],
            event=event.event,
            duration=duration,
            duration_ms=duration * 1000 // self.clock_rate,
            timestamp=event.start,
            volume=event.volume,
            ended=ended,
        )
        return (digit,)


def _serial_before(a: int, b: int) -> bool:
    """Whether RTP timestamp ``a`` is before ``b``, modulo 2**32."""
    return ((a - b) & _MASK32) >= 0x80000000
