"""Media benchmark of the gateway leg: SDES-SRTP G.711 through MediaSession on loopback UDP.

Run: ``python -m tests.bench.media_bench [--seconds N] [--repeat N] [--json]`` or
``make bench``. Not a test: the figures are printed, never asserted.

What it measures, in one run, on 127.0.0.1 UDP sockets (see ``harness`` for the method):

(a) the bare loops the target refers to: pylibsrtp ``protect`` + ``sendto`` per packet
    (12-byte RTP header + 160 bytes of G.711), and ``recvfrom`` + ``unprotect``;
(b) each stage of our pipeline per 20 ms frame: G.711 encode/decode, RTP
    packetize/parse, SRTP protect/unprotect through ``SrtpSession``, jitter buffer
    put+pop, DTMF receiver feed, and the bare socket and pylibsrtp calls alone;
(c) the gateway leg end to end, driven as ``MediaEndpoint`` drives it: the send path
    per packet (audio frame -> ``send_audio`` -> ``handle_timer`` -> ``datagrams_to_send``
    -> ``sendto``, events drained, ``get_timer``) and the receive path per packet
    (``recvfrom`` -> ``receive_datagram`` -> the tick's playout -> ``AudioReceived``);
(d) packets per second one core sustains for one stream pair: two sendrecv
    MediaSessions on two sockets exchanging packets as fast as the CPU allows;
(e) the ratios of (c) to (a) against the issue's 1.5x target.

The session's clock is virtual (ticks 20 ms apart, one per packet), so nothing sleeps;
RTCP reports go out on that clock as in a real call and their cost is included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from collections.abc import Callable
from itertools import cycle, islice
from typing import Any

from sip_gateway.aio.rtp import MediaSocket
from sip_gateway.media.dtmf import DtmfReceiver, pack_event
from sip_gateway.media.events import AudioReceived
from sip_gateway.media.jitter import JitterBuffer
from sip_gateway.media.rtp import RtpPacket, RtpPacketizer, parse_fields
from sip_gateway.media.srtp import SRTP_PROFILES, SrtpSession

from .breakdown import RECEIVE_STEPS, SEND_STEPS, receive_steps, send_steps
from .fixture import RTP_HEADER, SAMPLES, Clock, Fixture
from .harness import Sample, UdpPair, machine_info, measure
from .legs import (
    SOCKET_BATCH,
    bare_receive,
    bare_send,
    leg_receive,
    leg_send,
    stream_pair,
)

TARGET = 1.5

# -- (b) stages --------------------------------------------------------------------------


SEND_STAGES = ("g711_encode", "rtp_packetize", "srtp_protect", "sendto")
RECEIVE_STAGES = (
    "recvfrom",
    "srtp_unprotect",
    "rtp_parse_fields",
    "jitter_put_pop",
    "g711_decode",
    "audio_event",
)


def stages(fx: Fixture, seconds: float, repeat: int) -> dict[str, Sample]:
    """Each stage as the session calls it (and a few references), per 20 ms frame."""

    def go(run: Callable[[int], object], prepare: Callable[[int], object] | None = None) -> Sample:
        return measure(run, prepare, batch=256, seconds=seconds, repeat=repeat)

    codec, frames, payload = fx.codec, fx.audio(), fx.payload
    plain = fx.ring[7]
    pcm = codec.decode(payload)
    packetizer = RtpPacketizer(0x1234, 0, 8000, 1, 1)
    event = RTP_HEADER.pack(0x80, 101, 9, 8000, 0x1234) + pack_event(
        5, end=False, volume=10, duration=800
    )
    dtmf = DtmfReceiver(101)
    results = {
        "g711_encode": go(lambda n: [codec.encode_frame(f) for f in islice(frames, n)]),
        "rtp_packetize": go(
            lambda n: [packetizer.packet_bytes(payload, SAMPLES) for _ in range(n)]
        ),
        "rtp_parse_fields": go(lambda n: [parse_fields(plain) for _ in range(n)]),
        "jitter_put_pop": _jitter_stage(go),
        "g711_decode": go(lambda n: [codec.decode(payload) for _ in range(n)]),
        "audio_event": go(lambda n: [AudioReceived(pcm=pcm) for _ in range(n)]),
        "rtp_parse_record": go(lambda n: [RtpPacket.parse(plain) for _ in range(n)]),
        "dtmf_feed_event": go(
            lambda n: [dtmf.feed_payload(101, 8000, event[12:]) for _ in range(n)]
        ),
    }
    results |= _srtp_stages(fx, go)
    results |= _socket_stages(fx, seconds, repeat)
    return results


def _srtp_stages(fx: Fixture, go: Callable[..., Sample]) -> dict[str, Sample]:
    ours_out = SrtpSession(fx.crypto(fx.key_a, fx.key_b))
    ours_in = SrtpSession(fx.crypto(fx.key_b, fx.key_a))
    bare_out, bare_in = fx.libsrtp(fx.key_a, True), fx.libsrtp(fx.key_a, False)
    feeder = fx.libsrtp(fx.key_a, True)
    ring_ours, ring_bare, ring_feed = cycle(fx.ring), cycle(fx.ring), cycle(fx.ring)
    queue: list[bytes] = []

    def prepare(n: int) -> None:
        queue[:] = [feeder.protect(p) for p in islice(ring_feed, n)]

    results = {
        "srtp_protect": go(lambda n: [ours_out.protect(p) for p in islice(ring_ours, n)]),
        "srtp_unprotect": go(lambda n: [ours_in.unprotect(p) for p in queue], prepare),
        "bare_protect": go(lambda n: [bare_out.protect(p) for p in islice(ring_bare, n)]),
    }
    feeder, ring_feed = fx.libsrtp(fx.key_a, True), cycle(fx.ring)
    results["bare_unprotect"] = go(lambda n: [bare_in.unprotect(p) for p in queue], prepare)
    return results


def _socket_stages(fx: Fixture, seconds: float, repeat: int) -> dict[str, Sample]:
    pair = UdpPair()
    datagram = fx.ring[0] + bytes(10)  # the size of an SRTP packet with an 80-bit tag

    def send(n: int) -> None:
        sendto, address = pair.tx.sendto, pair.rx_address
        for _ in range(n):
            sendto(datagram, address)

    def fill(n: int) -> None:
        for _ in range(n):
            pair.tx.sendto(datagram, pair.rx_address)

    def receive(n: int) -> None:
        recvfrom = pair.rx.recvfrom
        for _ in range(n):
            recvfrom(2048)

    try:
        kw: dict[str, Any] = {"batch": SOCKET_BATCH, "seconds": seconds, "repeat": repeat}
        return {
            "sendto": measure(send, lambda n: pair.drain(), **kw),
            "recvfrom": measure(receive, fill, **kw),
            "media_socket_send": _media_socket_send(pair, datagram, kw),
        }
    finally:
        pair.close()


def _media_socket_send(pair: UdpPair, datagram: bytes, kw: dict[str, Any]) -> Sample:
    """What MediaEndpoint pays per datagram on asyncio: MediaSocket.send -> transport.sendto."""
    loop = asyncio.new_event_loop()
    try:
        media = loop.run_until_complete(MediaSocket.open("127.0.0.1"))

        def send(n: int) -> None:
            send_one, address = media.send, pair.rx_address
            for _ in range(n):
                send_one(datagram, address)

        try:
            return measure(send, lambda n: pair.drain(), **kw)
        finally:
            media.close()
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()


def _jitter_stage(go: Callable[..., Sample]) -> Sample:
    """put_frame on arrival and pop_frame at the tick, as the session calls them."""
    jitter, clock = JitterBuffer(8000, 20), Clock()
    queue: list[tuple[int, int, tuple[int, bytes], float]] = []
    frame = (0, b"\xff" * SAMPLES)

    def prepare(n: int) -> None:
        start = clock.ticks
        queue[:] = [
            ((start + i) & 0xFFFF, (start + i) * SAMPLES & 0xFFFFFFFF, frame, clock.next())
            for i in range(n)
        ]

    def run(n: int) -> None:
        put, pop = jitter.put_frame, jitter.pop_frame
        for sequence, timestamp, item, now in queue:
            put(sequence, timestamp, item, now)
            pop(now)

    return go(run, prepare)


# -- report ------------------------------------------------------------------------------


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    fx = Fixture(args.suite)
    s, r = args.seconds, args.repeat
    bare = {"send": bare_send(fx, s, r), "receive": bare_receive(fx, s, r)}
    stage = stages(fx, s / 2, r)
    leg = {"send": leg_send(fx, s, r), "receive": leg_receive(fx, s, r)}
    pair = stream_pair(fx, s, r)
    steps = {"send": send_steps(fx), "receive": receive_steps(fx)}
    return {"bare": bare, "stages": stage, "leg": leg, "pair": pair, "steps": steps}


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    bare, leg = results["bare"], results["leg"]
    both_bare = (bare["send"].wall_us + bare["receive"].wall_us, 0.0)
    out: dict[str, dict[str, float]] = {}
    for name, ours, base in (
        ("send", leg["send"], bare["send"]),
        ("receive", leg["receive"], bare["receive"]),
    ):
        out[name] = {"wall": ours.wall_us / base.wall_us, "cpu": ours.cpu_us / base.cpu_us}
    out["leg"] = {
        "wall": (leg["send"].wall_us + leg["receive"].wall_us) / both_bare[0],
        "cpu": (leg["send"].cpu_us + leg["receive"].cpu_us)
        / (bare["send"].cpu_us + bare["receive"].cpu_us),
    }
    return out


STAGE_LABELS = {
    "g711_encode": "G.711 encode (G711Codec.encode_frame)",
    "rtp_packetize": "RTP packetize (RtpPacketizer.packet_bytes)",
    "srtp_protect": "SRTP protect (SrtpSession.protect)",
    "sendto": "socket sendto (182 B)",
    "recvfrom": "socket recvfrom (182 B)",
    "srtp_unprotect": "SRTP unprotect (SrtpSession.unprotect)",
    "rtp_parse_fields": "RTP parse (parse_fields)",
    "jitter_put_pop": "jitter buffer put_frame + pop_frame",
    "g711_decode": "G.711 decode (G711Codec.decode)",
    "audio_event": "AudioReceived event (frozen dataclass)",
    "media_socket_send": "MediaSocket.send (asyncio transport)",
    "bare_protect": "pylibsrtp protect alone",
    "bare_unprotect": "pylibsrtp unprotect alone",
    "rtp_parse_record": "RtpPacket.parse (the record, not on the path)",
    "dtmf_feed_event": "DTMF feed_payload (event packet, during digits)",
}


def _row(label: str, sample: Sample) -> str:
    return f"  {label:<52} {sample.wall_us:8.2f} {sample.cpu_us:8.2f} {sample.spread * 100:6.1f}%"


def report(results: dict[str, Any], args: argparse.Namespace, info: dict[str, str]) -> str:
    head = f"  {'':<52} {'wall us':>8} {'cpu us':>8} {'spread':>7}"
    lines = [
        "pstn-bridge media benchmark (gateway leg: SDES-SRTP G.711)",
        f"command: {shlex.join(sys.orig_argv)}",
        f"machine: {info['cpu']}, nproc {info['nproc']}, {info['python']}, {info['platform']}",
        f"libraries: pylibsrtp {info['pylibsrtp']}, numpy {info['numpy']}",
        f"method: 127.0.0.1 UDP, {args.suite}, PCMU 20 ms (12 + 160 B RTP); warm-up, then "
        f"median of {args.repeat} repetitions of ~{args.seconds:g} s; gc on",
        "",
        "(a) bare loops, per packet" + head[28:],
        _row("pylibsrtp protect + sendto", results["bare"]["send"]),
        _row("recvfrom + pylibsrtp unprotect", results["bare"]["receive"]),
        "(b) pipeline stages, per 20 ms frame" + head[38:],
    ]
    stage = results["stages"]
    groups = (
        ("send path", SEND_STAGES),
        ("receive path", RECEIVE_STAGES),
        ("reference", tuple(k for k in stage if k not in SEND_STAGES + RECEIVE_STAGES)),
    )
    for title, names in groups:
        lines.append(f"  {title}:")
        lines += [_row("  " + STAGE_LABELS[k], stage[k]) for k in names]
    lines.append("(c) gateway leg (MediaSession), per packet" + head[44:])
    for key, label, names, steps in (
        ("send", "send: frame -> handle_timer -> protect -> sendto", SEND_STAGES, SEND_STEPS),
        (
            "receive",
            "receive: recvfrom -> receive_datagram -> playout",
            RECEIVE_STAGES,
            RECEIVE_STEPS,
        ),
    ):
        leg: Sample = results["leg"][key]
        total = sum(stage[k].wall_us for k in names)
        lines.append(_row(label, leg))
        lines.append(
            f"    = stages above {total:.2f} us + session/driver glue {leg.wall_us - total:.2f} us;"
            " in context, per step (mean, timer cost removed):"
        )
        lines += [f"      {results['steps'][key][k]:6.2f} us  {v}" for k, v in steps.items()]
    pair: Sample = results["pair"]
    lines += [
        "(d) one core, one SDES-SRTP G.711 stream pair (two sessions, both directions)",
        f"  {pair.per_second:,.0f} packets/s (each sent by one session, received by the other)"
        f" = {pair.wall_us:.2f} us wall, {pair.cpu_us:.2f} us CPU per packet",
        f"  = {pair.per_second / 50:,.0f} legs per core at 50 packets/s each way;"
        f" {pair.cpu_us * 50 / 1000:.2f} ms CPU per leg-second",
        f"(e) ratios vs the bare loops (target <= {TARGET}x)",
    ]
    for name, label in (
        ("send", "send path / (protect + sendto)"),
        ("receive", "receive path / (recvfrom + unprotect)"),
        ("leg", "leg (send + receive) / bare (send + receive)"),
    ):
        ratio = results["ratios"][name]
        verdict = "PASS" if ratio["wall"] <= TARGET else "MISS"
        lines.append(
            f"  {label:<52} {ratio['wall']:7.2f}x {ratio['cpu']:7.2f}x  {verdict}"
            f" (wall; cpu second)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.media_bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="per repetition (0.5)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions, median kept (5)")
    parser.add_argument("--suite", default="AES_CM_128_HMAC_SHA1_80", choices=list(SRTP_PROFILES))
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    info = machine_info()
    results = run_all(args)
    results["ratios"] = ratios(results)
    if args.json:
        print(json.dumps(_jsonable(results, args, info), indent=2))
    else:
        print(report(results, args, info))
    return 0


def _jsonable(results: dict[str, Any], args: argparse.Namespace, info: dict[str, str]) -> Any:
    def conv(value: Any) -> Any:
        if isinstance(value, Sample):
            return value.as_dict()
        if isinstance(value, dict):
            return {k: conv(v) for k, v in value.items()}
        return value

    return {
        "command": shlex.join(sys.orig_argv),
        "machine": info,
        "suite": args.suite,
        "seconds": args.seconds,
        "repeat": args.repeat,
        "target": TARGET,
        **conv(results),
        "pair_packets_per_second": results["pair"].per_second,
    }


if __name__ == "__main__":
    sys.exit(main())
