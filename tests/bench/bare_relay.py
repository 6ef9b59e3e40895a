"""The bare relay: the codec and SRTP work of a bridged call with nothing else around it.

Theory of operation
-------------------
The call benchmark compares the bridge's CPU per call-second with this floor. A child
process (``python -m tests.bench.bare_relay ...``, so its CPU is read from ``/proc`` like
the bridge's) opens, per stream, two UDP sockets on loopback: the "browser side" and the
"gateway side". Each datagram that arrives is handled at once, synchronously, in the
socket callback: SRTP unprotect (libsrtp), RTP header parse, the codec chain, RTP
packetize, SRTP protect, ``sendto`` toward a sink socket that the benchmark reads (a
reading peer costs the sender a wake-up, as the bridge's peers do). No signaling, no
timers, no jitter buffer, no FIFO, no events. The load driver (:class:`RelayLoad`, in the
benchmark's process) sends both sides one packet per stream every 20 ms (50 frames/s each
way), protected with AEAD_AES_256_GCM like the bridge's legs negotiate on loopback.

Codec chains (``--chain``), at the bridge's Opus settings (complexity, bit rate):

* ``bridge``: exactly the bridge's transcoding classes: browser Opus -> ``OpusDecoder``
  (libopus at 48 kHz + the 48k -> 8k FIR) -> G.711; G.711 -> ``OpusEncoder`` (libopus
  fed 8 kHz directly). This is the same codec work the bridge does.
* ``soxr``: the chain DESIGN section 9 measured: Opus decode at 48 kHz -> soxr 48k -> 8k
  -> G.711; G.711 -> soxr 8k -> 48k -> Opus encode at 48 kHz. More work than the bridge
  does (48 kHz encoding), shown for reference.
* ``relay``: G.711 both legs: table decode + encode each way (more than the bridge does
  now: its relay passes the G.711 codes on as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pylibsrtp
import soxr

from bridge.media.transcode import OpusDecoder, OpusEncoder, OpusEncoderConfig
from sip_gateway.media.g711 import G711Codec
from sip_gateway.media.rtp import RtpPacketizer, parse_fields

__all__ = ["CHAINS", "PacedRelayLoad", "RelayLoad", "relay_chain", "start_relay"]

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM
KEY_LEN = 44  # 32-byte key + 12-byte salt
CHAINS = ("bridge", "soxr", "relay")
Chain = tuple[Callable[[bytes], bytes | None], Callable[[bytes], bytes | None], int, int]
"""(browser payload -> G.711 payload, G.711 payload -> browser payload, browser PT, rate)."""


def _session(key: bytes, direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(
        policy=pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=PROFILE)
    )


def relay_chain(chain: str, opus: OpusEncoderConfig) -> Chain:
    """The codec work of one stream (see the module docstring)."""
    g711 = G711Codec("PCMU", 0)
    if chain == "relay":
        return (
            lambda p: g711.encode_frame(g711.decode(p)),
            lambda p: g711.encode_frame(g711.decode(p)),
            0,
            8000,
        )
    if chain == "bridge":
        decoder, encoder = OpusDecoder(), OpusEncoder(opus)
        return (
            lambda p: g711.encode_frame(decoder.decode(p)),
            lambda p: encoder.encode(g711.decode(p)),
            111,
            48000,
        )
    return (*_soxr_chain(g711, opus), 111, 48000)


def _soxr_chain(
    g711: G711Codec, opus: OpusEncoderConfig
) -> tuple[Callable[[bytes], bytes | None], Callable[[bytes], bytes | None]]:
    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate, dec.layout, dec.format = 48000, "mono", "s16"
    dec.open()
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "mono", "s16"
    enc.bit_rate = opus.bitrate
    enc.options = {
        "application": "voip",
        "compression_level": str(opus.complexity),
        "frame_duration": "20",
        "vbr": "off",
    }
    enc.open()
    down = soxr.ResampleStream(48000, 8000, 1, dtype="int16", quality="HQ")
    up = soxr.ResampleStream(8000, 48000, 1, dtype="int16", quality="HQ")
    pending_8k = np.zeros(0, np.int16)
    pending_48k = np.zeros(0, np.int16)
    frame = av.AudioFrame(format="s16", layout="mono", samples=960)
    frame.sample_rate = 48000
    plane = np.frombuffer(memoryview(frame.planes[0]), np.int16, 960)

    def b2g(payload: bytes) -> bytes | None:
        nonlocal pending_8k
        frames = dec.decode(av.Packet(payload))
        pcm = np.frombuffer(memoryview(frames[0].planes[0]), np.int16, frames[0].samples)
        pending_8k = np.concatenate((pending_8k, down.resample_chunk(pcm)))
        if len(pending_8k) < 160:
            return None
        out, pending_8k = pending_8k[:160], pending_8k[160:]
        return g711.encode_frame(out)

    def g2b(payload: bytes) -> bytes | None:
        nonlocal pending_48k
        pending_48k = np.concatenate((pending_48k, up.resample_chunk(g711.decode(payload))))
        if len(pending_48k) < 960:
            return None
        plane[:] = pending_48k[:960]
        pending_48k = pending_48k[960:]
        packets = enc.encode(frame)
        return bytes(packets[0]) if packets else None

    return b2g, g2b


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """SRTP keys of one stream: what the driver protects with, what the relay sends with."""

    browser_in: bytes
    gateway_in: bytes
    browser_out: bytes
    gateway_out: bytes

    @classmethod
    def fresh(cls) -> StreamKeys:
        return cls(*(secrets.token_bytes(KEY_LEN) for _ in range(4)))


class _Side(asyncio.DatagramProtocol):
    """One socket of one stream: unprotect, codec, packetize, protect, send."""

    def __init__(
        self,
        rx_key: bytes,
        tx_key: bytes,
        work: Callable[[bytes], bytes | None],
        packetizer: RtpPacketizer,
        samples: int,
        sink: tuple[str, int],
    ) -> None:
        self._rx = _session(rx_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self._tx = _session(tx_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._work, self._packetizer, self._samples, self._sink = work, packetizer, samples, sink
        self.transport: asyncio.DatagramTransport | None = None
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            _pt, _seq, _ts, _ssrc, payload = parse_fields(self._rx.unprotect(data))
            out = self._work(payload)
        except (pylibsrtp.Error, ValueError, av.FFmpegError):
            self.errors += 1
            return
        if out is not None and self.transport is not None:
            packet = self._packetizer.packet_bytes(out, self._samples)
            self.transport.sendto(self._tx.protect(packet), self._sink)


def _same(side: _Side) -> _Side:
    return side


async def _relay(args: argparse.Namespace) -> None:
    keys = [
        StreamKeys(*(bytes.fromhex(k) for k in line.split(","))) for line in args.keys.split(";")
    ]
    opus = OpusEncoderConfig(complexity=args.complexity, bitrate=args.bitrate)
    loop = asyncio.get_running_loop()
    sink = ("127.0.0.1", args.sink)
    ports = []
    for stream in keys:
        b2g, g2b, pt, rate = relay_chain(args.chain, opus)
        rng = secrets.SystemRandom()
        to_gateway = RtpPacketizer(rng.getrandbits(32), 0, 8000, 0, 0)
        to_browser = RtpPacketizer(rng.getrandbits(32), pt, rate, 0, 0)
        browser_side = _Side(stream.browser_in, stream.gateway_out, b2g, to_gateway, 160, sink)
        gateway_side = _Side(
            stream.gateway_in, stream.browser_out, g2b, to_browser, rate // 50, sink
        )
        browser, _ = await loop.create_datagram_endpoint(
            functools.partial(_same, browser_side), local_addr=("127.0.0.1", 0)
        )
        gateway, _ = await loop.create_datagram_endpoint(
            functools.partial(_same, gateway_side), local_addr=("127.0.0.1", 0)
        )
        ports.append((browser.get_extra_info("sockname")[1], gateway.get_extra_info("sockname")[1]))
    print("READY " + json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def start_relay(
    streams: list[StreamKeys], chain: str, complexity: int, bitrate: int, sink: int
) -> tuple[subprocess.Popen[str], list[tuple[int, int]]]:
    """Start the relay child; returns it and each stream's (browser port, gateway port)."""
    keys = ";".join(
        ",".join(k.hex() for k in (s.browser_in, s.gateway_in, s.browser_out, s.gateway_out))
        for s in streams
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.bench.bare_relay",
            "--chain",
            chain,
            "--complexity",
            str(complexity),
            "--bitrate",
            str(bitrate),
            "--sink",
            str(sink),
            "--keys",
            keys,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(f"bare relay did not start: {line!r}")
    return process, [(int(b), int(g)) for b, g in json.loads(line[6:])]


class RelayLoad:
    """The driver side: sends each stream's two inputs every 20 ms, protected."""

    def __init__(
        self,
        streams: list[StreamKeys],
        ports: list[tuple[int, int]],
        browser_payloads: tuple[bytes, ...],
        browser_pt: int,
        browser_rate: int,
        gateway_payloads: tuple[bytes, ...],
    ) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rng = secrets.SystemRandom()
        self._streams = []
        for keys, (browser_port, gateway_port) in zip(streams, ports, strict=True):
            self._streams.append(
                (
                    _session(keys.browser_in, pylibsrtp.Policy.SSRC_ANY_OUTBOUND),
                    _session(keys.gateway_in, pylibsrtp.Policy.SSRC_ANY_OUTBOUND),
                    RtpPacketizer(rng.getrandbits(32), browser_pt, browser_rate, 0, 0),
                    RtpPacketizer(rng.getrandbits(32), 0, 8000, 0, 0),
                    ("127.0.0.1", browser_port),
                    ("127.0.0.1", gateway_port),
                )
            )
        self._browser, self._gateway = browser_payloads, gateway_payloads
        self._rate = browser_rate
        self._index = 0

    def tick(self) -> None:
        """Send one packet per stream and direction."""
        i = self._index
        self._index += 1
        b = self._browser[i % len(self._browser)]
        g = self._gateway[i % len(self._gateway)]
        for tx_b, tx_g, pk_b, pk_g, addr_b, addr_g in self._streams:
            self._sock.sendto(tx_b.protect(pk_b.packet_bytes(b, self._rate // 50)), addr_b)
            self._sock.sendto(tx_g.protect(pk_g.packet_bytes(g, 160)), addr_g)

    def close(self) -> None:
        self._sock.close()


class PacedRelayLoad(RelayLoad):
    """Like :class:`RelayLoad`, but the gateway side of each stream on its own 20 ms clock,
    the streams' phases spread evenly over the period: how the carrier simulator (one
    media clock per call) sends to the bridge. The browser side stays one burst per tick,
    as the benchmark's load generator sends. Arrivals spread out wake the relay once per
    packet instead of once per burst, which costs it CPU of its own (loop wake-ups,
    colder caches): the fair floor for a bridge whose carrier side arrives that way."""

    def start(self) -> None:
        """Start sending (no Ticker: the load keeps its own timers)."""
        self._loop = asyncio.get_running_loop()
        self._handles: dict[int, asyncio.TimerHandle] = {}  # stream index (-1: browser)
        first = self._loop.time() + 0.02
        count = len(self._streams)
        for index in range(count):
            self._gateway_at(index, first + index * 0.02 / count)
        self._browser_at(first)

    def _gateway_at(self, index: int, when: float) -> None:
        self._handles[index] = self._loop.call_at(when, self._gateway_one, index, when)

    def _gateway_one(self, index: int, when: float) -> None:
        _tx_b, tx_g, _pk_b, pk_g, _addr_b, addr_g = self._streams[index]
        payload = self._gateway[int(when * 50) % len(self._gateway)]
        self._sock.sendto(tx_g.protect(pk_g.packet_bytes(payload, 160)), addr_g)
        self._gateway_at(index, when + 0.02)

    def _browser_at(self, when: float) -> None:
        self._handles[-1] = self._loop.call_at(when, self._browser_tick, when)

    def _browser_tick(self, when: float) -> None:
        payload = self._browser[self._index % len(self._browser)]
        self._index += 1
        for tx_b, _tx_g, pk_b, _pk_g, addr_b, _addr_g in self._streams:
            self._sock.sendto(tx_b.protect(pk_b.packet_bytes(payload, self._rate // 50)), addr_b)
        self._browser_at(when + 0.02)

    def close(self) -> None:
        """Stop the timers and close the socket."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        super().close()


def main(argv: list[str]) -> int:
    """The relay child: ``--chain C --complexity N --bitrate B --sink PORT --keys ...``."""
    parser = argparse.ArgumentParser(prog="bare_relay")
    parser.add_argument("--chain", choices=CHAINS, required=True)
    parser.add_argument("--complexity", type=int, default=5)
    parser.add_argument("--bitrate", type=int, default=24000)
    parser.add_argument("--sink", type=int, required=True)
    parser.add_argument("--keys", required=True)
    asyncio.run(_relay(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
