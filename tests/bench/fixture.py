"""What the media benchmarks share: keys, audio, packets, a virtual clock, the driver.

The driver functions do what :class:`~sip_gateway.aio.rtp.MediaEndpoint` does around a
:class:`~sip_gateway.media.session.MediaSession` (rtcp-mux, one socket), minus asyncio:
:func:`send_tick` is its timer callback, :func:`flush` its flush after every call.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from itertools import cycle

import numpy as np
import numpy.typing as npt
import pylibsrtp

from sip_gateway.media.g711 import G711Codec
from sip_gateway.media.session import MediaSession
from sip_gateway.media.srtp import SRTP_PROFILES
from sip_gateway.sdp.attributes import Direction
from sip_gateway.sdp.crypto import SUITES, CryptoAttribute
from sip_gateway.sdp.media_config import Codec, MediaConfig, SdesCrypto, TelephoneEvent

__all__ = ["PTIME", "RTP_HEADER", "SAMPLES", "Address", "Clock", "Fixture", "flush", "send_tick"]

PTIME = 0.020
SAMPLES = 160
RTP_HEADER = struct.Struct("!BBHII")

Pcm = npt.NDArray[np.int16]
Address = tuple[str, int]


class Fixture:
    """Keys, audio and plaintext packets shared by the measurements."""

    def __init__(self, suite: str, seed: int = 4733) -> None:
        rng = random.Random(seed)
        self.suite = suite
        size = SUITES[suite].key_salt_length
        self.key_a, self.key_b = rng.randbytes(size), rng.randbytes(size)
        self.profile = SRTP_PROFILES[suite]
        t = np.arange(SAMPLES * 50) / 8000
        tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        self.frames: list[Pcm] = [tone[i : i + SAMPLES] for i in range(0, len(tone), SAMPLES)]
        self.codec = G711Codec("PCMU")
        self.payload = self.codec.encode(self.frames[1])
        # every sequence number once, so a session can cycle through them (rollover)
        self.ring = [
            RTP_HEADER.pack(0x80, 0, seq, seq * SAMPLES & 0xFFFFFFFF, 0x1234) + self.payload
            for seq in range(0x10000)
        ]

    def libsrtp(self, key: bytes, outbound: bool) -> pylibsrtp.Session:
        ssrc_type = (
            pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
        )
        return pylibsrtp.Session(
            pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=self.profile)
        )

    def crypto(self, local: bytes, remote: bytes) -> SdesCrypto:
        return SdesCrypto(
            suite=self.suite,
            tag=1,
            local_key=local,
            remote_key=remote,
            local_attribute=CryptoAttribute.create(tag=1, suite=self.suite, key_salt=local),
            remote_attribute=CryptoAttribute.create(tag=1, suite=self.suite, key_salt=remote),
        )

    def config(self, remote: Address, direction: Direction, *, a_side: bool) -> MediaConfig:
        local, peer = (self.key_a, self.key_b) if a_side else (self.key_b, self.key_a)
        return MediaConfig(
            codecs=(Codec(payload_type=0, name="PCMU", clock_rate=8000),),
            telephone_event=TelephoneEvent(payload_type=101, clock_rate=8000),
            ptime=20,
            remote_address=remote,
            remote_rtcp_address=remote,
            rtcp_mux=True,
            direction=direction,
            crypto=self.crypto(local, peer),
        )

    def session(self, remote: Address, direction: Direction, *, a_side: bool) -> MediaSession:
        rng = random.Random(1 if a_side else 2)
        ssrc = 0x0A0A0A0A if a_side else 0x0B0B0B0B
        return MediaSession(self.config(remote, direction, a_side=a_side), local_ssrc=ssrc, rng=rng)

    def audio(self) -> Iterator[Pcm]:
        return cycle(self.frames)


class Clock:
    """The virtual tick clock: one ptime per call of :meth:`next`."""

    def __init__(self, epoch: float = 1000.0) -> None:
        self.epoch = epoch
        self.ticks = 0

    def next(self) -> float:
        now = self.epoch + self.ticks * PTIME
        self.ticks += 1
        return now


def flush(session: MediaSession, sendto: Callable[[bytes, Address], object]) -> None:
    """What ``MediaEndpoint._flush`` does (rtcp-mux: one socket)."""
    for data, address in session.datagrams_to_send():
        sendto(data, address)
    while session.next_event() is not None:
        pass
    session.get_timer()


def send_tick(
    session: MediaSession, now: float, audio: Iterator[Pcm], sendto: Callable[..., object]
) -> None:
    """What ``MediaEndpoint._on_timer`` does: pull due frames, run the timer, flush."""
    for _ in range(min(session.ticks_due(now), 10)):
        session.send_audio(next(audio), now)
    session.handle_timer(now)
    flush(session, sendto)
