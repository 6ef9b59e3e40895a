"""The default mode's receiving half: a jitter buffer played out one frame per tick.

Theory of operation: the session puts each accepted packet into the
:class:`~sip_gateway.media.jitter.JitterBuffer` (audio as ``(payload type, payload)``,
``telephone-event`` as a sequence number only) and, on every ptime tick once something
arrived, asks :meth:`Playout.play` for one frame. It appends one
:class:`~sip_gateway.media.events.AudioReceived` to the session's event queue: the frame
due, decoded; silence while a telephone-event holds the tick (audio is muted); or, for
a frame lost, late or not there yet, the last one attenuated once, then silence
(``concealed=True``). A cut-through session has no playout (see :mod:`.cut_through`).
No I/O, no clock: times are arguments.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import numpy as np
import numpy.typing as npt

from ._setup import CLOCK_RATE
from .events import AudioReceived, MediaEvent
from .g711 import G711Codec
from .jitter import Concealment, JitterBuffer

__all__ = ["CONCEALMENT_GAIN", "Playout"]

Pcm = npt.NDArray[np.int16]

CONCEALMENT_GAIN: Final = 0.5
"""The gain of the one repetition that conceals a lost frame."""


class Playout:
    """The jitter buffer and the concealment state of one received stream.

    Attributes:
        buffer: the jitter buffer (the session puts packets in).
        playing: something arrived: the ticks play out from now on.
        concealed: frames concealed so far.
    """

    __slots__ = ("_events", "_last", "_run", "buffer", "concealed", "playing")

    def __init__(self, ptime_ms: int, events: deque[MediaEvent]) -> None:
        """An empty buffer for ``ptime_ms`` frames; events go to ``events``."""
        self.buffer = JitterBuffer(CLOCK_RATE, ptime_ms)
        self._events = events
        self._last: Pcm | None = None
        self._run = 0  # concealed frames in a row
        self.concealed = 0
        self.playing = False

    def reset(self, ptime_ms: int) -> None:
        """A new buffer (another source, or another ptime); the counters go on."""
        self.buffer = JitterBuffer(CLOCK_RATE, ptime_ms)

    def play(self, now: float, decoders: dict[int, G711Codec], samples: int) -> None:
        """One tick: the frame due, decoded, muted or concealed (module docstring)."""
        item = self.buffer.pop_frame(now)
        if item is None or isinstance(item, Concealment):  # lost, late, or paused
            self._conceal(samples)
            return
        payload_type, payload = item if isinstance(item, tuple) else (-1, b"")  # from put_frame
        decoder = decoders.get(payload_type)
        if decoder is None:  # a telephone-event packet holds this tick: audio is muted
            self._last = None
            self._events.append(AudioReceived(pcm=np.zeros(samples, np.int16)))
            return
        pcm = decoder.decode(payload)
        self._last, self._run = pcm, 0
        self._events.append(AudioReceived(pcm=pcm))

    def _conceal(self, samples: int) -> None:
        """A lost frame: the last one attenuated, once; then silence."""
        if self._run == 0 and self._last is not None:
            pcm = (self._last.astype(np.float32) * CONCEALMENT_GAIN).astype(np.int16)
        else:
            pcm = np.zeros(samples, dtype=np.int16)
        self._run += 1
        self.concealed += 1
        self._events.append(AudioReceived(pcm=pcm, concealed=True))
