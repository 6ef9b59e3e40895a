"""Cut-through media: each frame goes out as it arrives, with no jitter buffer and no FIFO.

Theory of operation
-------------------
A media relay in the middle of a call should not buffer: the endpoints (a browser, a
carrier) have jitter buffers of their own, and a second one in the middle only adds its
delay. So a cut-through stream forwards every packet as it arrives, like rtpengine, and
keeps only what makes the forwarded stream a valid RTP stream. Two sans-IO helpers, used
by :class:`~sip_gateway.media.session.MediaSession` with ``cut_through=True`` (and
:class:`ForwardOrder` by the bridge's browser leg):

:class:`ForwardOrder` (receiving) keeps the newest sequence number forwarded, compared
the RFC 3550 A.1 way (16-bit serial arithmetic, the wrap counted into an extended
number): the next packets in order (a gap below ``MAX_DROPOUT`` is loss) are forwarded;
a duplicate, or a packet older than the newest forwarded (reordered by less than
``MAX_MISORDER``), is dropped, because forwarding it would bake the reordering into the
re-numbered stream the relay sends on; a larger jump is taken for a sender restart
only when the next packet follows it (A.1's ``bad_seq`` rule). For a forwarded packet it
also tells how many samples are missing before it by its timestamp (loss, or a pause of
a sender that suppresses silence), so the consumer can move its own timestamps on.

:class:`CutThroughSender` (sending) decides when a packet goes out; the packets come from
:class:`~sip_gateway.media._outbound.OutboundStream` (codec, packetizer, digit queue).
It keeps a schedule, ``due``: the wall-clock time at which the stream's next RTP
timestamp falls due. Every packet sent moves ``due`` by the time it carries, so
timestamps always advance by the samples sent, whatever goes out:

* an audio frame goes out at once (:meth:`~CutThroughSender.audio`); ``due`` moves by
  its duration but never more than one frame ahead of the audio sent
  (``LEAD_FRAMES``): a source that runs early re-anchors the schedule;
* comfort silence goes out only when no packet came for half a frame past ``due``
  (``FILL_AFTER``), i.e. about 1.5 ptime after the last frame of a source on time. As the
  schedule is cumulative, a packet that is merely late (jitter) costs at most one frame of
  silence, after which the schedule has that much slack: the stream neither goes silent
  when the source pauses nor doubles when it jitters;
* an RFC 4733 digit starts at the next slot (the next audio frame, whose place it
  takes, or the filler deadline), so the packet rhythm is kept; its packets then go out
  one per ptime on the timer, keeping their timing; audio arriving meanwhile is dropped
  and counted (:attr:`~CutThroughSender.suppressed`); the inter-digit gap counts frames
  sent (audio or filler), as the default mode counts ticks.

The session's timer is therefore only ever needed for RTCP, a digit's next packet, or
the filler deadline; while audio flows, that deadline keeps moving ahead of it.
No I/O, no clock, no randomness: times are arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from ._outbound import OutboundStream
from .events import MediaEvent
from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .reception import MAX_DROPOUT, MAX_MISORDER

__all__ = [
    "DROP_REASONS",
    "DUPLICATE",
    "FILL_AFTER",
    "JUMP",
    "LATE",
    "LEAD_FRAMES",
    "MAX_GAP_SAMPLES",
    "CutThroughSender",
    "ForwardOrder",
    "PayloadReceived",
    "PayloadSink",
    "convert_g711",
    "gap_silence",
]

Pcm = npt.NDArray[np.int16]
PayloadSink = Callable[[bytes, str], None]
"""Takes a received G.711 payload and its codec (``PCMU``/``PCMA``) at once, in place of a
:class:`PayloadReceived` event: a relay's per-packet path (no event object, no queue)."""

LATE: Final = -1
"""Verdict: older than the newest packet forwarded (reordered)."""
DUPLICATE: Final = -2
"""Verdict: the newest packet forwarded, again."""
JUMP: Final = -3
"""Verdict: a sequence jump not (yet) confirmed by a following packet (A.1)."""
DROP_REASONS: Final = {LATE: "late", DUPLICATE: "duplicate", JUMP: "sequence_jump"}
"""The drop reason counted for each negative verdict."""
MAX_GAP_SAMPLES: Final = 80_000
"""A timestamp gap larger than this (10 s at 8 kHz) is a discontinuity, not reported."""
FILL_AFTER: Final = 0.5
"""Comfort silence goes out when no packet came for this many frames past ``due``."""
LEAD_FRAMES: Final = 1
"""How many frames the schedule may run ahead of the end of the audio just sent."""
MAX_CATCH_UP: Final = 10
"""Slots handled at once after a late timer; older ones are skipped (time moves on)."""

_SILENCE = np.zeros(MAX_GAP_SAMPLES, np.int16)
_SILENCE.flags.writeable = False
_CODES = bytes(range(256))
_CONVERT: Final = {
    ("PCMU", "PCMA"): alaw_encode(ulaw_decode(_CODES)),
    ("PCMA", "PCMU"): ulaw_encode(alaw_decode(_CODES)),
}


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PayloadReceived(MediaEvent):
    """Cut-through with ``report_payloads``: a G.711 audio payload as it arrived (not
    decoded: a relay whose other leg speaks G.711 too passes it on as it is).

    Attributes:
        payload: the codes, one byte per sample.
        codec: ``"PCMU"`` or ``"PCMA"``.
    """

    payload: bytes = field(repr=False)
    codec: str

    def __repr__(self) -> str:
        return f"PayloadReceived(codec={self.codec!r}, samples={len(self.payload)})"


def convert_g711(payload: bytes, source: str, target: str) -> bytes:
    """``payload`` in ``source`` G.711 (PCMU/PCMA) as ``target``: a byte-table lookup
    (the same law: unchanged)."""
    return payload if source == target else payload.translate(_CONVERT[source, target])


def gap_silence(samples: int) -> Pcm:
    """A read-only block of ``samples`` zeros (at most :data:`MAX_GAP_SAMPLES`)."""
    return _SILENCE[:samples]


class ForwardOrder:
    """Which received packets may be forwarded (see the module docstring)."""

    __slots__ = ("_bad", "_cycles", "_newest", "_next_timestamp")

    def __init__(self) -> None:
        """Start with nothing forwarded: the first packet is taken as it comes."""
        self._newest = -1
        self._cycles = 0
        self._bad = -1
        self._next_timestamp = 0

    @property
    def extended_newest(self) -> int | None:
        """The newest sequence number forwarded, extended with wrap cycles (None: none)."""
        return None if self._newest < 0 else self._cycles + self._newest

    def in_order(self, sequence: int) -> int:
        """Account one packet by its sequence number only.

        Returns:
            0: forward it (it is now the newest); else :data:`LATE`, :data:`DUPLICATE`
            or :data:`JUMP`: drop it.
        """
        newest = self._newest
        if newest >= 0 and 0 < (sequence - newest) & 0xFFFF < MAX_DROPOUT:  # the common case
            if sequence < newest:
                self._cycles += 0x10000
            self._newest = sequence
            return 0
        verdict = self._order(sequence)
        return 0 if verdict > 0 else verdict

    def accept(self, sequence: int, timestamp: int, samples: int) -> int:
        """Account one audio packet carrying ``samples`` samples.

        Returns:
            A negative verdict (drop it), or the samples missing before it by its
            timestamp (0: none, or a discontinuity: the first packet, a restart, a gap
            beyond :data:`MAX_GAP_SAMPLES` or a timestamp that went back).
        """
        newest = self._newest
        if newest >= 0 and 0 < (sequence - newest) & 0xFFFF < MAX_DROPOUT:  # the common case
            if sequence < newest:
                self._cycles += 0x10000
            self._newest = sequence
            verdict = 0
        else:
            verdict = self._order(sequence)
            if verdict < 0:
                return verdict
        gap = (timestamp - self._next_timestamp) & 0xFFFFFFFF
        self._next_timestamp = (timestamp + samples) & 0xFFFFFFFF
        return 0 if verdict or gap > MAX_GAP_SAMPLES else gap

    def _order(self, sequence: int) -> int:
        """0: next in order; 1: first packet or restart; negative: drop."""
        newest = self._newest
        if newest >= 0:
            delta = (sequence - newest) & 0xFFFF
            if delta == 0:
                return DUPLICATE
            if delta < MAX_DROPOUT:
                if sequence < newest:
                    self._cycles += 0x10000
                self._newest = sequence
                return 0
            if delta > 0x10000 - MAX_MISORDER:
                return LATE
            if sequence != self._bad:
                self._bad = (sequence + 1) & 0xFFFF
                return JUMP
        self._newest, self._cycles, self._bad = sequence, 0, -1
        return 1


class CutThroughSender:
    """When the sending half of a cut-through session sends what (module docstring).

    Attributes:
        out: the packet source (codec, packetizer, digit queue).
        ptime: seconds per frame.
        clock_rate: the RTP clock rate.
        sending: whether the negotiated direction lets us send (else slots are skipped).
        suppressed: audio frames dropped because a digit was being sent.
    """

    __slots__ = ("_digit_next", "_due", "clock_rate", "out", "ptime", "sending", "suppressed")

    def __init__(self, out: OutboundStream, ptime: float, now: float, clock_rate: int) -> None:
        """Start the schedule: the first filler deadline is ``now``."""
        self.out = out
        self.ptime = ptime
        self.clock_rate = clock_rate
        self.sending = True
        self.suppressed = 0
        self._due = now - ptime * FILL_AFTER
        self._digit_next: float | None = None

    @property
    def due(self) -> float:
        """When the stream's next RTP timestamp falls due (for SR timestamps)."""
        return self._due

    def deadline(self) -> float:
        """When :meth:`handle` must run next: a digit's next packet, or the filler."""
        nxt = self._digit_next
        return self._due + self.ptime * FILL_AFTER if nxt is None else nxt

    def send(self, payload: bytes, now: float) -> list[bytes | None]:
        """The packets for an encoded block of any length, sent now (one per ptime)."""
        samples = self.out.samples
        if len(payload) <= samples:
            return [self.audio(payload, now)]
        rate = self.clock_rate
        return [
            self.audio(payload[start : start + samples], now, now + start / rate)
            for start in range(0, len(payload), samples)
        ]

    def audio(self, payload: bytes, now: float, start: float | None = None) -> bytes | None:
        """The packet for one encoded frame (at most one ptime; G.711: a byte per sample),
        to send now.

        ``start``: when the frame's audio starts if not ``now`` (the later frames of a
        long block sent at once). None while a digit is being sent (the frame is dropped
        and counted); a digit waiting for a slot takes this frame's place.
        """
        out = self.out
        if out._event or out._digits:  # digit_active or queued: inlined (per packet)
            if out.digit_active:
                self.suppressed += 1
                return None
            if out.digit_ready():
                self.suppressed += 1
                return self._start_digit(now)
        seconds = len(payload) / self.clock_rate
        due = self._due + seconds
        cap = (now if start is None else start) + seconds + self.ptime * LEAD_FRAMES
        self._due = due if due < cap else cap
        return out.payload_packet(payload)

    def handle(self, now: float) -> list[bytes]:
        """The digit packets and fillers due at ``now`` (older slots beyond
        ``MAX_CATCH_UP`` are skipped: time moves on, the next packet is a new talkspurt)."""
        out, ptime = self.out, self.ptime
        packets: list[bytes] = []
        for _ in range(MAX_CATCH_UP):
            nxt = self._digit_next
            packet: bytes | None = None
            if nxt is not None:
                if now < nxt:
                    return packets
                if self.sending:
                    packet = out.next_digit_packet()
                else:
                    out.skip()  # clears the digits
                self._due += ptime
                if out.digit_active:
                    self._digit_next = nxt + ptime
                else:  # its last packet: the next frame falls due one ptime later
                    self._digit_next = None
                    self._due = min(self._due, nxt + ptime)
            else:
                slot = self._due + ptime * FILL_AFTER
                if now < slot:
                    return packets
                if not self.sending:
                    out.skip()
                    self._due += ptime
                elif out.digit_ready():
                    packet = self._start_digit(slot)
                else:
                    packet = out.filler_packet()
                    self._due += ptime
            if packet is not None:
                packets.append(packet)
        self._skip_to(now)
        return packets

    def _start_digit(self, now: float) -> bytes | None:
        """The first packet of the queued digit, sent at ``now``; the rest follow on the timer."""
        packet = self.out.next_digit_packet()
        self._digit_next = now + self.ptime if self.out.digit_active else None
        self._due += self.ptime
        return packet

    def _skip_to(self, now: float) -> None:
        """After a long stall: drop the slots still due, as a gap in the stream."""
        late = now - self.deadline()
        if late < 0:
            return
        frames = int(late / self.ptime + 1e-9) + 1
        self.out.gap(frames)
        self._due += frames * self.ptime
        if self._digit_next is not None:
            self._digit_next += frames * self.ptime
