"""The end-to-end measurements: bare pylibsrtp loops, the gateway leg, a stream pair.

Only public APIs of the media session are used here (no per-stage fast paths), so
these figures can be taken the same way from any version of the code.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle, islice

from sip_gateway.sdp.attributes import Direction

from .fixture import Address, Clock, Fixture, flush, send_tick
from .harness import Sample, UdpPair, measure

__all__ = ["SOCKET_BATCH", "bare_receive", "bare_send", "leg_receive", "leg_send", "stream_pair"]

SOCKET_BATCH = 128  # datagrams queued on a socket at once (well inside its buffer)


# -- (a) bare loops ----------------------------------------------------------------------


def bare_send(fx: Fixture, seconds: float, repeat: int) -> Sample:
    pair, srtp, packets = UdpPair(), fx.libsrtp(fx.key_a, True), cycle(fx.ring)

    def run(n: int) -> None:
        protect, sendto, address = srtp.protect, pair.tx.sendto, pair.rx_address
        for packet in islice(packets, n):
            sendto(protect(packet), address)

    try:
        return measure(
            run, lambda n: pair.drain(), batch=SOCKET_BATCH, seconds=seconds, repeat=repeat
        )
    finally:
        pair.close()


def bare_receive(fx: Fixture, seconds: float, repeat: int) -> Sample:
    pair, packets = UdpPair(), cycle(fx.ring)
    sender, receiver = fx.libsrtp(fx.key_a, True), fx.libsrtp(fx.key_a, False)

    def prepare(n: int) -> None:
        for packet in islice(packets, n):
            pair.tx.sendto(sender.protect(packet), pair.rx_address)

    def run(n: int) -> None:
        recvfrom, unprotect = pair.rx.recvfrom, receiver.unprotect
        for _ in range(n):
            data, _source = recvfrom(2048)
            unprotect(data)

    try:
        return measure(run, prepare, batch=SOCKET_BATCH, seconds=seconds, repeat=repeat)
    finally:
        pair.close()


# -- (c) the gateway leg -----------------------------------------------------------------


def leg_send(fx: Fixture, seconds: float, repeat: int) -> Sample:
    pair, clock = UdpPair(), Clock()
    session = fx.session(pair.rx_address, Direction.SENDRECV, a_side=True)
    session.start(clock.epoch)
    audio = fx.audio()

    def run(n: int) -> None:
        sendto, nxt = pair.tx.sendto, clock.next
        for _ in range(n):
            send_tick(session, nxt(), audio, sendto)

    try:
        return measure(
            run, lambda n: pair.drain(), batch=SOCKET_BATCH, seconds=seconds, repeat=repeat
        )
    finally:
        pair.close()


def leg_receive(fx: Fixture, seconds: float, repeat: int) -> Sample:
    """The receiving session is recvonly, so its ticks only play out (no send cost)."""
    pair, clock = UdpPair(), Clock()
    peer = fx.session(pair.rx_address, Direction.SENDRECV, a_side=True)
    ours = fx.session(pair.tx_address, Direction.RECVONLY, a_side=False)
    peer.start(clock.epoch)
    ours.start(clock.epoch)
    audio = fx.audio()
    schedule: list[tuple[float, int]] = []

    def prepare(n: int) -> None:
        pair.drain(pair.tx)  # our RTCP to the peer
        schedule.clear()
        for _ in range(n):
            now = clock.next()
            peer.send_audio(next(audio), now)
            peer.handle_timer(now)
            datagrams = peer.datagrams_to_send()
            for data, address in datagrams:
                pair.tx.sendto(data, address)
            while peer.next_event() is not None:
                pass
            schedule.append((now, len(datagrams)))

    def run(n: int) -> None:
        recvfrom, sendto = pair.rx.recvfrom, pair.rx.sendto
        receive, handle_timer = ours.receive_datagram, ours.handle_timer
        for now, count in schedule:
            for _ in range(count):
                data, source = recvfrom(2048)
                receive(data, source, now)
                flush(ours, sendto)
            handle_timer(now)
            flush(ours, sendto)

    try:
        sample = measure(run, prepare, batch=SOCKET_BATCH, seconds=seconds, repeat=repeat)
    finally:
        pair.close()
    stats = ours.stats()
    if stats.packets_received == 0 or stats.concealed > stats.packets_received // 100:
        raise RuntimeError(f"receive path did not play the stream out: {stats}")
    return sample


# -- (d) a stream pair -------------------------------------------------------------------


def stream_pair(fx: Fixture, seconds: float, repeat: int) -> Sample:
    a_socks, clock = UdpPair(), Clock()
    a = fx.session(a_socks.rx_address, Direction.SENDRECV, a_side=True)
    b = fx.session(a_socks.tx_address, Direction.SENDRECV, a_side=False)
    a.start(clock.epoch)
    b.start(clock.epoch)
    # a sends from tx to rx (b's socket), b from rx to tx; pending: datagrams to read
    pending = [0, 0]
    sides = (
        (a, a_socks.tx, fx.audio(), _counting(a_socks.tx.sendto, pending, 1)),
        (b, a_socks.rx, fx.audio(), _counting(a_socks.rx.sendto, pending, 0)),
    )

    def run(n: int) -> None:
        for _ in range(n):
            now = clock.next()
            for session, _sock, audio, sendto in sides:
                send_tick(session, now, audio, sendto)
            for index, (session, sock, _audio, sendto) in enumerate(sides):
                recvfrom, count = sock.recvfrom, pending[index]
                pending[index] = 0
                for _ in range(count):
                    data, source = recvfrom(2048)
                    session.receive_datagram(data, source, now)
                    flush(session, sendto)

    try:
        sample = measure(run, batch=64, seconds=seconds, repeat=repeat, ops_per_call=2)
    finally:
        a_socks.close()
    for session in (a, b):
        stats = session.stats()
        if stats.packets_received < stats.packets_sent // 2 or stats.dropped:
            raise RuntimeError(f"stream pair lost its packets: {stats}")
    return sample


def _counting(
    sendto: Callable[[bytes, Address], object], pending: list[int], index: int
) -> Callable[[bytes, Address], object]:
    def send(data: bytes, address: Address) -> object:
        pending[index] += 1
        return sendto(data, address)

    return send
