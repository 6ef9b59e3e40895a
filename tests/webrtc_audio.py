"""Audio material for the packet-level browser (tests and the call benchmark).

Theory of operation: the load generator must stay cheap, so audio is prepared once and
replayed: :func:`speech_8k` / :func:`speech_48k` give a few seconds of speech (espeak-ng,
else a synthetic speech-like signal), :func:`opus_packets` encodes a 48 kHz mono signal
with PyAV's libopus into 20 ms payloads (as a browser would send them), and
:func:`pcmu_payloads` cuts an 8 kHz signal into 20 ms G.711 u-law payloads. Both are
cached per process. :func:`aligned_correlation` is the proof that audio crossed the bridge:
the normalised cross-correlation of two signals at their best alignment.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import soxr

from sip_gateway.media.g711 import ulaw_encode

__all__ = [
    "SPEECH_TEXT",
    "aligned_correlation",
    "level_dbfs",
    "opus_packets",
    "pcmu_payloads",
    "speech_8k",
    "speech_48k",
    "speech_like",
    "windowed_correlation",
]

Pcm = npt.NDArray[np.int16]

SPEECH_TEXT = (
    "The quick brown fox jumps over the lazy dog. Seven bridges carry the call across the river."
)
OPUS_BITRATE = 32000
"""Bit rate of the pre-encoded stream (what Chromium sends for mono voice)."""


def speech_like(rate: int, seconds: float = 3.0) -> Pcm:
    """Voiced syllables: gliding pitch, formant-weighted harmonics, a 4 Hz envelope."""
    t = np.arange(round(rate * seconds)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    signal = np.zeros_like(t)
    for harmonic, gain in ((1, 1.0), (2, 0.6), (3, 0.5), (5, 0.3), (8, 0.15), (12, 0.08)):
        if harmonic * 180 < rate / 2:
            signal += gain * np.sin(harmonic * phase)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.6
    out: Pcm = (signal * envelope / np.max(np.abs(signal)) * 12000).astype(np.int16)
    return out


@functools.lru_cache(maxsize=4)
def _espeak(text: str) -> tuple[int, bytes] | None:
    """espeak-ng's WAV of ``text`` as (rate, int16 mono bytes), or None without espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True, timeout=30)
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                return None
            return wav.getframerate(), wav.readframes(wav.getnframes())


@functools.lru_cache(maxsize=8)
def _speech(rate: int, seconds: float) -> bytes:
    found = _espeak(SPEECH_TEXT)
    if found is None:
        return speech_like(rate, seconds).tobytes()
    source_rate, raw = found
    pcm = np.frombuffer(raw, np.int16).astype(np.float32)
    resampled = soxr.resample(pcm, source_rate, rate, quality="HQ")
    wanted = round(rate * seconds)
    if len(resampled) < wanted:
        resampled = np.tile(resampled, wanted // len(resampled) + 1)
    clipped = np.clip(resampled[:wanted], -32768, 32767).astype(np.int16)
    return bytes(clipped.tobytes())


def speech_8k(seconds: float = 3.0) -> Pcm:
    """``seconds`` of speech at 8 kHz (espeak-ng, else :func:`speech_like`)."""
    return np.frombuffer(_speech(8000, seconds), np.int16).copy()


def speech_48k(seconds: float = 3.0) -> Pcm:
    """The same speech at 48 kHz."""
    return np.frombuffer(_speech(48000, seconds), np.int16).copy()


@functools.lru_cache(maxsize=8)
def _opus(pcm: bytes, bitrate: int) -> tuple[bytes, ...]:
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate = 48000
    context.layout = "mono"
    context.format = "s16"
    context.bit_rate = bitrate
    context.options = {"application": "voip", "frame_duration": "20", "compression_level": "10"}
    context.open()
    samples = np.frombuffer(pcm, np.int16)
    packets: list[bytes] = []
    for start in range(0, len(samples) - 959, 960):
        frame = av.AudioFrame.from_ndarray(
            samples[start : start + 960].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        packets.extend(bytes(p) for p in context.encode(frame))
    packets.extend(bytes(p) for p in context.encode(None))
    return tuple(packets[: len(samples) // 960])


def opus_packets(pcm48k: Pcm, bitrate: int = OPUS_BITRATE) -> tuple[bytes, ...]:
    """20 ms Opus payloads of a 48 kHz mono signal (libopus ``voip``, cached)."""
    return _opus(pcm48k.astype(np.int16).tobytes(), bitrate)


def pcmu_payloads(pcm8k: Pcm) -> tuple[bytes, ...]:
    """20 ms G.711 u-law payloads of an 8 kHz signal."""
    return tuple(ulaw_encode(pcm8k[i : i + 160]) for i in range(0, len(pcm8k) - 159, 160))


def level_dbfs(pcm: Pcm) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence)."""
    if len(pcm) == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return 20 * np.log10(rms / 32768) if rms > 0 else float("-inf")


def aligned_correlation(reference: Pcm, received: Pcm, *, max_lag: int = 8000) -> tuple[float, int]:
    """Best normalised cross-correlation of ``reference`` inside ``received``.

    The reference is slid over the received signal (lags 0..``max_lag`` samples of
    ``received`` skipped at its start); at each lag the overlapping parts are compared
    with the Pearson coefficient. Returns (coefficient, lag).
    """
    ref = reference.astype(np.float64)
    rec = received.astype(np.float64)
    best, best_lag = -1.0, 0
    # coarse search with FFT, then exact coefficients around the peaks
    n = len(ref) + len(rec)
    size = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size))
    raw = np.fft.irfft(spectrum, size)[: max_lag + 1]
    for lag in np.argsort(raw)[-8:]:
        overlap = min(len(ref), len(rec) - int(lag))
        if overlap < len(ref) // 4:
            continue
        a, b = ref[:overlap], rec[int(lag) : int(lag) + overlap]
        if a.std() == 0 or b.std() == 0:
            continue
        coefficient = float(np.corrcoef(a, b)[0, 1])
        if coefficient > best:
            best, best_lag = coefficient, int(lag)
    return best, best_lag


def windowed_correlation(
    reference: Pcm, received: Pcm, *, window: int = 4000, max_lag: int = 12000
) -> float:
    """Median of the aligned correlations of the reference's voiced windows.

    Each ``window``-sample piece of ``reference`` (pieces quieter than -45 dBFS are
    skipped) is aligned on its own inside ``received``, so a slipped frame (a jitter
    buffer inserting or dropping 20 ms) costs one window, not the whole comparison.
    Returns -1.0 when no piece could be compared.
    """
    scores = []
    for start in range(0, len(reference) - window + 1, window):
        piece = reference[start : start + window]
        if level_dbfs(piece) < -45:
            continue
        segment = received[start : start + window + max_lag]
        if len(segment) < window:
            break
        scores.append(aligned_correlation(piece, segment, max_lag=max_lag)[0])
    return float(np.median(scores)) if scores else -1.0
