"""Hostile connections against a live bridge, each while a call is up and carrying audio.

Each test starts a bridge through the ``bridge`` fixture of ``test_calls`` with small
limits, places a browser call (Python browser over WSS from 127.0.0.1, the embedded carrier
simulator echoing its audio), then attacks from other loopback addresses over raw sockets
and ``ssl``: an oversize message, a slow-loris trickle, half-open TLS handshakes, thousands
of idle connections, too many WebSocket sessions. Afterwards the call must still be
receiving audio, hang up cleanly, and a new REGISTER (and where it applies a new call) must
succeed. The measured figures (time to drop a slow-loris, connections held at the cap) are
printed (``pytest -s``) and asserted within bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from sip_gateway.tls import TlsClientConfig, client_context
from tests.bridge import test_calls as _call_fixtures
from tests.bridge.test_calls import DID, NUMBER, Harness, _answered_call, _hang_up
from tests.webrtc_audio import opus_packets, pcmu_payloads, speech_8k, speech_48k
from tests.webrtc_client import ClientCall, PacketSource

Factory = Callable[..., Awaitable[Harness]]
bridge = _call_fixtures.bridge
pki = _call_fixtures.pki

pytestmark = pytest.mark.timeout(60)


def _metric(harness: Harness, name: str, label: str = "") -> float:
    text = harness.running.ops.metrics.exposition().decode()
    for line in text.splitlines():
        if line.startswith(name) and label in line and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {label} not in /metrics")


async def _call_with_audio(harness: Harness) -> ClientCall:
    client = await harness.client()
    call = await _answered_call(client)
    assert call.config is not None
    if call.config.codec.name == "opus":
        call.play(PacketSource("opus", opus_packets(speech_48k(1.0))))
    else:
        call.play(PacketSource(call.config.codec.name, pcmu_payloads(speech_8k(1.0))))
    await _audio_flows(call)
    return call


async def _audio_flows(call: ClientCall, seconds: float = 0.5) -> None:
    """Packets keep arriving at the browser: a quarter of the 20 ms packets in ``seconds``."""
    before = call.reception.count
    await asyncio.sleep(seconds)
    assert call.reception.count - before >= seconds / 0.02 / 4


async def _finish(harness: Harness, call: ClientCall) -> None:
    """The call still carries audio and hangs up cleanly; a new browser registers."""
    await _audio_flows(call)
    await _hang_up(harness, call)
    await harness.client()  # asserts 200 to REGISTER


def _client_ctx(harness: Harness) -> ssl.SSLContext:
    return client_context(TlsClientConfig(ca_file=harness.ca))


async def _tls(harness: Harness, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1",
        harness.running.sip_port,
        ssl=_client_ctx(harness),
        local_addr=(source, 0),
        server_hostname="localhost",
    )


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Everything the bridge sends until it closes, and how long that took."""
    start = time.monotonic()
    data = b""
    async with asyncio.timeout(limit):
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := await reader.read(65536):
                data += chunk
    return data, time.monotonic() - start


def _invite(source: str, size: int) -> bytes:
    filler = "".join(f"X-Pad-{i}: {'a' * 90}\r\n" for i in range(size // 100))
    return (
        f"INVITE sip:{NUMBER}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {source}:5061;branch=z9hG4bK-oversize\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:y@example.com>\r\n"
        "Call-ID: oversize@example.com\r\nCSeq: 1 INVITE\r\n"
        f"{filler}Content-Length: 0\r\n\r\n"
    ).encode()


async def test_oversize_messages_get_513_and_close_on_tls_and_wss(bridge: Factory) -> None:
    harness = await bridge(sip={"max_message_size": 4096})
    call = await _call_with_audio(harness)
    reader, writer = await _tls(harness, "127.0.0.2")
    writer.write(_invite("127.0.0.2", 20000))
    data, took = await _closed_after(reader, 5.0)
    writer.close()
    assert data.startswith(b"SIP/2.0 513 "), data[:80]
    url = f"wss://127.0.0.1:{harness.running.https_port}/sip"
    connector = aiohttp.TCPConnector(ssl=_client_ctx(harness), local_addr=("127.0.0.3", 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(url, protocols=("sip",)) as ws,
    ):
        await ws.send_str(_invite("127.0.0.3", 6000).decode())  # over max, under 2 x max
        answer = await ws.receive(timeout=5)
        assert str(answer.data).startswith("SIP/2.0 513 ")
        await ws.send_str(_invite("127.0.0.3", 20000).decode())  # aiohttp's own frame limit
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert _metric(harness, "pstn_bridge_connections_closed", 'reason="oversize"') == 1
    print(f"\noversize: SIP-TLS 513 and close in {took * 1000:.0f} ms")
    await _finish(harness, call)


async def test_slow_loris_is_dropped_at_the_message_timeout(bridge: Factory) -> None:
    harness = await bridge(sip={"message_timeout": 1.0})
    call = await _call_with_audio(harness)
    reader, writer = await _tls(harness, "127.0.0.2")
    message = _invite("127.0.0.2", 0)
    start = time.monotonic()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        for byte in message[:40]:  # one byte per 100 ms: never a whole message in time
            if reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
    await _closed_after(reader, 5.0)
    trickle = time.monotonic() - start
    writer.close()
    # a connection that says nothing after the handshake, on both listeners
    _, writer2 = silent = await _tls(harness, "127.0.0.3")
    _, silent_took = await _closed_after(silent[0], 5.0)
    writer2.close()
    url = f"wss://127.0.0.1:{harness.running.https_port}/sip"
    connector = aiohttp.TCPConnector(ssl=_client_ctx(harness), local_addr=("127.0.0.4", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        ws_start = time.monotonic()
        async with session.ws_connect(url, protocols=("sip",)) as ws:
            closing = await ws.receive(timeout=5)
        ws_took = time.monotonic() - ws_start
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert 0.9 <= trickle <= 3.0
    assert 0.9 <= silent_took <= 3.0
    assert 0.9 <= ws_took <= 3.0
    wss = harness.running.ops.sources.websocket
    async with asyncio.timeout(2):  # the server's handler ends just after the close frame
        while not wss.closures:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.02)
    closed = 'pstn_bridge_connections_closed_total{listener="%s",reason="message-timeout"}'
    assert _metric(harness, closed % "sip") == 2
    assert _metric(harness, closed % "wss") == 1
    print(
        f"\nslow-loris dropped after {trickle:.2f} s (message_timeout 1.0); silent SIP-TLS "
        f"{silent_took:.2f} s, silent WSS {ws_took:.2f} s"
    )
    await _finish(harness, call)


async def _half_open(port: int, source: str, partial: bytes) -> float:
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    if partial:
        writer.write(partial)
    await _closed_after(reader, 10.0)
    writer.close()
    return time.monotonic() - start


async def test_half_open_tls_handshakes_are_dropped_at_the_handshake_timeout(
    bridge: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    harness = await bridge(sip={"handshake_timeout": 1.0, "max_connections_per_source": 300})
    call = await _call_with_audio(harness)
    client_hello_start = bytes.fromhex("16030100f4010000f00303") + b"\x00" * 8
    port = harness.running.sip_port
    times = await asyncio.gather(
        *(_half_open(port, "127.0.0.2", client_hello_start if i % 2 else b"") for i in range(200))
    )
    await _audio_flows(call)
    assert min(times) >= 0.9
    assert max(times) <= 4.0
    assert _metric(harness, "pstn_bridge_tls_handshake_refusals", 'kind="timeout"') == 200
    lines = [r for r in caplog.records if "TLS handshake with 127.0.0.2" in r.getMessage()]
    assert len(lines) == 1  # one line per source and kind every 10 s, not 200
    print(f"\n200 half-open handshakes dropped after {min(times):.2f}-{max(times):.2f} s")
    await _finish(harness, call)


async def _hold(port: int, source: str) -> asyncio.StreamWriter | None:
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return writer
    return None


async def test_thousands_of_idle_connections_are_capped_per_source_and_in_total(
    bridge: Factory,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    harness = await bridge(
        sip={"handshake_timeout": 20.0, "max_connections": 500, "max_connections_per_source": 100}
    )
    call = await _call_with_audio(harness)
    port = harness.running.sip_port
    server = harness.running.sip_server
    held: list[asyncio.StreamWriter] = []

    def seen(server: Any) -> int:
        return int(server.limits.total + server.limits.refusals.total())

    try:
        start = time.monotonic()
        for batch in range(10):  # 10 sources x 200 connections, in batches of 200
            source = f"127.0.1.{batch + 1}"
            opened = await asyncio.gather(*(_hold(port, source) for _ in range(200)))
            held.extend(w for w in opened if w is not None)
            async with asyncio.timeout(10):  # the listener has seen this batch
                while seen(server) < 200 * (batch + 1):  # noqa: ASYNC110 - bounded poll
                    await asyncio.sleep(0.02)
        took = time.monotonic() - start
        await _audio_flows(call)
        assert server.limits.total == 500
        # sources 1-4: 100 held, 100 over their own cap; source 5 fills the total cap
        assert server.limits.refusals["per-source"] == 400
        assert server.limits.refusals["total"] == 1100
        assert _metric(harness, "pstn_bridge_connections", 'listener="sip"') == 500
        assert _metric(harness, "pstn_bridge_connections_refused", 'limit="total"') == 1100
        print(
            f"\n2000 idle connections from 10 sources in {took:.2f} s: "
            f"{server.limits.total} held, {server.limits.refusals.total()} refused"
        )
    finally:
        for writer in held:
            writer.transport.abort()
    async with asyncio.timeout(5):
        while harness.running.sip_server.limits.total:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.05)
    await _finish(harness, call)
    # the listener serves the carrier again: an inbound call reaches the browser
    assert await _answered_inbound(harness)


async def _answered_inbound(harness: Harness) -> bool:
    client = harness.clients[-1]
    sim = harness.running.carrier_sim
    assert sim is not None
    placing = asyncio.ensure_future(sim.call(DID, "127.0.0.1", harness.running.sip_port))
    async with asyncio.timeout(10):
        incoming = await client.next_incoming()
        await incoming.answer()
        sim_call = await placing
    assert await incoming.hangup() == 200
    async with asyncio.timeout(5):
        await sim_call.wait_ended()
    await harness.idle()
    return True


async def test_websocket_sessions_are_capped_per_source_with_503(bridge: Factory) -> None:
    harness = await bridge(sections={"http": {"listen_port": 0, "max_websockets_per_source": 3}})
    call = await _call_with_audio(harness)
    url = f"wss://127.0.0.1:{harness.running.https_port}/sip"
    connector = aiohttp.TCPConnector(
        ssl=_client_ctx(harness), local_addr=("127.0.0.2", 0), limit=0, force_close=True
    )
    statuses: list[int] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets: list[Any] = []
        try:
            for _ in range(5):
                try:
                    sockets.append(await session.ws_connect(url, protocols=("sip",)))
                    statuses.append(101)
                except aiohttp.WSServerHandshakeError as exc:
                    statuses.append(exc.status)
            await _audio_flows(call)
            assert _metric(harness, "pstn_bridge_connections", 'listener="wss"') == 4
        finally:
            for ws in sockets:
                await ws.close()
    assert statuses == [101, 101, 101, 503, 503]
    assert (
        _metric(harness, 'pstn_bridge_connections_refused_total{limit="per-source",listener="wss"}')
        == 2
    )
    await _finish(harness, call)


async def test_https_listener_drops_half_open_handshakes_and_caps_connections(
    bridge: Factory,
) -> None:
    http = {"listen_port": 0, "handshake_timeout": 1.0, "max_connections_per_source": 20}
    harness = await bridge(sections={"http": http})
    call = await _call_with_audio(harness)
    port = harness.running.https_port
    hello = bytes.fromhex("16030100f4010000f00303") + b"\x00" * 8
    times = await asyncio.gather(
        *(_half_open(port, "127.0.0.2", hello if i % 2 else b"") for i in range(100))
    )
    assert min(times) >= 0.9
    assert max(times) <= 4.0
    context = _client_ctx(harness)
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(30):  # 20 held, 10 dropped right after their handshake
            _, writer = await asyncio.open_connection(
                "127.0.0.1",
                port,
                ssl=context,
                local_addr=("127.0.0.3", 0),
                server_hostname="localhost",
            )
            held.append(writer)
        limits = harness.running.ops.sources.https_limits
        async with asyncio.timeout(5):
            while limits.refusals["per-source"] < 10:  # noqa: ASYNC110 - bounded poll
                await asyncio.sleep(0.02)
        await _audio_flows(call)
        assert limits.held("127.0.0.3") == 20
        refused = 'pstn_bridge_connections_refused_total{limit="per-source",listener="https"}'
        assert _metric(harness, refused) == 10
    finally:
        for writer in held:
            writer.transport.abort()
    print(f"\nHTTPS: 100 half-open handshakes dropped after {min(times):.2f}-{max(times):.2f} s")
    await _finish(harness, call)  # a new WSS session and REGISTER over the same listener
