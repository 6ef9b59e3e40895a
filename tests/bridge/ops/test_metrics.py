"""``/metrics`` of a real running bridge: a call, its legs by suite and TLS version, forged
SRTP counted as authentication failures, a carrier packet captured off loopback and sent
again counted as replays, a refused TLS handshake, a blocked number counted
by reason, the trunk; and the sans-IO parts of the ops API (rate limiter, token check, query
parsing) on their own."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest
from multidict import MultiDict
from prometheus_client.parser import text_string_to_metric_families

from bridge.ops.access import BearerCheck, Denial, RateLimiter
from bridge.ops.api import QueryError, parse_calls_query
from bridge.ops.metrics import leg_keys
from tests import mosquitto as _broker_fixtures
from tests.bridge.ops.conftest import OpsHarness, trunk_up
from tests.bridge.test_calls import NUMBER
from tests.mosquitto import Mosquitto
from tests.webrtc_client import DialFailedError

mosquitto = _broker_fixtures.mosquitto
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(harness: OpsHarness) -> Samples:
    status, text, response = await harness.ops.get("/metrics")
    assert status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _forge_srtp(port: int, count: int) -> None:
    """RTP-shaped datagrams with random payload and tag: no key can authenticate them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for seq in range(count):
            header = bytes([0x80, 0]) + (40000 + seq).to_bytes(2, "big") + os.urandom(8)
            sock.sendto(header + os.urandom(170), ("127.0.0.1", port))


async def _capture_srtp(port: int) -> bytes:
    """One UDP payload sent to ``port`` on loopback, read off the wire (as tcpdump would)."""
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sniffer.bind(("lo", 0))
    sniffer.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            while True:
                frame = await loop.sock_recv(sniffer, 65535)
                ip = frame[14:]  # loopback frames carry an Ethernet header of zeros
                if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
                    continue
                udp = ip[(ip[0] & 0x0F) * 4 :]
                if int.from_bytes(udp[2:4], "big") == port and len(udp) > 20:
                    return udp[8:]
    finally:
        sniffer.close()


def _srtp_drops(samples: Samples, reason: str) -> float | None:
    return _value(samples, "pstn_bridge_srtp_dropped_packets_total", leg="gateway", reason=reason)


async def _plain_tcp_hello(port: int) -> None:
    """Not a TLS ClientHello: the SIP-TLS listener refuses the handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    await writer.drain()
    await reader.read()  # closed by the bridge
    writer.close()
    await writer.wait_closed()


async def test_metrics_count_calls_legs_refusals_and_srtp_failures(ops_bridge: Any) -> None:
    harness: OpsHarness = await ops_bridge()
    await trunk_up(harness)
    before = await _scrape(harness)
    assert _value(before, "pstn_bridge_active_calls") == 0
    assert _value(before, "pstn_bridge_trunk_up", trunk="sim") == 1
    assert _value(before, "pstn_bridge_trunk_status", trunk="sim", status="up") == 1
    assert (
        _value(
            before, "pstn_bridge_srtp_dropped_packets_total", leg="gateway", reason="auth_failed"
        )
        == 0
    )

    client = await harness.client()
    call = await client.dial(NUMBER, codecs=("PCMU",))
    await call.wait_answered()
    await call.wait_media()
    (bridged,) = harness.running.orchestrator.calls.values()
    gateway_port = bridged.media.gateway_port.local_address[1]
    genuine = await _capture_srtp(gateway_port)  # a carrier packet the bridge took
    _forge_srtp(gateway_port, 5)
    await asyncio.sleep(0.05)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        for _ in range(3):
            attacker.sendto(genuine, ("127.0.0.1", gateway_port))
    async with asyncio.timeout(5):  # the datagrams are handled as the loop gets to them
        while _srtp_drops(during := await _scrape(harness), "replayed") != 3:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.05)
    assert _value(during, "pstn_bridge_active_calls") == 1
    forged = _value(
        during, "pstn_bridge_srtp_dropped_packets_total", leg="gateway", reason="auth_failed"
    )
    assert forged == 5  # read live from the call's gateway leg
    assert _srtp_drops(during, "replayed") == 3
    record = bridged.record.as_dict()
    assert await call.hangup() == 200
    await harness.idle()

    with pytest.raises(DialFailedError):
        blocked = await client.dial("+19005550100")
        await blocked.wait_answered()
    await _plain_tcp_hello(harness.running.sip_port)
    after = await _scrape(harness)
    assert _value(after, "pstn_bridge_active_calls") == 0
    assert _value(after, "pstn_bridge_calls_ended_total", reason="caller-hangup") == 1
    assert _value(after, "pstn_bridge_calls_ended_total", reason="policy-refused") == 1
    # the finished call's counters are kept, not dropped nor counted twice
    assert _srtp_drops(after, "auth_failed") == 5
    assert _srtp_drops(after, "replayed") == 3
    legs = {leg["leg"]: leg for leg in record["legs"]}
    gateway, webrtc = legs["gateway"], legs["webrtc"]
    assert (
        _value(
            after,
            "pstn_bridge_call_legs_total",
            leg="gateway",
            protocol="SRTP",
            suite=gateway["media"]["crypto_suite"],
            tls_version=gateway["signaling"]["tls_version"],
            encrypted="true",
        )
        == 1
    )
    assert (
        _value(
            after,
            "pstn_bridge_call_legs_total",
            leg="webrtc",
            protocol="DTLS-SRTP",
            suite=webrtc["media"]["srtp_profile"],
            tls_version=webrtc["signaling"]["tls_version"],
            encrypted="true",
        )
        == 1
    )
    pstn = {
        "leg": "pstn",
        "protocol": "PSTN",
        "suite": "none",
        "tls_version": "none",
        "encrypted": "none",
    }
    assert _value(after, "pstn_bridge_call_legs_total", **pstn) == 1
    assert not any(  # the refused attempt claims no encrypted leg
        name == "pstn_bridge_call_legs_total" and ("encrypted", "true") in labels and value > 1
        for (name, labels), value in after.items()
    )
    assert _value(after, "pstn_bridge_policy_refusals_total", reason="destination-blocked") == 1
    assert _value(after, "pstn_bridge_attempts_refused_total", reason="destination-blocked") == 1
    assert (
        _value(after, "pstn_bridge_tls_handshake_refusals_total", listener="sip", kind="not-tls")
        == 1
    )
    assert _value(after, "pstn_bridge_ops_stream_clients") == 0
    assert _value(after, "pstn_bridge_media_frames_total", leg="gateway", kind="lost") is not None
    assert _value(after, "pstn_bridge_store_state", state="ok") == 1
    assert _value(after, "pstn_bridge_event_queue_capacity", sink="store") == 1000
    assert _value(after, "pstn_bridge_event_drops_total", sink="store") == 0
    assert _value(after, "pstn_bridge_auth_failures_total") == 0  # the client answered challenges
    for name, _labels in after:
        assert name.startswith("pstn_bridge_"), name  # its own registry: no process globals


async def test_broker_state_in_readyz_and_metrics(ops_bridge: Any, mosquitto: Mosquitto) -> None:
    harness: OpsHarness = await ops_bridge(
        events={"broker_host": "127.0.0.1", "broker_port": mosquitto.port, "ca_file": mosquitto.ca}
    )
    await trunk_up(harness)
    body = await _until_broker(harness, connected=True)
    assert body["broker"]["queue_capacity"] == 1000 and body["broker"]["dropped"] == 0
    samples = await _scrape(harness)
    assert _value(samples, "pstn_bridge_mqtt_connected") == 1
    assert _value(samples, "pstn_bridge_event_queue_capacity", sink="mqtt") == 1000
    assert (_value(samples, "pstn_bridge_mqtt_published_total") or 0) >= 1  # the online status
    mosquitto.stop()
    body = await _until_broker(harness, connected=False)
    assert body["ready"] is True  # events still go to the store: a broker outage is not fatal
    assert _value(await _scrape(harness), "pstn_bridge_mqtt_connected") == 0


async def _until_broker(harness: OpsHarness, *, connected: bool) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            status, body, _ = await harness.ops.get("/readyz", headers={})
            if body["broker"] is not None and body["broker"]["connected"] is connected:
                assert status == 200
                return dict(body)
            await asyncio.sleep(0.05)


# -- the sans-IO parts -----------------------------------------------------------------------


def test_rate_limiter_refills_and_keeps_memory_bounded() -> None:
    limiter = RateLimiter(2.0, 3, max_keys=100)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 0.0) == pytest.approx(0.5)
    assert limiter.take("a", 0.5) == 0.0  # one token back after 1/rate seconds
    for index in range(10_000):
        limiter.take(f"addr {index}", 1.0)
    assert len(limiter) == 100


def test_bearer_check_says_why_without_the_value() -> None:
    check = BearerCheck("s3cret-token-0123456789")
    assert check.check("Bearer s3cret-token-0123456789") is None
    assert check.check(None) is Denial.MISSING
    assert check.check("Basic abc") is Denial.MALFORMED
    assert check.check("Bearer " + "x" * 600) is Denial.MALFORMED
    assert check.check("Bearer s3cret-token-01234567890") is Denial.WRONG
    assert check.check("Bearer s3cret-tokén") is Denial.WRONG
    assert "s3cret" not in repr(check)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, (None, None, 100)),
        ({"active": "true", "limit": "1000"}, (True, None, 1000)),
        ({"since": "2026-01-31T12:00:00 01:00"}, (None, "2026-01-31T12:00:00+01:00", 100)),
        ({"since": "2026-01-31T12:00:00Z"}, (None, "2026-01-31T12:00:00+00:00", 100)),
    ],
)
def test_calls_query_parses(query: dict[str, str], expected: tuple[Any, ...]) -> None:
    active, since, limit = parse_calls_query(MultiDict(query))
    assert (active, since.isoformat() if since else None, limit) == expected


@pytest.mark.parametrize(
    "query",
    [{"active": "1"}, {"limit": "-1"}, {"limit": "1e3"}, {"since": ""}, {"x": "1"}],
)
def test_calls_query_refuses(query: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        parse_calls_query(MultiDict(query))


def test_leg_keys_label_unobserved_facts_none() -> None:
    record = {
        "legs": [
            {
                "leg": "webrtc",
                "encrypted": None,
                "signaling": {"tls_version": None},
                "media": {"protocol": "DTLS-SRTP"},
            },
            {"leg": "pstn", "encrypted": None, "status": "carrier-dependent"},
        ]
    }
    assert leg_keys(record) == [
        ("webrtc", "DTLS-SRTP", "none", "none", "none"),
        ("pstn", "PSTN", "none", "none", "none"),
    ]
