"""Opus <-> 8 kHz linear PCM for one call: the codec work between the two legs.

Theory of operation
-------------------
The browser leg carries Opus (RTP clock 48 kHz, ``opus/48000/2``, browsers send mono);
the gateway leg carries G.711, whose media port consumes and produces 8 kHz mono
``int16`` frames of 160 samples (20 ms). Each call owns one :class:`OpusDecoder`
(browser -> gateway) and one :class:`OpusEncoder` (gateway -> browser). Both wrap one
libopus context from PyAV, opened once and kept for the call; a frame costs one C call
into libopus plus a few numpy operations, nothing is built per frame.

Browser -> gateway: ``payload -> libopus decode at 48 kHz -> Downsampler -> 8 kHz``.
FFmpeg's libopus wrapper always decodes at 48 kHz, so the 6:1 decimation is ours:
:class:`Downsampler` is a polyphase FIR (216-tap Kaiser-windowed sinc, cut-off 3.85 kHz)
with numpy, flat to 3.4 kHz (-0.04 dB), >= 75 dB down from 4.4 kHz up, so nothing
aliases into the telephone band; 2.2 ms of delay. It emits exactly ``len(input) / 6``
samples per call, so a packet of D ms always gives ``8 * D`` samples.

Why not soxr (measured on this machine, see ``tests/bench/transcode_bench.py``):
``soxr.ResampleStream`` in its normal mode holds input back and emits it in bursts
(HQ: ~1160 samples every 8th 20 ms call, up to ~155 ms held back; VHQ alike), which
a 20 ms frame clock cannot use without a FIFO that deep; its variable-rate mode
streams 160 samples per call but holds 220 output samples (27.5 ms) back and costs
~18 us. The FIR costs ~9 us with 2.2 ms of delay.

Gateway -> browser: ``8 kHz frame -> libopus encode at 8 kHz -> one packet``. libopus
takes 8 kHz input natively (the RTP clock stays 48 kHz: Opus packets carry no rate), so
there is no upsampler and no resampler delay at all; an 8 kHz input also makes the
encoder code narrowband (SILK NB in ``voip`` mode), which is all a G.711 far end has,
and it is cheaper than encoding 48 kHz. FFmpeg's libopus encoder returns the packet
of each frame at once, so N frames in give N packets out; its lookahead (6.5 ms) is
inside the stream (the pre-skip we never apply), not a missing packet.

Loss: :meth:`OpusDecoder.conceal` runs libopus's own packet-loss concealment by
decoding a packet that holds only a table-of-contents byte: RFC 6716 3.2.1 makes a
zero-length frame "lost", and libopus conceals it from its decoder state (SILK or
CELT PLC), fading out over longer gaps.

Errors::

    TranscodeError               base of everything this module raises
    +-- CorruptPayloadError      the browser sent an Opus payload libopus refuses
    |                            (remote; drop and count it, conceal if you want audio)
    +-- FrameSizeError           the caller passed a frame of the wrong size or dtype
                                 (local: a bug; also a ValueError)

This module owns codec arithmetic only: no RTP, no jitter buffer, no clocks, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext

__all__ = [
    "CorruptPayloadError",
    "Downsampler",
    "FrameSizeError",
    "OpusDecoder",
    "OpusEncoder",
    "OpusEncoderConfig",
    "TranscodeError",
]

OPUS_RATE: Final = 48000
"""The rate libopus decodes at through PyAV, and the Opus RTP clock rate."""
PCM_RATE: Final = 8000
"""The gateway leg's rate."""
RATIO: Final = OPUS_RATE // PCM_RATE
FRAME_MS_CHOICES: Final = (10, 20, 40, 60)
"""Packet durations the encoder may be configured for (RFC 7587 ptime values)."""

_MAX_PLC_MS: Final = 120  # one Opus packet carries at most 120 ms


class TranscodeError(Exception):
    """Base class of this module's errors (see the module docstring for the tree)."""


class CorruptPayloadError(TranscodeError):
    """Raised when libopus refuses a payload (garbage, truncated, or empty)."""


class FrameSizeError(TranscodeError, ValueError):
    """Raised when a PCM frame has the wrong length, shape or dtype (a caller's bug)."""


# -- resampling ---------------------------------------------------------------------------


def _lowpass(taps: int, cutoff_hz: float, attenuation_db: float) -> npt.NDArray[np.float64]:
    """Kaiser-windowed sinc low-pass at ``OPUS_RATE`` with unit DC gain."""
    beta = 0.1102 * (attenuation_db - 8.7)  # Kaiser's formula for A > 50 dB
    fc = cutoff_hz / OPUS_RATE
    n = np.arange(taps) - (taps - 1) / 2
    h: npt.NDArray[np.float64] = 2 * fc * np.sinc(2 * fc * n) * np.kaiser(taps, beta)
    h /= h.sum()
    return h


_TAPS: Final = 216  # a multiple of RATIO: 36 taps per polyphase branch
_FIR: Final = _lowpass(_TAPS, cutoff_hz=3850.0, attenuation_db=75.0)
_HISTORY: Final = _TAPS - RATIO
_BRANCH_TAPS: Final = _TAPS // RATIO


class Downsampler:
    """48 kHz -> 8 kHz, streaming, with an anti-aliasing FIR; one per stream.

    Output sample ``n`` of a call is the filter centred ``(taps - 1) / 2`` input
    samples before the last input sample of block ``n`` (block = 6 inputs); the
    group delay is :attr:`delay_48k` samples at 48 kHz (2.24 ms).

    Attributes:
        delay_48k: the filter's group delay in 48 kHz samples (107.5).
    """

    delay_48k: Final = (_TAPS - 1) / 2

    __slots__ = ("_buf", "_kernel")

    def __init__(self) -> None:
        """Start with silent history."""
        # y[n] = sum_k hr[k] buf[6n + k] (hr: the taps reversed, buf: history + input).
        # Folding k = 6m + p turns it into a (36 x 6) kernel times the input viewed as
        # rows of 6 samples: z[m, r] = sum_p hr[6m + p] buf[6r + p], and y[n] is the
        # diagonal sum_m z[m, n + m], read as a strided view of z and summed down.
        self._kernel = np.ascontiguousarray(_FIR[::-1].reshape(-1, RATIO), np.float32)
        self._buf = np.zeros(_HISTORY + RATIO * 960, np.float32)  # grows on demand

    def process(self, pcm48k: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Filter and decimate one block; returns ``len(pcm48k) // 6`` samples.

        Args:
            pcm48k: mono 48 kHz samples, ``int16`` (or any real dtype), a length that is
                a multiple of 6 (Opus always gives multiples of 120).

        Raises:
            FrameSizeError: the length is not a multiple of 6 or the array is not 1-D.
        """
        if pcm48k.ndim != 1 or pcm48k.shape[0] % RATIO:
            raise FrameSizeError(f"48 kHz block of shape {pcm48k.shape}: need 1-D, len % 6 == 0")
        size = pcm48k.shape[0]
        end = _HISTORY + size
        if end > self._buf.shape[0]:
            grown = np.zeros(end, np.float32)
            grown[:_HISTORY] = self._buf[:_HISTORY]
            self._buf = grown
        buf = self._buf
        buf[_HISTORY:end] = pcm48k
        z = self._kernel @ buf[:end].reshape(-1, RATIO).T
        step = z.strides[1]
        diagonals = np.ndarray(
            (_BRANCH_TAPS, size // RATIO), np.float32, z, 0, (z.strides[0] + step, step)
        )
        out: npt.NDArray[np.float32] = diagonals.sum(axis=0)
        buf[:_HISTORY] = buf[size:end]
        np.rint(out, out=out)
        np.minimum(out, 32767, out=out)  # cheaper than np.clip on 160 samples
        np.maximum(out, -32768, out=out)
        return out.astype(np.int16)

    def reset(self) -> None:
        """Forget the history (a new stream, e.g. after an SSRC change)."""
        self._buf[:_HISTORY] = 0


# -- Opus ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OpusEncoderConfig:
    """How :class:`OpusEncoder` codes the gateway's audio for the browser.

    The encoder always runs libopus in ``voip`` mode on 8 kHz input, which makes it
    narrowband (SILK NB): a G.711 far end has nothing above 4 kHz, so a wider band
    would only spend bits and CPU on nothing (``quality_bench`` measured it: 48 kHz
    input with mediumband, wideband or fullband allowed scores lower at the same bit
    rate and costs 1.3-2.3x the CPU). So there is no bandwidth option. Invalid values
    raise ``ValueError``.
    """

    complexity: int = 0
    """libopus complexity 0..10: CPU for quality. Chosen by ``tests/bench/quality_bench.py``
    (PESQ narrowband through the whole carrier -> browser path, three voices): at 32 kbit/s
    CBR, 0 scores MOS-LQO 4.07 against 4.09 at 10 (PCMU alone: 4.07) for ~55 us per 20 ms
    frame against ~160 us (5: ~140 us; from 2 up SILK's costlier analysis doubles the
    time). Below 32 kbit/s complexity matters more: at 24 kbit/s 0 loses 0.07 on average
    and 0.12 on a male voice."""
    bitrate: int = 32000
    """Target bit rate in bit/s, 6000..510000. 32000 lets complexity 0 reach the PCMU
    ceiling (``quality_bench``: 24000 needs complexity 4 for that, ~140 us a frame); it
    costs 20 bytes a packet more than 24000 toward the browser, and almost no CPU."""
    frame_ms: int = 20
    """Packet duration in ms, one of 10, 20, 40, 60; :meth:`OpusEncoder.encode` takes
    ``8 * frame_ms`` samples per call. Browsers expect 20 (the default ``ptime``)."""
    constant_bitrate: bool = True
    """Hard CBR: every packet has ``bitrate * frame_ms / 8000`` bytes. Variable bit
    rate inside SRTP leaks which sounds were spoken through the packet sizes (RFC 6562),
    so CBR is the default. It costs CPU: SILK's rate loop re-encodes a frame until it
    fits, ~1.6x VBR's time at complexity 0 and ~2x from 2 up. False selects VBR
    (constrained VBR is the same thing in SILK narrowband); the same PESQ score at
    32 kbit/s, ~17% fewer bytes on speech."""
    fec_loss_percent: int = 0
    """Expected packet loss toward the browser, 0..100. Above 0 libopus adds in-band
    FEC (LBRR) sized for that loss, which the browser's decoder uses when a packet is
    lost; 0 turns FEC off."""

    def __post_init__(self) -> None:
        """Check the ranges.

        Raises:
            ValueError: a field is out of range; the message names it.
        """
        if not 0 <= self.complexity <= 10:
            raise ValueError(f"complexity: {self.complexity} is not in 0..10")
        if not 6000 <= self.bitrate <= 510000:
            raise ValueError(f"bitrate: {self.bitrate} bit/s is not in 6000..510000")
        if self.frame_ms not in FRAME_MS_CHOICES:
            raise ValueError(f"frame_ms: {self.frame_ms} is not one of {FRAME_MS_CHOICES}")
        if not 0 <= self.fec_loss_percent <= 100:
            raise ValueError(f"fec_loss_percent: {self.fec_loss_percent} is not in 0..100")


def _encoder_options(config: OpusEncoderConfig) -> dict[str, str]:
    return {
        "application": "voip",
        "compression_level": str(config.complexity),
        "frame_duration": str(config.frame_ms),
        "vbr": "off" if config.constant_bitrate else "on",
        "packet_loss": str(config.fec_loss_percent),
        "fec": "1" if config.fec_loss_percent else "0",
    }


class OpusEncoder:
    """8 kHz ``int16`` frames from the gateway -> one Opus packet each, for the browser.

    The packets are mono and valid in an ``opus/48000/2`` stream (RFC 7587 lets a
    sender send mono in it); their RTP timestamp step is ``48 * frame_ms``.

    Attributes:
        config: the settings this encoder was opened with.
        frame_samples: the input frame length, ``8 * config.frame_ms``.
    """

    __slots__ = ("_context", "_frame", "_pcm", "config", "frame_samples")

    def __init__(self, config: OpusEncoderConfig | None = None) -> None:
        """Open libopus for ``config`` (the defaults when None).

        Raises:
            TranscodeError: libopus refused to open (the PyAV build lacks it).
        """
        self.config = config if config is not None else OpusEncoderConfig()
        self.frame_samples = PCM_RATE * self.config.frame_ms // 1000
        context = av.CodecContext.create("libopus", "w")
        context.sample_rate = PCM_RATE
        context.layout = "mono"
        context.format = "s16"
        context.bit_rate = self.config.bitrate
        context.options = _encoder_options(self.config)
        try:
            context.open()
        except av.FFmpegError as exc:
            raise TranscodeError(f"cannot open the Opus encoder: {exc}") from exc
        self._context = context
        # One frame for the whole call: libopus consumes the samples inside encode(),
        # so each call overwrites them in place instead of building a new AVFrame.
        self._frame = av.AudioFrame(format="s16", layout="mono", samples=self.frame_samples)
        self._frame.sample_rate = PCM_RATE
        self._pcm = np.frombuffer(memoryview(self._frame.planes[0]), np.int16, self.frame_samples)

    def encode(self, pcm8k: npt.NDArray[np.int16]) -> bytes:
        """Encode one frame; always returns exactly one packet.

        Args:
            pcm8k: ``frame_samples`` mono ``int16`` samples at 8 kHz (160 for 20 ms).

        Returns:
            The Opus payload for one RTP packet.

        Raises:
            FrameSizeError: ``pcm8k`` is not 1-D ``int16`` of ``frame_samples`` samples.
            TranscodeError: libopus failed (not expected with a valid frame).
        """
        if pcm8k.dtype != np.int16 or pcm8k.shape != self._pcm.shape:
            raise FrameSizeError(
                f"Opus encoder frame {pcm8k.dtype}{pcm8k.shape}: need int16 ({self.frame_samples},)"
            )
        self._pcm[:] = pcm8k
        try:
            packets = self._context.encode(self._frame)
        except av.FFmpegError as exc:
            raise TranscodeError(f"Opus encoding failed: {exc}") from exc
        if len(packets) != 1:
            raise TranscodeError(f"Opus encoder gave {len(packets)} packets for one frame")
        return bytes(packets[0])


def _plc_payload(samples: int) -> bytes:
    """An Opus packet of ``samples / 8`` ms whose frames are all empty, i.e. lost.

    CELT-only full-band TOC (configs 28..31 are 2.5/5/10/20 ms); the mode in the TOC
    does not matter, libopus conceals in the mode of the last good frame.
    """
    for code, frame_samples in ((3, 160), (2, 80), (1, 40), (0, 20)):
        count, rest = divmod(samples, frame_samples)
        if not rest:
            toc = (28 + code) << 3
            return bytes((toc,)) if count == 1 else bytes((toc | 3, count))
    raise AssertionError("unreachable: samples is a multiple of 20")  # pragma: no cover


class OpusDecoder:
    """Browser Opus payloads -> 8 kHz mono ``int16`` PCM for the gateway.

    Mono and stereo packets both decode (stereo is downmixed). A packet of D ms gives
    ``8 * D`` samples: 160 for 20 ms, 80/320/480 for 10/40/60 ms, and any multiple of 20
    (2.5 ms) up to 960 (120 ms) that a peer may send. Corrupt payloads raise
    :class:`CorruptPayloadError` and leave the decoder usable; they are never
    concealed behind the caller's back (a garbage packet does not say how long it
    was): the caller counts the drop and calls :meth:`conceal` if it needs audio.
    """

    __slots__ = ("_context", "_downsampler")

    def __init__(self) -> None:
        """Open libopus (mono out, 48 kHz, no pre-skip: RTP streams have none).

        Raises:
            TranscodeError: libopus refused to open.
        """
        context = av.CodecContext.create("libopus", "r")
        context.sample_rate = OPUS_RATE
        context.layout = "mono"
        context.format = "s16"
        try:
            context.open()
        except av.FFmpegError as exc:
            raise TranscodeError(f"cannot open the Opus decoder: {exc}") from exc
        self._context: AudioCodecContext = context
        self._downsampler = Downsampler()

    def decode(self, payload: bytes) -> npt.NDArray[np.int16]:
        """Decode one RTP payload to 8 kHz.

        Args:
            payload: the RTP payload of one Opus packet (not empty).

        Returns:
            ``8 * duration_ms`` mono samples.

        Raises:
            CorruptPayloadError: libopus refused the payload, or it was empty (an empty
                packet would put FFmpeg's decoder into its end-of-stream state for good).
        """
        if not payload:
            raise CorruptPayloadError("empty Opus payload")
        try:
            frames = self._context.decode(av.Packet(payload))
        except av.FFmpegError as exc:
            raise CorruptPayloadError(f"undecodable Opus payload ({len(payload)} bytes)") from exc
        if len(frames) == 1:
            frame = frames[0]
            pcm48k = np.frombuffer(memoryview(frame.planes[0]), np.int16, frame.samples)
        elif frames:  # pragma: no cover - libopus gives one frame per packet
            pcm48k = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
        else:
            raise CorruptPayloadError("Opus payload decoded to no audio")
        return self._downsampler.process(pcm48k)

    def conceal(self, samples: int = 160) -> npt.NDArray[np.int16]:
        """Audio for a lost packet from libopus's packet-loss concealment.

        The concealment continues the last decoded sound and fades to silence over
        consecutive losses (libopus's SILK or CELT PLC); before any packet it is
        silence. It also updates the decoder state, so the next real packet joins
        smoothly.

        Args:
            samples: how much to conceal at 8 kHz: a multiple of 20 (2.5 ms), 20..960.

        Returns:
            ``samples`` mono samples.

        Raises:
            FrameSizeError: ``samples`` is not a multiple of 20 in 20..960.
        """
        if samples % 20 or not 20 <= samples <= PCM_RATE * _MAX_PLC_MS // 1000:
            raise FrameSizeError(f"cannot conceal {samples} samples: need k * 20, 20..960")
        return self.decode(_plc_payload(samples))
