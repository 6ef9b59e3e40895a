"""Checks shared by the browser call tests: audio identity, page audio, security names, leftovers.

Theory of operation: a call test drives the dialer page (``tests.e2e.browser``) and then asks
three witnesses what happened. The carrier side (the in-process simulator or baresip) recorded
what it received: :func:`assert_speech` proves it is the fake microphone's speech by
normalised cross-correlation (PEERS.md 11). The page measured what it received:
:func:`sample_inbound_audio` polls ``getStats()`` while the call is up. The bridge itself must
be back to nothing once the call is over: :func:`wait_bridge_idle` polls until no call is
active, no task named after a call is alive and no UDP socket of this process (the bridge's
media ports, aiortc's ICE sockets, the simulator's RTP ports all live in this process) is open.

Chromium loops the microphone WAV, so the reference for the correlation is the WAV repeated:
the received slice may straddle the loop point. A carrier records what its adaptive jitter
buffer plays out, and when the machine is loaded (2 cores running Chromium, the bridge and
the simulator) that buffer stretches (repeats or conceals a 20 ms frame) or skips frames:
the recording is then the mic's speech with a few 20-60 ms jumps, and one lag for the whole
2 s slice scores 0.6-0.75 where each piece still scores above 0.9. So the slice is also
scored with each 0.2 s piece aligned on its own within 100 ms of the slice's best lag
(:func:`aligned_correlation`); on recordings of this suite unrelated speech scores at most
about 0.36 that way, the mic's speech at least 0.83 (Opus) and 0.93 (G.711).
"""

# ruff: noqa: ASYNC109 - polling helpers take their bound as a parameter, like browser.py

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Page

from tests.interop.peer_baresip import Baresip

from .browser import best_correlation, browser_stats, read_wav_8k
from .conftest import BridgeFactory, E2EBridge

__all__ = [
    "DTLS_VERSIONS",
    "MIN_CORRELATION",
    "AudioSamples",
    "aligned_correlation",
    "assert_speech",
    "bridge_to_baresip",
    "call_tasks",
    "sample_inbound_audio",
    "srtp_profile",
    "udp_sockets",
    "wait_bridge_idle",
    "wait_until",
]

MIN_CORRELATION = 0.8
"""Speech through the bridge must correlate at least this well with what the mic played."""
SLICE_START = 0.5
SLICE_SECONDS = 2.0
RATE = 8000

DTLS_VERSIONS = {"FEFD": "DTLSv1.2", "FEFC": "DTLSv1.3"}
"""getStats ``tlsVersion`` (hex wire version) -> OpenSSL's protocol name (the record's)."""

_SRTP_PROFILES = {
    # RFC 5764 / RFC 7714 profile names, as OpenSSL (the bridge) and Chromium spell them
    "SRTP_AES128_CM_SHA1_80": "SRTP_AES128_CM_HMAC_SHA1_80",
    "SRTP_AES128_CM_HMAC_SHA1_80": "SRTP_AES128_CM_HMAC_SHA1_80",
    "SRTP_AES128_CM_SHA1_32": "SRTP_AES128_CM_HMAC_SHA1_32",
    "SRTP_AES128_CM_HMAC_SHA1_32": "SRTP_AES128_CM_HMAC_SHA1_32",
    "SRTP_AEAD_AES_128_GCM": "SRTP_AEAD_AES_128_GCM",
    "SRTP_AEAD_AES_256_GCM": "SRTP_AEAD_AES_256_GCM",
}


def srtp_profile(name: str | None) -> str:
    """The RFC name of a DTLS-SRTP profile spelled by OpenSSL or by Chromium's getStats.

    Raises:
        AssertionError: no name, or one this table does not know.
    """
    assert name, "no SRTP profile"
    assert name.upper() in _SRTP_PROFILES, f"unknown SRTP profile {name!r}"
    return _SRTP_PROFILES[name.upper()]


# --------------------------------------------------------------------------------------------
# Audio


def assert_speech(recording: Path | None, mic_wav: Path, *, note: object = "") -> float:
    """Check that ``recording`` holds the mic's speech: correlation >= :data:`MIN_CORRELATION`.

    The 2 s slice starting 0.5 s into the recording is searched for in the mic WAV (repeated,
    since Chromium loops it), both at 8 kHz; it passes when either its single-lag correlation
    (:func:`~tests.e2e.browser.best_correlation`) or its piecewise-aligned one
    (:func:`aligned_correlation`) reaches the bar.

    Args:
        recording: the carrier's WAV of what it received.
        mic_wav: the fake microphone's WAV.
        note: more context for the failure message (e.g. the carrier's media stats).

    Returns:
        the better of the two correlations.

    Raises:
        AssertionError: no recording, too short, silent or not the mic's speech.
    """
    assert recording is not None and recording.exists(), f"no recording: {recording}"
    received = read_wav_8k(recording)
    start, length = int(SLICE_START * RATE), int(SLICE_SECONDS * RATE)
    assert len(received) >= start + length, f"{recording}: only {len(received) / RATE:.2f} s"
    part = received[start : start + length]
    rms = float(np.sqrt(np.mean(part.astype(np.float64) ** 2)))
    assert rms > 0.01, f"{recording}: silent slice (RMS {rms:.4f})"
    reference = np.tile(read_wav_8k(mic_wav), 3)
    single, lag = best_correlation(part, reference)
    pieces = aligned_correlation(part, reference, lag)
    assert max(single, pieces) >= MIN_CORRELATION, (
        f"{recording}: correlation {single:.3f} (one lag), {pieces:.3f} (0.2 s pieces) {note}"
    )
    return max(single, pieces)


def aligned_correlation(
    received: np.ndarray,
    reference: np.ndarray,
    lag: int,
    *,
    piece: int = 1600,
    slack: int = 800,
) -> float:
    """Normalised correlation of ``received`` with each ``piece`` aligned on its own.

    Each piece of ``piece`` samples takes the lag (within ``slack`` samples of ``lag``, the
    whole slice's best) where its normalised correlation with ``reference`` is highest;
    reference windows that are nearly silent are not candidates. The result is the pieces'
    correlations weighted by their energy (equal to the single-lag correlation when every
    piece keeps ``lag`` and the levels are steady).
    """
    total = weighted = 0.0
    for start in range(0, len(received) - piece + 1, piece):
        chunk = received[start : start + piece].astype(np.float64)
        energy = float(np.dot(chunk, chunk))
        if energy == 0.0:
            continue
        lo = max(0, lag + start - slack)
        hi = min(len(reference) - piece, lag + start + slack)
        if hi < lo:
            continue
        total += energy
        weighted += energy * _best_normalised(chunk, reference[lo : hi + piece])
    return weighted / total if total > 0.0 else 0.0


def _best_normalised(chunk: np.ndarray, segment: np.ndarray) -> float:
    """max over lags of ``chunk`` inside ``segment`` of the normalised correlation."""
    segment = segment.astype(np.float64)
    size, lags = len(chunk), len(segment) - len(chunk) + 1
    n = len(segment) + size
    raw = np.fft.irfft(np.fft.rfft(segment, n) * np.conj(np.fft.rfft(chunk, n)), n)[:lags]
    cumulative = np.concatenate([[0.0], np.cumsum(segment * segment)])
    window_norm = np.sqrt(np.maximum(cumulative[size : size + lags] - cumulative[:lags], 0.0))
    audible = window_norm > 0.003 * np.sqrt(size)  # RMS above ~-50 dBFS
    if not audible.any():
        return 0.0
    norms = window_norm[audible] * float(np.linalg.norm(chunk))
    return float(np.max(raw[audible] / norms))


@dataclass(frozen=True, slots=True)
class AudioSamples:
    """getStats summaries taken while the call was up, oldest first."""

    stats: list[dict[str, Any]]

    @property
    def max_level(self) -> float:
        """The loudest ``inbound-rtp.audioLevel`` seen."""
        return max((s["audioLevel"] or 0.0) for s in self.stats)

    def grew(self, key: str) -> float:
        """How much counter ``key`` grew from the first sample to the last."""
        first, last = self.stats[0][key] or 0, self.stats[-1][key] or 0
        return float(last - first)


async def sample_inbound_audio(page: Page, seconds: float, every: float = 0.5) -> AudioSamples:
    """Read the page's getStats summary every ``every`` seconds for ``seconds``.

    Raises:
        AssertionError: the page has no call to read.
    """
    samples = []
    for _ in range(max(2, round(seconds / every) + 1)):
        stats = await browser_stats(page)
        assert stats is not None, "the page has no RTCPeerConnection"
        samples.append(stats)
        await asyncio.sleep(every)
    return AudioSamples(samples)


# --------------------------------------------------------------------------------------------
# Waiting and leftovers


async def wait_until(
    check: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``check`` every 50 ms.

    Raises:
        AssertionError: still false after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def call_tasks() -> list[str]:
    """Names of live tasks owned by a bridged call (``Call.spawn`` names them ``c-...``)."""
    return sorted(
        name for task in asyncio.all_tasks() if (name := task.get_name()).startswith("c-")
    )


def udp_sockets() -> list[str]:
    """Local addresses (``/proc/net/udp`` hex form) of the UDP sockets this process holds."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                found.append(fields[1])
    return sorted(found)


async def wait_bridge_idle(bridge: E2EBridge, *, timeout: float = 5.0) -> None:
    """Wait until the bridge holds no call, no call task and no UDP socket.

    Raises:
        AssertionError: something is left after ``timeout`` seconds (the message lists it).
    """
    orchestrator = bridge.running.orchestrator

    def idle() -> bool:
        return orchestrator.active == 0 and not call_tasks() and not udp_sockets()

    try:
        await wait_until(idle, timeout=timeout, what="the bridge to be idle")
    except AssertionError:
        raise AssertionError(
            f"left behind after {timeout} s: calls {list(orchestrator.calls)}, "
            f"tasks {call_tasks()}, UDP sockets {udp_sockets()}"
        ) from None


async def bridge_to_baresip(bridge_factory: BridgeFactory, gateway: Baresip, ca: Path) -> E2EBridge:
    """A bridge whose one trunk is the baresip ``gateway`` (no carrier simulator)."""
    return await bridge_factory(
        trunks=[
            {
                "name": "baresip",
                "host": "127.0.0.1",
                "port": gateway.tls_port,
                "ca_file": ca,
                "allowed_sources": ["127.0.0.1/32"],
            }
        ],
        carrier_sim={"enabled": False},
    )
