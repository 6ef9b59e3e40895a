"""Where a gateway-leg packet's time goes, step by step, in context.

The stage figures of the benchmark are each measured alone in a tight loop, with warm
caches; inside the leg every stage runs after the others and costs more. This module
times the leg's public steps as the driver calls them (``time.perf_counter_ns`` around
each, minus the timer's own cost) over a run of packets and reports the mean per
packet and step. The steps are what ``MediaEndpoint`` calls: no internals are patched.
"""

from __future__ import annotations

import itertools
import statistics
import time

from sip_gateway.sdp.attributes import Direction

from .fixture import Clock, Fixture, flush
from .harness import UdpPair

__all__ = ["RECEIVE_STEPS", "SEND_STEPS", "receive_steps", "send_steps"]

SEND_STEPS = {
    "pull": "ticks_due + send_audio (queue the frame)",
    "tick": "handle_timer (tick, encode, packetize, protect)",
    "send": "datagrams_to_send + sendto",
    "rest": "next_event + get_timer",
}
RECEIVE_STEPS = {
    "recv": "recvfrom",
    "datagram": "receive_datagram (unprotect, parse, latch, jitter put)",
    "tick": "handle_timer (tick, jitter pop, decode, AudioReceived)",
    "flush": "flushes (datagrams_to_send, next_event, get_timer)",
}
_PACKETS = 20_000
_WARM_UP = 2_000


def _timer_cost() -> int:
    clock = time.perf_counter_ns
    stamps = [clock() for _ in range(20_001)]
    return int(statistics.median(b - a for a, b in itertools.pairwise(stamps)))


def send_steps(fx: Fixture) -> dict[str, float]:
    """Microseconds per packet in each step of the send path."""
    pair, clock, cost = UdpPair(), Clock(), _timer_cost()
    session = fx.session(pair.rx_address, Direction.SENDRECV, a_side=True)
    session.start(clock.epoch)
    audio, ns = fx.audio(), time.perf_counter_ns
    totals = dict.fromkeys(SEND_STEPS, 0)
    sendto = pair.tx.sendto
    try:
        for index in range(_WARM_UP + _PACKETS):
            if index % 128 == 0:
                pair.drain()
            now = clock.next()
            t0 = ns()
            for _ in range(session.ticks_due(now)):
                session.send_audio(next(audio), now)
            t1 = ns()
            session.handle_timer(now)
            t2 = ns()
            for data, address in session.datagrams_to_send():
                sendto(data, address)
            t3 = ns()
            while session.next_event() is not None:
                pass
            session.get_timer()
            t4 = ns()
            if index >= _WARM_UP:
                for key, spent in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    totals[key] += spent - cost
    finally:
        pair.close()
    return {key: spent / _PACKETS / 1000 for key, spent in totals.items()}


def receive_steps(fx: Fixture) -> dict[str, float]:
    """Microseconds per packet in each step of the (recvonly) receive path."""
    pair, clock, cost = UdpPair(), Clock(), _timer_cost()
    peer = fx.session(pair.rx_address, Direction.SENDRECV, a_side=True)
    ours = fx.session(pair.tx_address, Direction.RECVONLY, a_side=False)
    peer.start(clock.epoch)
    ours.start(clock.epoch)
    audio, ns = fx.audio(), time.perf_counter_ns
    totals = dict.fromkeys(RECEIVE_STEPS, 0)
    recvfrom, sendto = pair.rx.recvfrom, pair.rx.sendto
    try:
        for index in range(_WARM_UP + _PACKETS):
            now = clock.next()
            peer.send_audio(next(audio), now)
            peer.handle_timer(now)
            for data, address in peer.datagrams_to_send():
                pair.tx.sendto(data, address)
                t0 = ns()
                packet, source = recvfrom(2048)
                t1 = ns()
                ours.receive_datagram(packet, source, now)
                t2 = ns()
                flush(ours, sendto)
                t3 = ns()
                if index >= _WARM_UP:
                    totals["recv"] += t1 - t0 - cost
                    totals["datagram"] += t2 - t1 - cost
                    totals["flush"] += t3 - t2 - cost
            while peer.next_event() is not None:
                pass
            t0 = ns()
            ours.handle_timer(now)
            t1 = ns()
            flush(ours, sendto)
            t2 = ns()
            if index >= _WARM_UP:
                totals["tick"] += t1 - t0 - cost
                totals["flush"] += t2 - t1 - cost
            if index % 128 == 0:
                pair.drain(pair.tx)
    finally:
        pair.close()
    return {key: spent / _PACKETS / 1000 for key, spent in totals.items()}
