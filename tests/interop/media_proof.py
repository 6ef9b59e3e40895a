"""Evidence helpers for the gateway-leg proofs: audio checks, a loopback capture, key material.

* Audio (PEERS.md section 11): :class:`Tone` is an audio source that keeps what it produced,
  :class:`Heard` a sink, :class:`OurMedia` an RtpMediaPort with both; :func:`assert_tone`
  (:func:`dominant_hz`, :func:`rms`) judges a slice of samples.
* :class:`LoopbackCapture` reads every IPv4 UDP datagram on ``lo`` with a raw ``AF_PACKET``
  socket (root; no tshark needed) in a thread, so a test can prove that what went over the
  wire between two media ports was SRTP: RTP header in the clear, payload ciphertext
  (PEERS.md section 10). With ``tcp=True`` it also keeps TCP segments (for TLS handshakes).
* :func:`key_strings` lists every form in which the SDES keys of a negotiated
  :class:`MediaConfig` could leak into a log (base64 inline key, hex, ``repr`` of bytes);
  :func:`assert_no_keys` greps text for them without ever printing a key.
"""

from __future__ import annotations

import base64
import collections
import itertools
import math
import socket
import struct
import threading
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sip_gateway.aio import RtpMediaPort
from sip_gateway.media.events import DtmfReceived
from sip_gateway.media.g711 import G711Codec
from sip_gateway.sdp import MediaConfig, SdesCrypto

RATE = 8000
FRAME = 160
TAG_LENGTH = {
    "AES_CM_128_HMAC_SHA1_80": 10,
    "AES_CM_128_HMAC_SHA1_32": 4,
    "AEAD_AES_128_GCM": 16,
    "AEAD_AES_256_GCM": 16,
}
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


# -- audio ------------------------------------------------------------------------------


def dominant_hz(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def rms(x: np.ndarray) -> float:
    """RMS as a fraction of full scale."""
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) / 32767)


class Tone:
    """Audio source: a sine at ``hz``, one 20 ms frame per call; keeps what it produced."""

    def __init__(self, hz: float = 1000.0, level: float = 0.5) -> None:
        self.hz, self.level, self.n = hz, level, 0
        self.frames: list[np.ndarray] = []

    def __call__(self) -> np.ndarray:
        t = np.arange(self.n, self.n + FRAME) / RATE
        self.n += FRAME
        frame = (self.level * 32767 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
        self.frames.append(frame)
        return frame

    def plaintext(self, codec: str) -> bytes:
        """The G.711 encoding of everything produced so far."""
        return G711Codec(codec).encode(np.concatenate(self.frames))


class Heard:
    """Audio sink: keeps every played-out frame."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def __call__(self, pcm: np.ndarray) -> None:
        self.frames.append(pcm)

    def samples(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.int16)


class OurMedia:
    """Our end of a call: an RtpMediaPort sending a tone and keeping what it hears."""

    def __init__(self, hz: float = 1000.0, *, rtcp_mux: bool = True) -> None:
        self.tone, self.heard, self.events = Tone(hz), Heard(), []
        self.rtcp_mux = rtcp_mux
        self.port: RtpMediaPort | None = None

    async def open(self) -> RtpMediaPort:
        self.port = await RtpMediaPort.open(
            "127.0.0.1",
            rtcp_mux=self.rtcp_mux,
            audio_source=self.tone,
            audio_sink=self.heard,
            on_event=self.events.append,
        )
        return self.port

    def digits(self) -> list[str]:
        return [e.digit for e in self.events if isinstance(e, DtmfReceived)]

    def send_digits(self, digits: Iterable[str]) -> None:
        assert self.port is not None
        for digit in digits:
            self.port.send_dtmf(digit)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def assert_tone(samples: np.ndarray, hz: float, *, seconds: float = 1.0, tolerance: float = 15):
    """The last ``seconds`` of ``samples`` are a loud tone at ``hz``."""
    assert len(samples) >= seconds * RATE, f"only {len(samples) / RATE:.2f} s of audio"
    tail = samples[-int(seconds * RATE) :]
    measured = dominant_hz(tail)
    assert abs(measured - hz) < tolerance, f"dominant {measured:.0f} Hz, expected {hz:.0f}"
    assert rms(tail) > 0.1, f"RMS {rms(tail):.3f} of full scale: silent"


# -- capture ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Datagram:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment: ``seq`` is its sequence number, ``syn`` its SYN flag."""

    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    syn: bool
    payload: bytes


class LoopbackCapture:
    """Every IPv4 UDP datagram on ``lo`` while running (AF_PACKET raw socket; needs root);
    with ``tcp``, every TCP segment too (``segments``)."""

    def __init__(self, *, tcp: bool = False) -> None:
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self.datagrams: list[Datagram] = []
        self.segments: list[Segment] = []
        self._tcp = tcp
        self._thread = threading.Thread(target=self._run, name="lo capture", daemon=True)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] == PACKET_OUTGOING:  # each loopback packet is seen twice
                continue
            datagram = _udp(frame)
            if datagram is not None:
                self.datagrams.append(datagram)
            elif self._tcp and (segment := _tcp(frame)) is not None:
                self.segments.append(segment)

    def between(self, a: int, b: int) -> list[Datagram]:
        """Datagrams from UDP port ``a`` to port ``b``."""
        return [d for d in self.datagrams if d.src[1] == a and d.dst[1] == b]


def _udp(frame: bytes) -> Datagram | None:
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    if ip[9] != 17:
        return None
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    sport, dport, length = struct.unpack("!HHH", ip[header : header + 6])
    payload = ip[header + 8 : header + length]
    return Datagram((src, sport), (dst, dport), payload)


def _tcp(frame: bytes) -> Segment | None:
    if len(frame) < 14 + 20 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    if ip[9] != 6:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    sport, dport, seq = struct.unpack("!HHI", ip[header : header + 8])
    offset = (ip[header + 12] >> 4) * 4
    syn = bool(ip[header + 13] & 0x02)
    payload = ip[header + offset : total]
    return Segment((src, sport), (dst, dport), seq, syn, payload)


def entropy(data: bytes) -> float:
    counts = collections.Counter(data)
    return -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())


def plaintext_windows(plaintext: Iterable[bytes], width: int = 16) -> set[bytes]:
    """Every ``width``-byte window of the G.711 byte streams in ``plaintext``."""
    return {data[i : i + width] for data in plaintext for i in range(len(data) - width + 1)}


def rtp_streams(datagrams: list[Datagram]) -> dict[tuple[int, int], list[bytes]]:
    """RTP (not RTCP) datagrams grouped by (SSRC, payload type)."""
    streams: dict[tuple[int, int], list[bytes]] = collections.defaultdict(list)
    for d in datagrams:
        data = d.payload
        if len(data) < 12 or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
            continue
        ssrc = struct.unpack("!I", data[8:12])[0]
        streams[(ssrc, data[1] & 0x7F)].append(data)
    return streams


def assert_srtp_on_wire(
    datagrams: list[Datagram],
    *,
    ssrc: int | None,
    suite: str,
    audio_pt: int,
    plaintext: Iterable[bytes] = (),
    min_packets: int = 25,
) -> dict[str, object]:
    """The captured stream is SRTP: RTP header in the clear (version 2, our SSRC, PT,
    increasing sequence numbers), audio payloads of 160 B + the suite's tag, high byte
    entropy, and no 16-byte window of the ``plaintext`` G.711 streams in any datagram.
    Returns figures."""
    streams = rtp_streams(datagrams)
    if ssrc is None:  # the peer's: the SSRC that sent the most audio
        ssrc = max((k for k in streams if k[1] == audio_pt), key=lambda k: len(streams[k]))[0]
    audio = streams.get((ssrc, audio_pt), [])
    assert len(audio) >= min_packets, f"only {len(audio)} audio packets captured"
    sizes = collections.Counter(len(p) - 12 for p in audio)
    assert sizes.most_common(1)[0][0] == FRAME + TAG_LENGTH[suite], sizes
    seqs = [struct.unpack("!H", p[2:4])[0] for p in audio]
    steps = collections.Counter((b - a) % 65536 for a, b in itertools.pairwise(seqs))
    assert steps.most_common(1)[0][0] == 1, steps  # header readable: sequence runs on
    payloads = b"".join(p[12:] for p in audio)
    figure = entropy(payloads)
    assert figure > 7.5, f"payload entropy {figure:.2f} bit/B: not ciphertext"
    windows = plaintext_windows(plaintext)
    for d in datagrams:
        data = d.payload
        assert not any(data[i : i + 16] in windows for i in range(len(data) - 15)), (
            "plaintext G.711 found on the wire"
        )
    return {"packets": len(audio), "payload": len(audio[0]) - 12, "entropy": round(figure, 2)}


# -- key material -----------------------------------------------------------------------


def key_strings(*configs: MediaConfig) -> set[str]:
    """Every printable form of the SDES keys of ``configs`` (both directions)."""
    found: set[str] = set()
    for config in configs:
        crypto = config.crypto
        assert isinstance(crypto, SdesCrypto)
        keys = {crypto.local_key, crypto.remote_key}
        for attribute in (crypto.local_attribute, crypto.remote_attribute):
            keys.update(p.key_salt for p in attribute.key_params)
        for key in keys:
            b64 = base64.b64encode(key).decode()
            found |= {b64, b64.rstrip("="), key.hex(), key.hex().upper(), repr(key)[2:-1]}
            found.add(base64.b64encode(key[:16]).decode()[:20])  # the master key alone
    return found


def assert_no_keys(text: str, *configs: MediaConfig) -> None:
    leaks = sum(1 for s in key_strings(*configs) if s in text)
    assert leaks == 0, f"{leaks} forms of SDES key material found in the logs"
