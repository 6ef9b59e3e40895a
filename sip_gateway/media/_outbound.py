"""The sending half of a media session: one RTP packet per ptime tick, never a gap.

Theory of operation: the application pushes PCM of any length into a bounded FIFO
(:meth:`OutboundStream.push`); at every ptime tick the session asks for exactly one
packet (:meth:`OutboundStream.tick`). What goes out, in priority order:

1. the next packet of the RFC 4733 digit being sent (the audio of that tick is
   consumed and discarded: audio is suppressed while a digit plays);
2. a queued digit, once the inter-digit gap has passed;
3. one frame of the application's audio (a short tail is padded with silence);
4. comfort silence, when the application gave nothing (many SBCs drop SRTP streams
   with gaps); with ``comfort_noise=False`` nothing is sent and the timestamp moves on,
   and the next packet carries the marker bit (a new talkspurt).

The RTP timestamp advances by one frame per tick whatever goes out, so it stays in
step with the tick clock. In cut-through mode the FIFO and :meth:`~OutboundStream.tick`
are not used: :mod:`.cut_through` decides when a packet goes out and takes it from
:meth:`~OutboundStream.payload_packet` (a frame sent at once), :meth:`~OutboundStream.
filler_packet` (comfort silence) or :meth:`~OutboundStream.next_digit_packet`, with the
same digit queue, inter-digit gap and marker rules. No I/O, no clock, no randomness
(the packetizer is built by the session from its injected source).
"""

from __future__ import annotations

from collections import deque
from typing import Final

import numpy as np
import numpy.typing as npt

from .dtmf import DtmfSender
from .errors import LocalMediaError
from .g711 import G711Codec
from .rtp import RtpPacket, RtpPacketizer

__all__ = ["DTMF_GAP_TICKS", "MAX_QUEUED_FRAMES", "OutboundStream", "check_pcm"]

MAX_QUEUED_FRAMES: Final = 10
"""Local audio queued beyond this many frames is discarded, oldest first."""
DTMF_GAP_TICKS: Final = 3
"""Ticks of audio between two digits (60 ms at 20 ms ptime)."""
MAX_QUEUED_DIGITS: Final = 64

Pcm = npt.NDArray[np.int16]
_INT16: Final = np.dtype(np.int16)


def check_pcm(pcm: Pcm) -> None:
    """Refuse what is not a one-dimensional ``int16`` array.

    Raises:
        LocalMediaError: not a one-dimensional ``int16`` array.
    """
    if (
        not isinstance(pcm, np.ndarray)
        or (pcm.dtype is not _INT16 and pcm.dtype != _INT16)  # identity: the fast check
        or pcm.ndim != 1
    ):
        raise LocalMediaError("audio must be a one-dimensional int16 numpy array")


class OutboundStream:
    """Audio FIFO, digit queue and packetizer of one sending stream.

    Attributes:
        silence_sent: comfort-silence packets produced.
        dtmf_sent: digits started.
        overflow: samples of local audio discarded (queue full).
    """

    def __init__(
        self,
        codec: G711Codec,
        packetizer: RtpPacketizer,
        samples: int,
        *,
        dtmf: DtmfSender | None,
        comfort_noise: bool = True,
    ) -> None:
        """Start with an empty queue; the first packet carries the marker bit."""
        self.codec = codec
        self.packetizer = packetizer
        self.samples = samples
        self.dtmf = dtmf
        self.comfort_noise = comfort_noise
        self.silence_sent = 0
        self.dtmf_sent = 0
        self.overflow = 0
        self._chunks: deque[Pcm] = deque()  # queued audio, oldest first
        self._queued = 0  # samples in _chunks
        self._digits: deque[tuple[str, int]] = deque()
        self._event: deque[RtpPacket] = deque()
        self._gap = 0
        self._marker = True

    def push(self, pcm: Pcm) -> None:
        """Queue local audio (8 kHz ``int16`` samples, any length).

        Raises:
            LocalMediaError: not a one-dimensional ``int16`` array.
        """
        check_pcm(pcm)
        if not len(pcm):
            return
        self._chunks.append(pcm)
        self._queued += len(pcm)
        excess = self._queued - MAX_QUEUED_FRAMES * self.samples
        if excess > 0:
            self.overflow += excess
            self._discard(excess)

    def queue_digit(self, digit: str, duration_ms: int) -> None:
        """Queue one RFC 4733 digit.

        Raises:
            LocalMediaError: no telephone-event was negotiated, the digit or duration is
                invalid, or too many digits are waiting.
        """
        if self.dtmf is None:
            raise LocalMediaError("no telephone-event payload was negotiated")
        if len(digit) != 1 or digit.upper() not in "0123456789*#ABCD" or duration_ms <= 0:
            raise LocalMediaError(f"not a DTMF digit with a positive duration: {digit!r}")
        if len(self._digits) >= MAX_QUEUED_DIGITS:
            raise LocalMediaError("too many DTMF digits queued")
        self._digits.append((digit.upper(), duration_ms))

    def tick(self) -> bytes | None:
        """The RTP packet (unprotected) for this tick, or None for a gap."""
        chunks, samples = self._chunks, self.samples
        if chunks and len(chunks[0]) == samples:  # _take_frame's common case, inlined
            self._queued -= samples
            frame: Pcm | None = chunks.popleft()
        else:
            frame = self._take_frame()
        if self._event or self._digits:
            packet = self._digit_packet()
            if packet is not None:
                return packet
        if self._gap:
            self._gap -= 1
        if frame is not None:
            payload = self.codec.encode_frame(frame)
        elif self.comfort_noise:
            payload = self.codec.silence(samples)
            self.silence_sent += 1
        else:
            self.packetizer.advance(samples)
            self._marker = True
            return None
        marker, self._marker = self._marker, False
        return self.packetizer.packet_bytes(payload, samples, marker)

    def _digit_packet(self) -> bytes | None:
        """The next packet of the digit being sent, or of the next digit once the gap is over."""
        if self._event:
            return self._event_packet()
        if self._gap == 0 and self.dtmf is not None:
            digit, duration_ms = self._digits.popleft()
            self._event.extend(self.dtmf.packets(digit, self.packetizer, duration_ms=duration_ms))
            self.dtmf_sent += 1
            return self._event_packet()
        return None

    def skip(self) -> None:
        """A tick on which nothing may be sent (direction recvonly/inactive)."""
        if self._chunks:
            self._take_frame()
        if self._event or self._digits:
            self._event.clear()
            self._digits.clear()
        self.packetizer.advance(self.samples)
        self._marker = True

    # -- cut-through (``cut_through.CutThroughSender`` decides when) --------------------

    @property
    def digit_active(self) -> bool:
        """Whether a digit's packets are being sent."""
        return bool(self._event)

    def digit_ready(self) -> bool:
        """Whether a queued digit may start now (none active, the gap after the last over)."""
        return not self._event and bool(self._digits) and not self._gap and self.dtmf is not None

    def next_digit_packet(self) -> bytes | None:
        """The next packet of the digit being sent (or of a ready one), None if neither."""
        return self._digit_packet() if self._event or self._digits else None

    def payload_packet(self, payload: bytes) -> bytes:
        """The packet of one encoded frame (G.711: a byte per sample), sent now; it counts
        toward the inter-digit gap and moves the timestamp by its samples."""
        if self._gap:
            self._gap -= 1
        marker, self._marker = self._marker, False
        return self.packetizer.packet_bytes(payload, len(payload), marker)

    def filler_packet(self) -> bytes | None:
        """One frame of comfort silence; None with ``comfort_noise`` off (the timestamp
        moves on and the next packet carries the marker bit)."""
        if self._gap:
            self._gap -= 1
        samples = self.samples
        if not self.comfort_noise:
            self.packetizer.advance(samples)
            self._marker = True
            return None
        self.silence_sent += 1
        marker, self._marker = self._marker, False
        return self.packetizer.packet_bytes(self.codec.silence(samples), samples, marker)

    def gap(self, frames: int) -> None:
        """Move the timestamp on by ``frames`` frames without sending (a stall)."""
        self.packetizer.advance(frames * self.samples)
        self._marker = True

    def _event_packet(self) -> bytes:
        packet = self._event.popleft()
        if not self._event:
            self._gap = DTMF_GAP_TICKS
        return packet.serialize()

    def _take_frame(self) -> Pcm | None:
        chunks, samples = self._chunks, self.samples
        if not chunks:
            return None
        if len(chunks[0]) == samples:  # the common case: the app pushes whole frames
            self._queued -= samples
            return chunks.popleft()
        frame = np.zeros(samples, dtype=np.int16)
        filled = 0
        while chunks and filled < samples:
            head = chunks[0]
            take = min(samples - filled, len(head))
            frame[filled : filled + take] = head[:take]
            filled += take
            self._discard(take)
        return frame  # a short tail is padded with silence

    def _discard(self, count: int) -> None:
        """Drop ``count`` queued samples, oldest first."""
        chunks = self._chunks
        self._queued -= count
        while count:
            head = chunks[0]
            if len(head) <= count:
                chunks.popleft()
                count -= len(head)
            else:
                chunks[0] = head[count:]
                count = 0
