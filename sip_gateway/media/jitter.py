"""An adaptive jitter buffer for one received RTP stream.

Theory of operation: packets go in with their arrival time (:meth:`JitterBuffer.put`)
and come out one per ptime tick (:meth:`JitterBuffer.pop`). The buffer keeps a
*playout point*: the RTP timestamp due at the current tick and the next sequence
number; it advances one frame per tick, so a frame is played at its tick or never.

* Ordering and loss: packets are keyed by extended sequence number. The packet due
  at a tick is played; a hole before a later packet is reported as one
  :class:`Concealment` per missing frame (the caller repeats or fades the last frame,
  or plays silence), and so are the first ``MAX_EXPAND`` ticks of an empty buffer
  right after audio (the next packet is late or lost). A timestamp jump without a
  sequence hole (silence suppression) yields ``None``: nothing to play. Packets of the
  stream that carry no audio (RFC 4733 events) only fill their sequence numbers.
* Late and duplicate packets are dropped and counted: late when their tick has
  passed, duplicate when already buffered or played.
* Delay: every packet's transit time ``arrival - timestamp / clock_rate`` enters a
  sliding window of recent packets. The earliest transit in it defines when a frame
  is due; the spread (latest - earliest) is the delay that would have kept every one
  of those packets in time, and the target delay is that spread clamped to
  ``[min_delay_ms, max_delay_ms]``. When the playout delay falls below the target
  the buffer holds the playout point for one tick (a stretch: a concealment if
  audio was due, nothing if not); when it exceeds the target by 1.25 frames it skips
  a frame. Jitter raises the target at once; it falls back when the jittery packets
  have left the window.
* Discontinuities (the sender restarted its sequence numbers or timestamps, or the
  network stalled for seconds) are confirmed by two sequential packets and then
  restart the playout; a single stray packet is only dropped.
* Memory is bounded: at most ``max_packets`` packets are held (the oldest goes
  first) and the window has a fixed length.

No I/O, no clock: arrival and tick times are arguments, in seconds on one monotonic
clock. One buffer per SSRC: the caller resets it when the source changes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from .errors import LocalMediaError
from .rtp import RtpPacket

__all__ = ["Concealment", "JitterBuffer", "JitterStats"]

MAX_DROPOUT: Final = 3000  # sequence jumps beyond these are discontinuities (RFC 3550 A.1)
MAX_MISORDER: Final = 100
MAX_EXPAND: Final = 3  # an empty buffer conceals this many frames, then plays nothing
_HISTORY_BITS: Final = 256  # played sequence numbers remembered for duplicate detection
_HISTORY_MASK: Final = (1 << _HISTORY_BITS) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Concealment:
    """A tick with no frame to play where audio was expected.

    Attributes:
        reason: ``"lost"`` for a missing packet, ``"stretch"`` when the buffer holds
            the playout point to grow its delay.
        sequence: the missing sequence number (None for a stretch).
        timestamp: the RTP timestamp of the frame being concealed.
    """

    reason: str
    sequence: int | None
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JitterStats:
    """Counters and state of a :class:`JitterBuffer`.

    Attributes:
        received: packets accepted into the buffer.
        played: packets returned by ``pop``.
        lost: sequence numbers never played because they were missing at their tick.
        concealed: :class:`Concealment` frames returned for lost packets.
        stretched: ticks held to grow the delay.
        skipped: packets dropped to shrink the delay.
        late: packets that arrived after their tick.
        duplicates: packets already buffered or played.
        overflow: packets dropped because ``max_packets`` were held.
        resyncs: playout restarts after a confirmed discontinuity.
        buffered: packets held now.
        target_delay_ms: the current target delay.
        delay_ms: the playout delay measured at the last tick.
    """

    received: int
    played: int
    lost: int
    concealed: int
    stretched: int
    skipped: int
    late: int
    duplicates: int
    overflow: int
    resyncs: int
    buffered: int
    target_delay_ms: float
    delay_ms: float


class _Window:
    """Sliding minimum and maximum of the last ``size`` values (monotonic deques).

    ``lows[0][1]`` is the minimum and ``highs[0][1]`` the maximum (read directly on the
    per-packet path); both deques are empty until the first :meth:`add`.
    """

    __slots__ = ("_count", "highs", "lows", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._count = 0
        self.lows: deque[tuple[int, float]] = deque()
        self.highs: deque[tuple[int, float]] = deque()

    def add(self, value: float) -> None:
        index = self._count
        self._count = index + 1
        lows, highs = self.lows, self.highs
        while lows and lows[-1][1] >= value:
            lows.pop()
        while highs and highs[-1][1] <= value:
            highs.pop()
        entry = (index, value)
        lows.append(entry)
        highs.append(entry)
        oldest = index - self.size
        if lows[0][0] <= oldest:
            lows.popleft()
        if highs[0][0] <= oldest:
            highs.popleft()

    @property
    def empty(self) -> bool:
        return not self.lows

    @property
    def low(self) -> float:
        return self.lows[0][1]

    @property
    def high(self) -> float:
        return self.highs[0][1]


class JitterBuffer:
    """Reorders, times and conceals one received RTP stream.

    Attributes:
        clock_rate: the stream's RTP clock rate, in Hz.
        ptime_ms: the tick interval, which is the sender's packetization time.
        min_delay_ms: the lowest target delay.
        max_delay_ms: the highest target delay.
        max_packets: the most packets held at once.
    """

    __slots__ = (
        "_delay",
        "_fresh",
        "_highest_seq",
        "_history",
        "_last_ts",
        "_next_seq",
        "_packets",
        "_play_ts",
        "_playing",
        "_run",
        "_suspect",
        "_ts_reference",
        "_window",
        "clock_rate",
        "concealed",
        "duplicates",
        "late",
        "lost",
        "max_delay_ms",
        "max_packets",
        "min_delay_ms",
        "overflow",
        "played",
        "ptime_ms",
        "received",
        "resync_after",
        "resyncs",
        "skipped",
        "stretched",
    )

    def __init__(
        self,
        clock_rate: int = 8000,
        ptime_ms: int = 20,
        min_delay_ms: int = 20,
        max_delay_ms: int = 200,
        max_packets: int = 50,
        *,
        window_packets: int = 150,
    ) -> None:
        """Create an empty buffer.

        Args:
            clock_rate: RTP clock rate of the stream.
            ptime_ms: tick interval; ``pop`` is called once per tick.
            min_delay_ms: lowest target delay.
            max_delay_ms: highest target delay.
            max_packets: most packets held (a flood drops the oldest).
            window_packets: how many recent packets the delay estimate looks at
                (150 at 20 ms: the target falls back 3 s after jitter stops).

        Raises:
            LocalMediaError: inconsistent sizes.
        """
        if clock_rate <= 0 or ptime_ms <= 0 or not 0 <= min_delay_ms <= max_delay_ms:
            raise LocalMediaError("jitter buffer clock rate, ptime or delays invalid")
        if max_packets < 2 or window_packets < 1:
            raise LocalMediaError("jitter buffer needs room for 2 packets and a window")
        self.clock_rate = clock_rate
        self.ptime_ms = ptime_ms
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.max_packets = max_packets
        self.resync_after = max(0.5, 2 * max_delay_ms / 1000)
        self._window = _Window(window_packets)
        self.received = self.played = self.lost = self.concealed = 0
        self.stretched = self.skipped = self.late = self.duplicates = 0
        self.overflow = self.resyncs = 0
        self.reset()

    def reset(self) -> None:
        """Forget the stream (a new SSRC): drop held packets, keep the counters."""
        # extended sequence -> (frame, extended timestamp); frame None: a non-audio packet
        self._packets: dict[int, tuple[object, int]] = {}
        self._fresh = True  # no packet seen since the last reset
        self._highest_seq = 0  # extended, of the newest packet stored
        self._ts_reference = 0  # extended, the newest timestamp stored
        self._playing = False  # playout started
        self._next_seq = 0  # extended sequence number due next
        self._play_ts = 0  # extended timestamp due at the current tick
        self._last_ts = 0  # extended timestamp of the last packet played
        self._run = 0  # ticks since the last packet played
        self._history = 0  # bit i: sequence next_seq - 1 - i was played or skipped
        self._suspect: int | None = None
        self._delay = 0.0
        self._window = _Window(self._window.size)

    @property
    def samples_per_tick(self) -> int:
        """RTP timestamp units per tick."""
        return self.clock_rate * self.ptime_ms // 1000

    @property
    def target_delay(self) -> float:
        """The delay the buffer aims for, in seconds."""
        window = self._window
        spread = window.highs[0][1] - window.lows[0][1] if window.lows else 0.0
        low, high = self.min_delay_ms / 1000, self.max_delay_ms / 1000
        return low if spread < low else high if spread > high else spread

    @property
    def delay(self) -> float:
        """The playout delay measured at the last tick, in seconds."""
        return self._delay

    def stats(self) -> JitterStats:
        """A snapshot of the counters."""
        return JitterStats(
            received=self.received,
            played=self.played,
            lost=self.lost,
            concealed=self.concealed,
            stretched=self.stretched,
            skipped=self.skipped,
            late=self.late,
            duplicates=self.duplicates,
            overflow=self.overflow,
            resyncs=self.resyncs,
            buffered=len(self._packets),
            target_delay_ms=self.target_delay * 1000,
            delay_ms=self._delay * 1000,
        )

    # --- input -------------------------------------------------------------------------

    def put(self, packet: RtpPacket, arrival: float, *, audio: bool = True) -> None:
        """Add a received packet (already authenticated, of this buffer's SSRC).

        Use either this and :meth:`pop`, or the field-wise :meth:`put_frame`,
        :meth:`put_non_audio` and :meth:`pop_frame`, not both on one buffer.

        Args:
            packet: the packet.
            arrival: when it arrived, in seconds on the clock ``pop`` uses.
            audio: False for a packet of the same stream that carries no audio (an
                RFC 4733 event): it only fills its sequence number, so it is neither
                played nor counted as lost, and its timing does not move the delay.
        """
        if audio:
            self.put_frame(packet.sequence, packet.timestamp, packet, arrival)
        else:
            self.put_non_audio(packet.sequence, packet.timestamp)

    def put_frame(self, sequence: int, timestamp: int, frame: object, arrival: float) -> None:
        """Add an audio packet by its header fields (the per-packet path: no RtpPacket).

        Args:
            sequence: its RTP sequence number.
            timestamp: its RTP timestamp.
            frame: what :meth:`pop_frame` returns when the packet is due (not None).
            arrival: when it arrived, in seconds on the clock ``pop_frame`` uses.
        """
        if self._fresh:
            self._fresh = False
            self._highest_seq, self._ts_reference = sequence, timestamp
        highest, reference = self._highest_seq, self._ts_reference
        seq = highest + ((sequence - highest + 0x8000) & 0xFFFF) - 0x8000  # unwrapped
        ts = reference + ((timestamp - reference + 2**31) & 0xFFFFFFFF) - 2**31
        transit = arrival - ts / self.clock_rate
        lows = self._window.lows  # discontinuous: a jump, or a transit far from the window's
        if not -MAX_MISORDER <= seq - highest <= MAX_DROPOUT or (
            lows and abs(transit - lows[0][1]) > self.resync_after
        ):
            if self._suspect != (sequence - 1) & 0xFFFF:
                self._suspect = sequence
                self.late += 1
                return
            self.resyncs += 1
            self.reset()
            self._fresh = False
            self._highest_seq, self._ts_reference = sequence, timestamp
            seq, ts = sequence, timestamp
        self._suspect = None
        if seq in self._packets or (
            self._playing and seq < self._next_seq and self._was_played(seq)
        ):
            self.duplicates += 1
            return
        self._window.add(transit)
        if self._playing and (seq < self._next_seq or ts < self._play_ts):
            self.late += 1
            return
        packets = self._packets
        if len(packets) >= self.max_packets:
            self._store(seq, ts, frame)  # the overflow rule
            return
        packets[seq] = (frame, ts)  # _store's common case, inlined (once per packet)
        self.received += 1
        highest, reference = self._highest_seq, self._ts_reference
        self._highest_seq = seq if seq > highest else highest
        self._ts_reference = ts if ts > reference else reference

    def put_non_audio(self, sequence: int, timestamp: int) -> None:
        """Fill the sequence number of a packet that carries no audio (see :meth:`put`)."""
        if self._fresh or not self._playing:
            return  # playout starts at an audio packet; nothing to fill yet
        seq, ts = self._extend(sequence, timestamp)
        if self._next_seq <= seq <= self._highest_seq + MAX_DROPOUT and seq not in self._packets:
            self._store(seq, ts, None)

    def _extend(self, sequence: int, timestamp: int) -> tuple[int, int]:
        """Unwrap sequence number and timestamp relative to the newest seen."""
        seq = self._highest_seq + ((sequence - self._highest_seq + 0x8000) & 0xFFFF) - 0x8000
        ts_offset = ((timestamp - self._ts_reference + 2**31) & 0xFFFFFFFF) - 2**31
        return seq, self._ts_reference + ts_offset

    def _was_played(self, seq: int) -> bool:
        if not self._playing or seq >= self._next_seq:
            return False
        age = self._next_seq - 1 - seq
        return age < _HISTORY_BITS and bool(self._history >> age & 1)

    def _store(self, seq: int, ts: int, frame: object) -> None:
        packets = self._packets
        if len(packets) >= self.max_packets:
            oldest = min(packets)
            self.overflow += 1
            if seq < oldest:
                return
            del packets[oldest]
        packets[seq] = (frame, ts)
        if frame is not None:
            self.received += 1
        self._highest_seq = max(self._highest_seq, seq)
        self._ts_reference = max(self._ts_reference, ts)

    # --- output ------------------------------------------------------------------------

    def pop(self, now: float) -> RtpPacket | Concealment | None:
        """The frame for the tick at ``now``; call once per ptime.

        Returns:
            The packet to decode and play; a :class:`Concealment` when audio was due
            but is missing (or held to grow the delay); None when nothing is due
            (before playout starts, silence suppression, or the stream paused).
        """
        frame = self.pop_frame(now)
        assert frame is None or isinstance(frame, RtpPacket | Concealment)  # put stored it
        return frame

    def pop_frame(self, now: float) -> object:
        """Like :meth:`pop` for a buffer fed with :meth:`put_frame`.

        Returns:
            The ``frame`` given to :meth:`put_frame` for the packet due now; a
            :class:`Concealment`; or None (as for :meth:`pop`).
        """
        if not self._playing and not self._start(now):
            return None
        window = self._window
        low = window.lows[0][1]  # not empty: playout started at an audio packet
        self._delay = delay = now - (self._play_ts / self.clock_rate + low)  # _due inlined
        spread = window.highs[0][1] - low
        floor, ceiling = self.min_delay_ms / 1000, self.max_delay_ms / 1000
        target = floor if spread < floor else ceiling if spread > ceiling else spread
        if delay < target:
            self.stretched += 1
            if self._head_due():
                return Concealment(reason="stretch", sequence=None, timestamp=self._wire_ts())
            return None
        if delay >= target + 1.25 * self.ptime_ms / 1000 and _is_frame(self._next_slot()):
            self.skipped += 1  # shrink: that frame is dropped, the next one plays
        frame = self._next_slot()
        if frame is None:
            return None
        if frame.__class__ is Concealment:
            self.concealed += 1
        else:
            self.played += 1
        return frame

    def _start(self, now: float) -> bool:
        """Start playout once the oldest packet has waited for the target delay."""
        if not self._packets:
            return False
        head = min(self._packets)  # before playout starts, only audio is held
        ts = self._packets[head][1]
        if now < self._due(ts) + self.target_delay:
            return False
        self._next_seq, self._play_ts, self._history = head, ts, 0
        self._last_ts, self._run = ts - self.samples_per_tick, 0
        self._playing = True
        return True

    def _due(self, ts: int) -> float:
        """When the frame with extended timestamp ``ts`` could arrive at the earliest."""
        return ts / self.clock_rate + self._window.low

    def _head(self) -> int | None:
        if self._next_seq in self._packets:
            return self._next_seq
        return min(self._packets) if self._packets else None

    def _head_due(self) -> bool:
        """Whether audio is expected now: a packet is due or one is missing."""
        self._skip_other()
        head = self._head()
        if head is None:
            return self._run < MAX_EXPAND
        return head > self._next_seq or self._packets[head][1] <= self._play_ts

    def _skip_other(self) -> None:
        """Consume non-audio packets at the playout point: they take no tick."""
        while (head := self._head()) is not None:
            packet, ts = self._packets[head]
            if packet is not None or (head > self._next_seq and ts > self._play_ts):
                return
            del self._packets[head]
            self.lost += head - self._next_seq
            self._advance(head + 1 - self._next_seq, played=True)
            self._run = MAX_EXPAND  # the sender switched to events: no audio to expand

    def _wire_ts(self) -> int:
        return self._play_ts & 0xFFFFFFFF

    def _next_slot(self) -> object:
        """Consume the current tick's slot: the due frame, a lost frame, or nothing."""
        next_seq, slot = self._next_seq, self._play_ts
        entry = self._packets.get(next_seq)
        if entry is not None and entry[0] is not None and entry[1] <= slot:
            # the common case, the due audio packet at the head: what follows, inlined
            del self._packets[next_seq]
            self._play_ts = slot + self.clock_rate * self.ptime_ms // 1000
            self._next_seq = next_seq + 1
            self._history = (self._history << 1 | 1) & _HISTORY_MASK
            self._last_ts, self._run = entry[1], 0
            return entry[0]
        self._skip_other()
        head, slot = self._head(), self._play_ts
        packet, ts = (None, 0) if head is None else self._packets[head]
        self._play_ts += self.samples_per_tick
        if head is not None and packet is not None and ts <= slot:
            del self._packets[head]
            self.lost += head - self._next_seq
            self._advance(head + 1 - self._next_seq, played=True)
            self._last_ts, self._run = ts, 0
            return packet
        run, self._run = self._run, self._run + 1
        if (head is not None and head > self._next_seq) or (head is None and run < MAX_EXPAND):
            # a known hole, or the first frames of an underrun: conceal the frame due
            expected = self._next_seq + (slot - self._last_ts) // self.samples_per_tick - 1
            return Concealment(
                reason="lost", sequence=expected & 0xFFFF, timestamp=slot & 0xFFFFFFFF
            )
        return None  # nothing due: silence suppression, the ticks of an event, a pause

    def _advance(self, count: int, *, played: bool) -> None:
        self._next_seq += count
        self._history = (self._history << count | played) & _HISTORY_MASK


def _is_frame(slot: object) -> bool:
    """Whether a slot of the buffer is a frame to play (not a concealment, not nothing)."""
    return slot is not None and slot.__class__ is not Concealment
