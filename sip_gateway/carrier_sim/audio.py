"""The simulator's audio: what it sends (tone, WAV, echo) and how it records.

Theory of operation: a media port pulls one frame of 8 kHz ``int16`` PCM per ptime tick
from an audio source (None: comfort silence) and pushes every played-out frame to a sink.
The sources here are small callables: :class:`ToneSource` (phase-continuous beeps),
:class:`PlaySource` (a WAV once, then nothing) and :class:`EchoBuffer` (a bounded FIFO that
is the sink and the source at once). :class:`WavRecorder` writes what a call receives.
WAV files are read and written as 8 kHz mono 16-bit PCM only: :func:`load_wav` refuses
anything else with :class:`WavFormatError` instead of converting it.
"""

from __future__ import annotations

import wave
from collections import deque
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "FRAME",
    "RATE",
    "AnnouncedEcho",
    "EchoBuffer",
    "PlaySource",
    "ToneSource",
    "WavFormatError",
    "WavRecorder",
    "chime",
    "load_wav",
]

Pcm = npt.NDArray[np.int16]

RATE: Final = 8000
"""Sample rate of everything here (G.711)."""
FRAME: Final = 160
"""Samples per frame the sources produce (20 ms)."""
ECHO_FRAMES: Final = 25
"""Frames the echo buffer holds at most (0.5 s); older ones are dropped."""
_FULL_SCALE: Final = 32767


class WavFormatError(ValueError):
    """A WAV file that is not 8 kHz mono 16-bit PCM (or not a WAV at all)."""


def load_wav(path: Path) -> Pcm:
    """The samples of an 8 kHz mono 16-bit PCM WAV file.

    Raises:
        WavFormatError: another format (it is refused, never resampled or converted), or
            not a readable WAV file.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            compression = wav.getcomptype()
            data = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise WavFormatError(f"{path}: not a readable WAV file ({exc})") from None
    if (channels, width, rate, compression) != (1, 2, RATE, "NONE"):
        raise WavFormatError(
            f"{path}: {channels} channel(s), {rate} Hz, {8 * width}-bit {compression}: the "
            "simulator plays 8 kHz mono 16-bit PCM only and does not convert; convert it "
            f"first (e.g. sox IN.wav -r {RATE} -c 1 -b 16 -e signed-integer OUT.wav)"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


class ToneSource:
    """Beeps: ``hz`` for ``on`` seconds, silence for ``off`` seconds (0: continuous).

    Args:
        hz: the frequency.
        on: beep length in seconds.
        off: pause length in seconds.
        level: amplitude as a fraction of full scale.
    """

    def __init__(self, hz: float, *, on: float = 0.4, off: float = 0.4, level: float = 0.5):
        self._step = 2 * np.pi * hz / RATE
        self._on = max(1, round(on * RATE))
        self._period = self._on + round(off * RATE)
        self._amplitude = level * _FULL_SCALE
        self._n = 0

    def __call__(self) -> Pcm:
        """The next 20 ms frame."""
        n = np.arange(self._n, self._n + FRAME)
        self._n += FRAME
        tone = self._amplitude * np.sin(self._step * n)
        tone[(n % self._period) >= self._on] = 0.0
        frame: Pcm = tone.astype(np.int16)
        return frame


class PlaySource:
    """Plays ``samples`` once, one frame per call, then returns None (comfort silence)."""

    def __init__(self, samples: Pcm) -> None:
        self._samples = samples
        self._offset = 0

    @property
    def finished(self) -> bool:
        """Whether everything was played."""
        return self._offset >= len(self._samples)

    def __call__(self) -> Pcm | None:
        """The next frame (the last one may be short), or None at the end."""
        if self.finished:
            return None
        frame = self._samples[self._offset : self._offset + FRAME]
        self._offset += FRAME
        return frame


class EchoBuffer:
    """Sends back what is received: :meth:`push` is the sink, calling it the source."""

    def __init__(self, max_frames: int = ECHO_FRAMES) -> None:
        self._frames: deque[Pcm] = deque(maxlen=max_frames)

    def push(self, pcm: Pcm) -> None:
        """Keep a received frame for sending (the oldest goes when full)."""
        self._frames.append(pcm)

    def __call__(self) -> Pcm | None:
        """The oldest kept frame, or None."""
        return self._frames.popleft() if self._frames else None


class WavRecorder:
    """Writes received frames to an 8 kHz mono 16-bit WAV file as they come.

    Raises:
        OSError: (at construction) the file cannot be created.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        # open for the whole call, closed by close()
        self._wav: wave.Wave_write | None = wave.open(str(path), "wb")  # noqa: SIM115
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(RATE)

    def write(self, pcm: Pcm) -> None:
        """Append one frame (ignored once closed)."""
        if self._wav is not None:
            self._wav.writeframes(pcm.astype("<i2").tobytes())
            self.samples += len(pcm)

    def close(self) -> None:
        """Finish the header and close the file. Idempotent."""
        if self._wav is not None:
            self._wav.close()
            self._wav = None

    @property
    def seconds(self) -> float:
        """The recorded duration."""
        return self.samples / RATE


def chime(level: float = 0.3) -> Pcm:
    """The built-in announcement: two rising tones (660 Hz, 880 Hz, 0.35 s each), then a
    short pause, so a caller hears that the echo test answered before hearing themselves."""
    parts = []
    for hz in (660.0, 880.0):
        t = np.arange(round(0.35 * RATE)) / RATE
        envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms fade in and out
        parts.append(level * _FULL_SCALE * envelope * np.sin(2 * np.pi * hz * t))
        parts.append(np.zeros(round(0.1 * RATE)))
    pcm: Pcm = np.concatenate(parts).astype(np.int16)
    return pcm


class AnnouncedEcho(EchoBuffer):
    """Plays an announcement once, then echoes; what arrives meanwhile is not echoed."""

    def __init__(self, announcement: Pcm, max_frames: int = ECHO_FRAMES) -> None:
        super().__init__(max_frames)
        self._announcement = PlaySource(announcement)

    def __call__(self) -> Pcm | None:
        """An announcement frame while it lasts, then the oldest kept frame."""
        if not self._announcement.finished:
            self._frames.clear()
            return self._announcement()
        return super().__call__()
