"""Chromium + the bridge's dialer page: launch, fake microphone, page helpers, audio helpers.

Theory of operation: tests drive the real dialer page (``bridge/static``) served by the bridge,
in headless Chromium (``/usr/bin/chromium``, Debian) through Playwright's async API, the way a
person would: fill the fields, click the buttons. What the page knows is read back from
``window.pstnBridge`` (see ``bridge/static/dialer.js``), a plain object kept up to date by the
page: ``registered``, ``registration``, ``call``, ``record``, ``records``, ``dtmfSent``,
``stats``, ``crossCheck``, ``log``; ``window.pstnBridge.getStats()`` reads a fresh
``RTCPeerConnection.getStats()`` summary.

The fake microphone is speech from ``espeak-ng`` resampled to 48 kHz mono s16 (what Chromium's
``--use-file-for-fake-audio-capture`` wants, PEERS.md 7.1); :func:`read_wav_8k` reads any
16-bit WAV back as 8 kHz mono float for correlation against what a carrier recorded.

Chromium processes are found by ancestry (descendants of this Python process whose executable
lives under ``/usr/lib/chromium``) so a fixture can prove none survived the test.
"""

# ruff: noqa: ASYNC109 - Playwright waits take a timeout; every helper passes its bound through

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import wave
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from playwright.async_api import Browser, BrowserContext, Page, Playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

__all__ = [
    "CHROMIUM",
    "MIC_RATE",
    "answer",
    "best_correlation",
    "browser_stats",
    "chromium_args",
    "chromium_pids",
    "decline",
    "dial",
    "hang_up",
    "launch_chromium",
    "make_mic_wav",
    "open_and_register",
    "open_dialer",
    "read_state",
    "read_wav_8k",
    "register",
    "send_dtmf",
    "wait_call_state",
    "wait_gone",
    "wait_record",
    "wait_state",
]

log = logging.getLogger("tests.e2e.browser")

CHROMIUM = "/usr/bin/chromium"
"""Debian's launcher script; the real binaries live under :data:`_CHROMIUM_LIB`."""
_CHROMIUM_LIB = "/usr/lib/chromium/"
MIC_RATE = 48000
"""Sample rate of the fake-microphone WAV (mono, signed 16-bit)."""
MIC_TEXT = (
    "Hello from the browser. This is the pstn bridge test call. "
    "One two three four five, six seven eight nine ten."
)
"""What the fake microphone says (about five seconds; Chromium loops it)."""

_S = 1000  # Playwright timeouts are in milliseconds


# --------------------------------------------------------------------------------------------
# Audio


def make_mic_wav(directory: Path, text: str = MIC_TEXT) -> Path:
    """Write ``mic.wav``: ``text`` spoken by espeak-ng, resampled to 48 kHz mono s16.

    Returns:
        the WAV's path (reused when it exists already).

    Raises:
        subprocess.CalledProcessError: espeak-ng failed.
        FileNotFoundError: espeak-ng is not installed (Debian package espeak-ng).
    """
    out = directory / "mic.wav"
    if out.exists():
        return out
    raw = directory / "mic-espeak.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True, timeout=30)
    samples, rate = _read_wav(raw)
    resampled = soxr.resample(samples, rate, MIC_RATE)
    _write_wav(out, resampled, MIC_RATE)
    return out


def read_wav_8k(path: Path) -> np.ndarray:
    """Read a 16-bit PCM WAV (any rate, mono or stereo) as 8 kHz mono float32 in [-1, 1]."""
    samples, rate = _read_wav(path)
    if rate == 8000:
        return samples
    return np.asarray(soxr.resample(samples, rate, 8000), dtype=np.float32)


def best_correlation(received: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Best normalised cross-correlation of ``received`` inside ``reference`` (PEERS.md 11).

    Both at the same rate; ``received`` must be shorter. 1.0 is the same waveform, about 0
    unrelated; speech through G.711 scores ~1.0, through Opus ~0.95.

    Returns:
        (correlation, lag in samples into ``reference``).
    """
    if len(received) == 0 or len(received) > len(reference):
        raise ValueError("received must be non-empty and shorter than the reference")
    n = len(received) + len(reference)
    spectrum = np.fft.rfft(reference, n) * np.conj(np.fft.rfft(received, n))
    corr = np.fft.irfft(spectrum, n)[: len(reference) - len(received) + 1]
    lag = int(np.argmax(corr))
    window = reference[lag : lag + len(received)]
    norm = float(np.linalg.norm(window) * np.linalg.norm(received)) + 1e-12
    return float(np.dot(window, received) / norm), lag


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = data.reshape(-1, channels).mean(axis=1) / 32768.0
    return samples.astype(np.float32), rate


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())


# --------------------------------------------------------------------------------------------
# Chromium


def chromium_args(mic_wav: Path) -> list[str]:
    """Command-line switches for a headless WebRTC call on loopback (PEERS.md 7.1)."""
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-default-browser-check",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    ]


async def launch_chromium(playwright: Playwright, mic_wav: Path) -> Browser:
    """Start headless Chromium with the fake microphone; never Playwright's own browsers."""
    return await playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=chromium_args(mic_wav),
        ignore_default_args=["--mute-audio"],
        timeout=30 * _S,
    )


def chromium_pids(root: int | None = None) -> set[int]:
    """Live Chromium processes descending from ``root`` (default: this process)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] != "Z":
                parents[int(entry)] = stat[1]
    wanted = {root if root is not None else os.getpid()}
    found: set[int] = set()
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    for pid in wanted:
        try:
            if os.readlink(f"/proc/{pid}/exe").startswith(_CHROMIUM_LIB):
                found.add(pid)
        except OSError:
            continue
    return found


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


async def wait_gone(pids: Iterable[int], timeout: float = 5.0) -> set[int]:
    """Wait until every pid has exited (or is a zombie); return the ones still running."""
    left = set(pids)
    deadline = asyncio.get_running_loop().time() + timeout
    while left:
        left = {pid for pid in left if (s := _stat(pid)) is not None and s[0] != "Z"}
        if not left or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    return left


# --------------------------------------------------------------------------------------------
# The dialer page


async def open_dialer(context: BrowserContext, base_url: str) -> Page:
    """Open the dialer served at ``base_url`` (``https://127.0.0.1:PORT/``) and wait for JsSIP.

    The page's console errors and uncaught exceptions go to this module's logger.

    Raises:
        AssertionError: the page did not load or JsSIP is missing (bundle not built).
    """
    page = await context.new_page()
    page.on("pageerror", lambda exc: log.error("page error: %s", exc))
    page.on(
        "console",
        lambda msg: (
            log.warning("console %s: %s", msg.type, msg.text)
            if msg.type in ("error", "warning")
            else None
        ),
    )
    response = await page.goto(base_url, timeout=15 * _S)
    assert response is not None and response.ok, f"GET {base_url}: {response and response.status}"
    loaded = await page.evaluate("typeof window.JsSIP !== 'undefined' && !!window.pstnBridge")
    assert loaded, "JsSIP or dialer.js missing: build bridge/static/jssip.bundle.js (make)"
    return page


async def register(
    page: Page,
    user: str,
    password: str,
    *,
    ws_url: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Fill the login form, press Register, wait for the outcome.

    Returns:
        ``window.pstnBridge.registration``: ``{"state": "registered"|"failed", "code", "reason"}``.

    Raises:
        AssertionError: neither registered nor failed within ``timeout`` seconds.
    """
    if ws_url is not None:
        await page.fill("#ws-url", ws_url)
    await page.fill("#sip-user", user)
    await page.fill("#sip-password", password)
    await page.click("#register")
    await wait_state(
        page,
        "['registered', 'failed'].includes(s.registration.state)",
        timeout=timeout,
        what="registration outcome",
    )
    registration: dict[str, Any] = await page.evaluate("window.pstnBridge.registration")
    return registration


async def open_and_register(
    context: BrowserContext, base_url: str, user: str, password: str, *, timeout: float = 10.0
) -> Page:
    """Open the dialer and register; the returned page is registered.

    Raises:
        AssertionError: the page did not load or registration failed.
    """
    page = await open_dialer(context, base_url)
    registration = await register(page, user, password, timeout=timeout)
    assert registration["state"] == "registered", (registration, await _log_tail(page))
    return page


async def dial(page: Page, number: str) -> None:
    """Type ``number`` and press Call (the call then moves through trying/ringing/...)."""
    await page.fill("#number", number)
    await page.click("#call", timeout=5 * _S)


async def wait_call_state(page: Page, *states: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until ``window.pstnBridge.call.state`` is one of ``states``.

    States: idle, incoming, trying, ringing, early, answered, ended.

    Returns:
        the ``call`` object: state, direction (outbound/inbound), code, reason, cause,
        originator, remote, callId, startedAt, answeredAt, endedAt.

    Raises:
        AssertionError: timeout; the message carries the call and the page's log tail.
    """
    await wait_state(
        page, f"{list(states)!r}.includes(s.call.state)", timeout=timeout, what=f"call {states}"
    )
    call: dict[str, Any] = await page.evaluate("window.pstnBridge.call")
    return call


async def hang_up(page: Page, *, timeout: float = 10.0) -> dict[str, Any]:
    """Press Hang up (CANCEL, BYE, or 603 for a ringing incoming call); wait for ``ended``."""
    await page.click("#hangup", timeout=5 * _S)
    return await wait_call_state(page, "ended", timeout=timeout)


async def answer(page: Page, *, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for an incoming call, press Answer, wait until it is answered."""
    await wait_call_state(page, "incoming", timeout=timeout)
    await page.click("#answer")
    return await wait_call_state(page, "answered", timeout=timeout)


async def decline(page: Page, *, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for an incoming call, press Decline (603), wait for ``ended``."""
    await wait_call_state(page, "incoming", timeout=timeout)
    await page.click("#decline")
    return await wait_call_state(page, "ended", timeout=timeout)


async def send_dtmf(page: Page, digits: str, *, mode: str = "RFC2833", gap: float = 0.25) -> None:
    """Choose the DTMF mode and press keypad keys during a call.

    Args:
        page: a page with an answered (or early-media) call.
        digits: characters from ``0-9*#``.
        mode: ``"RFC2833"`` (RFC 4733 events in RTP) or ``"INFO"`` (SIP INFO dtmf-relay).
        gap: seconds between key presses.
    """
    await page.check("#dtmf-info" if mode == "INFO" else "#dtmf-rfc4733")
    for digit in digits:
        await page.click(f'#keypad button[data-key="{digit}"]')
        await asyncio.sleep(gap)


async def read_state(page: Page) -> dict[str, Any]:
    """A JSON copy of ``window.pstnBridge`` (functions dropped)."""
    state: dict[str, Any] = await page.evaluate("JSON.parse(JSON.stringify(window.pstnBridge))")
    return state


async def browser_stats(page: Page) -> dict[str, Any] | None:
    """A fresh getStats() summary of the current (or last) call, None without one.

    Keys: dtlsState, tlsVersion (``FEFD`` = DTLS 1.2), dtlsCipher, srtpCipher, dtlsRole,
    codec (mimeType), codecName (``opus/48000/2``), codecIn, payloadType, packetsReceived,
    packetsSent, audioLevel, totalSamplesReceived, localFingerprint, remoteFingerprint, at.
    """
    stats: dict[str, Any] | None = await page.evaluate("window.pstnBridge.getStats()")
    return stats


async def wait_record(page: Page, *, timeout: float = 10.0, legs: int = 3) -> dict[str, Any]:
    """Wait for a security record (SIP INFO from the bridge) with at least ``legs`` legs."""
    await wait_state(
        page,
        f"s.record !== null && s.record.legs.length >= {int(legs)}",
        timeout=timeout,
        what="security record",
    )
    record: dict[str, Any] = await page.evaluate("window.pstnBridge.record")
    return record


async def wait_state(page: Page, condition: str, *, timeout: float = 10.0, what: str = "") -> None:
    """Wait until the JS expression ``condition`` (``s`` is window.pstnBridge) is true.

    Raises:
        AssertionError: timeout; the message has the state and the page's log tail.
    """
    try:
        await page.wait_for_function(
            f"(() => {{ const s = window.pstnBridge; return !!s && ({condition}); }})()",
            timeout=timeout * _S,
            polling=50,
        )
    except PlaywrightTimeoutError:
        state = await read_state(page)
        state.pop("log", None)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what or condition}: {state}\n"
            + "\n".join(await _log_tail(page))
        ) from None


async def _log_tail(page: Page, lines: int = 25) -> list[str]:
    tail: list[str] = await page.evaluate(f"window.pstnBridge.log.slice(-{int(lines)})")
    return tail
