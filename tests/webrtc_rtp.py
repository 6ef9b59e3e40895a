"""The test browser's RTP side: what it sends every 20 ms and what it records.

Theory of operation: a call sends one payload of its :class:`PacketSource` (pre-encoded
Opus or G.711, cheap to replay) per 20 ms tick; one :class:`Ticker` per event loop drives
every call from absolute deadlines (``loop.call_at``), so the schedule does not drift and
a hundred calls cost one timer. :class:`Reception` records each decrypted packet that
arrives (arrival time, sequence number, timestamp, payload type, and the payload when
asked) straight from the socket callback, and decodes the audio afterwards.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bridge.media.transcode import OpusDecoder
from sip_gateway.media.g711 import ulaw_decode
from sip_gateway.media.rtp import parse_fields

__all__ = ["PTIME", "PacketSource", "Reception", "Ticker", "ticker"]

PTIME = 0.020
"""Seconds between two packets of a call."""


class _Ticking(Protocol):
    def tick(self) -> None: ...


@dataclass(slots=True)
class PacketSource:
    """Pre-encoded payloads sent one per 20 ms (looped when ``loop``, else then silence).

    Attributes:
        codec: ``opus``, ``PCMU`` or ``PCMA`` (must be the negotiated codec).
        payloads: the 20 ms payloads.
        loop: start again at the end; False sends nothing after the last one.
        sent: payloads sent so far.
        keep_times: log each send in ``send_log``.
        send_log: (RTP sequence number, ``time.perf_counter()``) of each payload sent.
    """

    codec: str
    payloads: Sequence[bytes]
    loop: bool = True
    keep_times: bool = False
    sent: int = 0
    send_log: list[tuple[int, float]] = field(default_factory=list)

    def next_payload(self) -> bytes | None:
        """The next payload, or None when exhausted."""
        if not self.payloads or (not self.loop and self.sent >= len(self.payloads)):
            return None
        payload = self.payloads[self.sent % len(self.payloads)]
        self.sent += 1
        return payload


@dataclass(slots=True)
class Reception:
    """What arrived from the bridge (decrypted RTP), one entry per packet."""

    keep_payloads: bool = True
    arrivals: list[float] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    payload_types: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    rtcp: int = 0

    def add(self, packet: bytes) -> None:
        """Record one plaintext RTP or RTCP packet (called from the socket callback)."""
        if len(packet) > 1 and 192 <= packet[1] <= 223:
            self.rtcp += 1
            return
        try:
            pt, seq, ts, _ssrc, payload = parse_fields(packet)
        except ValueError:
            return
        self.arrivals.append(time.perf_counter())
        self.sequences.append(seq)
        self.timestamps.append(ts)
        self.payload_types.append(pt)
        if self.keep_payloads:
            self.payloads.append(payload)

    @property
    def count(self) -> int:
        """Packets received."""
        return len(self.arrivals)

    def decoded(self, codec: str, payload_type: int) -> npt.NDArray[np.int16]:
        """The received audio of ``payload_type`` at 8 kHz (needs ``keep_payloads``)."""
        chosen = [
            p for p, pt in zip(self.payloads, self.payload_types, strict=True) if pt == payload_type
        ]
        if not chosen:
            return np.zeros(0, np.int16)
        if codec.lower() == "opus":
            decoder = OpusDecoder()
            return np.concatenate([decoder.decode(p) for p in chosen])
        return np.concatenate([ulaw_decode(p) for p in chosen])


class Ticker:
    """One 20 ms clock per event loop that drives every call's sender (no drift)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: set[_Ticking] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def add(self, call: _Ticking) -> None:
        self._calls.add(call)
        if self._handle is None:
            self._next = self._loop.time() + PTIME
            self._handle = self._loop.call_at(self._next, self._tick)

    def remove(self, call: _Ticking) -> None:
        self._calls.discard(call)
        if not self._calls and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._loop.time()
        due = 0
        while self._next <= now and due < 5:
            due += 1
            self._next += PTIME
        if self._next <= now:  # more than 100 ms behind: skip ahead, do not burst
            self._next = now + PTIME
        for call in list(self._calls):
            for _ in range(max(due, 1)):
                call.tick()
        self._handle = self._loop.call_at(self._next, self._tick)


_TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def ticker() -> Ticker:
    loop = asyncio.get_running_loop()
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = Ticker(loop)
    return ticker
