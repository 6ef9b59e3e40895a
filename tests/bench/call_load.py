"""The load generator's side of the call benchmark: browsers at the packet level.

Theory of operation: N :class:`tests.webrtc_client.WebRtcClient` (SIP over WSS with
digest, ICE + DTLS-SRTP via aiortc) in this process, each with one call, replaying
pre-encoded 20 ms Opus packets or G.711 payloads from one 20 ms clock and only counting
and timestamping what comes back. Around the client, a few class-level stamps (this
process only, ``time.perf_counter()``, the clock the carrier simulator stamps with too):

* every INVITE the browser sends (the first one carries the offer, the second the
  credentials after the 407), keyed by the dialled number;
* the moment each call's DTLS is connected.

From them :func:`setup_stats` gives the bridge's INVITE-in to trunk-INVITE-out time
(authenticated INVITE sent -> the simulator routing the trunk INVITE; the loopback hop
and the simulator's parse are in it) and the browser's offer to DTLS connected time.
:func:`client_stats` gives lost and late frames at the browser; :func:`carrier_stats` what
the simulator had to conceal. :func:`install_sim_probe` stamps every RTP packet the
simulator sends, for the latency pass.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sip_gateway.aio.rtp import MediaSocket
from sip_gateway.carrier_sim import CarrierSimulator
from sip_gateway.sip.message import SipRequest
from sip_gateway.tls import TlsClientConfig, client_context
from tests.webrtc_audio import opus_packets, pcmu_payloads, speech_8k, speech_48k
from tests.webrtc_client import ClientCall, ClientConfig, PacketSource, WebRtcClient

__all__ = [
    "INVITES",
    "SIM_SENT",
    "carrier_stats",
    "client_stats",
    "dial_all",
    "install_stamps",
    "open_clients",
    "percentiles",
    "play_all",
    "setup_stats",
]

LATE_S = 0.040
INVITES: dict[str, list[float]] = {}
"""perf_counter() of each INVITE the browsers sent, by dialled number (first: the offer)."""
SIM_SENT: dict[tuple[int, int], float] = {}
"""perf_counter() of each RTP packet the carrier simulator sent, by (SSRC, sequence)."""
_installed: list[bool] = []


def percentiles(values: list[float]) -> dict[str, float | int]:
    """n, p50, p99 and max of seconds, in milliseconds."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(values), "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": pick(1.0)}


def _stamp_sim(data: bytes) -> None:
    if len(data) >= 12 and not 192 <= data[1] <= 223:
        SIM_SENT[(int.from_bytes(data[8:12]), int.from_bytes(data[2:4]))] = time.perf_counter()


def install_stamps() -> None:
    """Stamp the browsers' INVITEs and the simulator's RTP (see the docstring); once."""
    if _installed:
        return
    _installed.append(True)
    send_invite = ClientCall._send_invite

    def stamped_invite(self: ClientCall, request: SipRequest) -> None:
        uri = request.uri
        number = getattr(uri, "user", None) or ""
        INVITES.setdefault(number, []).append(time.perf_counter())
        send_invite(self, request)

    ClientCall._send_invite = stamped_invite  # type: ignore[method-assign]
    original_send, original_init = MediaSocket.send, MediaSocket.__init__

    def send(self: MediaSocket, data: bytes, address: Any, *, rtcp: bool = False) -> None:
        if not rtcp:
            _stamp_sim(data)
        original_send(self, data, address, rtcp=rtcp)

    def init(self: MediaSocket, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        sendto = self.send_rtp

        def send_rtp(data: bytes, address: Any) -> None:
            _stamp_sim(data)
            sendto(data, address)

        self.send_rtp = send_rtp

    MediaSocket.send = send  # type: ignore[method-assign]
    MediaSocket.__init__ = init  # type: ignore[method-assign]


def log(text: str) -> None:
    """One progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def open_clients(
    url: str, ca: Path, codecs: tuple[str, ...], count: int, user: Callable[[int], str]
) -> list[WebRtcClient]:
    """``count`` connected and registered clients (8 at a time), user ``user(i)`` each."""
    from .bench_bridge import PASSWORD

    ssl = client_context(TlsClientConfig(ca_file=ca))
    clients = [
        WebRtcClient(
            ClientConfig(
                url=url,
                ssl=ssl,
                user=user(i),
                password=PASSWORD,
                codecs=codecs,
                keep_payloads=False,
                connect_timeout=60.0,
            )
        )
        for i in range(count)
    ]
    gate = asyncio.Semaphore(8)

    async def up(client: WebRtcClient) -> None:
        async with gate:
            await client.connect()
            response = await client.register()
            if response.status_code != 200:
                raise RuntimeError(f"REGISTER got {response.status_code}")

    await asyncio.gather(*(up(c) for c in clients))
    return clients


async def dial_all(
    clients: list[WebRtcClient], number: Callable[[int], str], parallel: int = 5
) -> tuple[list[ClientCall], dict[str, float]]:
    """Dial one call per client (``parallel`` set-ups at a time) until its DTLS is up.

    Returns:
        the calls, and perf_counter() of each call's DTLS connection, by number.
    """
    gate = asyncio.Semaphore(parallel)
    connected: dict[str, float] = {}
    done = [0]
    last = [time.monotonic()]

    async def dial(index: int, client: WebRtcClient) -> ClientCall:
        async with gate:
            call = await client.dial(number(index))
            call.connected.add_done_callback(
                lambda _f: connected.setdefault(number(index), time.perf_counter())
            )
            await call.wait_answered(timeout=60)
            await call.wait_media(timeout=60)
        done[0] += 1
        if time.monotonic() - last[0] >= 1.0 or done[0] == len(clients):
            last[0] = time.monotonic()
            log(f"  calls up: {done[0]}/{len(clients)}")
        return call

    calls = await asyncio.gather(*(dial(i, c) for i, c in enumerate(clients)))
    return list(calls), connected


def play_all(calls: list[ClientCall], mode: str) -> None:
    """Every call replays speech (a different part each), Opus or PCMU by ``mode``."""
    payloads = (
        opus_packets(speech_48k(6.0)) if mode == "transcode" else pcmu_payloads(speech_8k(6.0))
    )
    for index, call in enumerate(calls):
        offset = index * 7 % len(payloads)
        rotated = tuple(payloads[offset:]) + tuple(payloads[:offset])
        assert call.config is not None
        call.play(PacketSource(call.config.codec.name, rotated, keep_times=True))


def setup_stats(
    numbers: list[str], trunk: dict[str, float], connected: dict[str, float]
) -> dict[str, Any]:
    """INVITE in -> trunk INVITE out, and offer -> DTLS connected, over the calls."""
    to_trunk, to_dtls = [], []
    for number in numbers:
        sent = INVITES.get(number, [])
        if sent and number in trunk:
            to_trunk.append(trunk[number] - sent[-1])
        if sent and number in connected:
            to_dtls.append(connected[number] - sent[0])
    return {
        "invite_to_trunk_invite": percentiles(to_trunk),
        "offer_to_dtls_connected": percentiles(to_dtls),
    }


def client_stats(calls: list[ClientCall], t0: float, t1: float) -> dict[str, Any]:
    """Lost and late (> 40 ms behind the stream's best case) packets at the browsers."""
    expected = received = late = 0
    for call in calls:
        rx = call.reception
        assert call.config is not None
        rate = call.config.codec.clock_rate
        transit = []
        base_ts, previous = None, 0
        for arrival, ts in zip(rx.arrivals, rx.timestamps, strict=True):
            if not t0 <= arrival < t1:
                continue
            if base_ts is None:
                base_ts = previous = ts
            delta = (ts - previous) & 0xFFFFFFFF
            previous = ts
            base_ts += delta if delta < 0x80000000 else delta - 0x100000000
            transit.append(arrival - base_ts / rate)
        expected += round((t1 - t0) / 0.020)
        received += len(transit)
        if transit:
            best = min(transit)
            late += sum(1 for x in transit if x - best > LATE_S)
    return {
        "packets_expected": expected,
        "packets_received": received,
        "lost_pct": round(max(0, expected - received) * 100 / expected, 3) if expected else None,
        "late_pct": round(late * 100 / received, 3) if received else None,
    }


def received_packets(calls: list[ClientCall]) -> int:
    """Packets the browsers got so far (for the progress lines)."""
    return sum(call.reception.count for call in calls)


def carrier_stats(sim: CarrierSimulator) -> dict[str, Any]:
    """What the carrier simulator received, concealed and got late."""
    received = concealed = late = lost = 0
    for call in sim.calls:
        stats = call.media_stats()
        received += stats.packets_received
        concealed += stats.concealed
        late += stats.late
        lost += stats.lost
    return {
        "packets_received": received,
        "concealed_pct": round(concealed * 100 / received, 3) if received else None,
        "late_pct": round(late * 100 / received, 3) if received else None,
        "lost": lost,
    }
