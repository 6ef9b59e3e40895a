"""The ops API of a real running bridge over real HTTPS: records, events, the live stream,
health, bad input, the bearer token and the rate limit; every response is checked against
the bridge's own OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import stat
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bridge.call.journal import CallUpdate
from bridge.ops.access import load_token
from bridge.ops.stream import CallStream, _Client
from tests.bridge.ops.conftest import TOKEN, OpsClient, OpsHarness, trunk_up
from tests.bridge.ops.schema import check
from tests.bridge.test_calls import NUMBER
from tests.webrtc_client import DialFailedError

HSTS = "max-age=31536000; includeSubDomains"


class SseReader:
    """Reads ``/api/stream`` in a task and keeps every ``call`` message."""

    def __init__(self, api: OpsClient) -> None:
        self.api = api
        self.messages: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.headers: dict[str, str] = {}
        self.connected = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async with self.api.session.get(
            self.api.base + "/api/stream", headers=self.api.headers()
        ) as response:
            assert response.status == 200
            self.headers = dict(response.headers)
            event, data = None, []
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments.append(line)
                    self.connected.set()
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and event is not None:
                    assert event == "call"
                    self.messages.append(json.loads("\n".join(data)))
                    event, data = None, []

    def of(self, call_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["update"]["call_id"] == call_id]

    async def until_final(self, call_id: str) -> None:
        async with asyncio.timeout(5):
            while not any(m["update"]["final"] for m in self.of(call_id)):  # noqa: ASYNC110 - bounded poll
                await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _document(api: OpsClient) -> dict[str, Any]:
    status, document, response = await api.get("/api/openapi.json", headers={})
    assert status == 200
    assert document["openapi"].startswith("3.1")
    assert response.headers["Strict-Transport-Security"] == HSTS
    return document


async def _calls(api: OpsClient, document: dict[str, Any], query: str = "") -> list[dict[str, Any]]:
    status, body, response = await api.get("/api/calls" + query)
    assert status == 200, body
    check(document, "/api/calls", 200, body)
    assert response.headers["Strict-Transport-Security"] == HSTS
    return body["calls"]


def _legs(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {leg["leg"]: leg for leg in record["legs"]}


async def test_a_call_is_seen_live_then_finished_with_its_events_and_stream(
    ops_bridge: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness: OpsHarness = await ops_bridge()
    api = harness.ops
    document = await _document(api)
    await trunk_up(harness)
    status, ready, _ = await api.get("/readyz", headers={})
    assert status == 200 and ready["ready"] is True and ready["trunks"] == {"sim": "up"}
    check(document, "/readyz", 200, ready)
    status, text, response = await api.get("/healthz", headers={})
    assert (status, text) == (200, "ok\n")
    assert response.headers["Strict-Transport-Security"] == HSTS
    stream = SseReader(api)
    async with asyncio.timeout(5):
        await stream.connected.wait()
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.headers["Strict-Transport-Security"] == HSTS
    try:
        client = await harness.client()
        call = await client.dial(NUMBER)
        await call.wait_answered()
        await call.wait_media()
        live = await _calls(api, document, "?active=true")
        assert len(live) == 1
        call_id = live[0]["call_id"]
        assert live[0]["ended_at"] is None and live[0]["answered_at"] is not None
        status, record, _ = await api.get(f"/api/calls/{call_id}")
        assert status == 200
        check(document, "/api/calls/{call_id}", 200, record)
        legs = _legs(record)
        assert legs["webrtc"]["encrypted"] is True and legs["gateway"]["encrypted"] is True
        assert legs["pstn"]["encrypted"] is None
        assert record["caveats"] == ["pstn-leg-carrier-dependent"]
        status, body, _ = await api.get(f"/api/calls/{call_id}/events")
        check(document, "/api/calls/{call_id}/events", 200, body)
        names = [event["event"] for event in body["events"]]
        assert names[0] == "started" and "answered" in names and "leg-up" in names
        assert not any(event["final"] for event in body["events"])

        assert await call.hangup() == 200
        await harness.idle()
        await stream.until_final(call_id)
    finally:
        await stream.aclose()
    assert await _calls(api, document, "?active=true") == []
    finished = await _calls(api, document, "?active=false")
    assert [r["call_id"] for r in finished] == [call_id]
    assert finished[0]["end_reason"] == "caller-hangup" and finished[0]["ended_at"]
    assert [r["call_id"] for r in await _calls(api, document)] == [call_id]
    status, body, _ = await api.get(f"/api/calls/{call_id}/events")
    events = body["events"]
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert events[-1]["event"] == "ended" and events[-1]["final"] is True
    streamed = stream.of(call_id)
    assert [m["update"] for m in streamed] == events  # every update, in order
    for message in streamed:
        check(document, "/api/calls", 200, {"calls": [message["record"]]})
    assert streamed[-1]["record"]["end_reason"] == "caller-hangup"

    started = datetime.fromisoformat(finished[0]["started_at"])
    before = (started - timedelta(seconds=5)).isoformat()  # +00:00 offset
    after = (started + timedelta(seconds=5)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    quoted = urllib.parse.quote(before, safe="")
    assert [r["call_id"] for r in await _calls(api, document, f"?since={quoted}")] == [call_id]
    assert await _calls(api, document, f"?since={after}") == []
    assert await _calls(api, document, "?limit=1&active=false") == finished
    assert TOKEN not in caplog.text


async def test_the_document_describes_exactly_the_routes_served(ops_bridge: Any) -> None:
    harness: OpsHarness = await ops_bridge()
    document = await _document(harness.ops)
    served = {
        resource.canonical
        for resource in harness.running.http_runner.app.router.resources()
        if resource.canonical.startswith(("/api/", "/metrics", "/healthz", "/readyz"))
    }
    assert served == set(document["paths"])
    for route, item in document["paths"].items():
        public = item["get"].get("security") == []
        assert public == (route in ("/healthz", "/readyz", "/api/openapi.json")), route
        if not public:
            assert {"401", "429"} <= set(item["get"]["responses"]), route


async def test_bad_input_gets_400_404_and_401_without_logging_the_token(
    ops_bridge: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness: OpsHarness = await ops_bridge()
    api = harness.ops
    document = await _document(api)
    for query, needle in [
        ("?active=yes", "active"),
        ("?since=yesterday", "since"),
        ("?since=2026-01-31T12:00:00", "time zone"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=5&limit=6", "more than once"),
        ("?activ=true", "unknown query parameter"),
    ]:
        status, body, response = await api.get("/api/calls" + query)
        assert status == 400, query
        check(document, "/api/calls", 400, body)
        assert needle in body["error"], (query, body)
        assert response.headers["Strict-Transport-Security"] == HSTS
    for path in ("/api/calls/c-nope", "/api/calls/c-nope/events", "/api/calls/" + "x" * 300):
        status, body, _ = await api.get(path)
        assert status == 404, path
        check(document, "/api/calls/{call_id}", 404, body)
    wrong = "not-the-token-but-long-enough-to-be-searched"
    for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": "Basic abc"}):
        for path in ("/api/calls", "/api/stream", "/metrics", "/api/calls/c-1/events"):
            status, body, response = await api.get(path, headers=headers)
            assert status == 401, (path, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.headers["Strict-Transport-Security"] == HSTS
            check(document, "/api/calls", 401, body)
    refusals = [r for r in caplog.records if "ops API: 401" in r.getMessage()]
    assert len(refusals) == 12
    assert all("from 127.0.0.1" in r.getMessage() for r in refusals)
    assert "wrong bearer token" in caplog.text and "no bearer token" in caplog.text
    assert wrong not in caplog.text and TOKEN not in caplog.text
    status, body, response = await api.get("/nope", headers={})  # aiohttp's own 404
    assert status == 404 and response.headers["Strict-Transport-Security"] == HSTS
    assert harness.running.ops is not None and harness.running.ops.counters.unauthorized == 12


async def test_a_flood_is_rate_limited_per_token_and_per_source(ops_bridge: Any) -> None:
    harness: OpsHarness = await ops_bridge(ops={"requests_per_second": 0.1, "burst": 5})
    api = harness.ops
    document = await _document(api)
    statuses = []
    for _ in range(12):
        status, body, response = await api.get("/api/calls")
        statuses.append(status)
        if status == 429:
            check(document, "/api/calls", 429, body)
            assert 1 <= int(response.headers["Retry-After"]) <= 10
    assert statuses[:5] == [200] * 5
    assert statuses.count(429) in (6, 7)  # 12 requests, burst 5, a refill takes 10 s
    # wrong tokens spend their source address's bucket, not the token's
    bad = [(await api.get("/api/calls", token="x" * 20))[0] for _ in range(8)]
    assert bad[:5] == [401] * 5 and bad.count(429) >= 2
    status, _, _ = await api.get("/healthz", headers={})  # liveness is never limited
    assert status == 200


async def test_readyz_is_503_without_a_trunk_up(ops_bridge: Any) -> None:
    harness: OpsHarness = await ops_bridge(mode="echo")
    api = harness.ops
    document = await _document(api)
    await trunk_up(harness)
    assert harness.running.carrier_sim is not None
    await harness.running.carrier_sim.aclose()
    trunk = harness.running.gateway.trunks["sim"]
    for _ in range(3):  # options_failures (2) probes fail: the trunk goes down
        await trunk.monitor.probe()
    status, body, _ = await api.get("/readyz", headers={})
    assert status == 503 and body["ready"] is False and body["trunks"] == {"sim": "down"}
    check(document, "/readyz", 503, body)


async def test_a_generated_token_is_kept_in_a_private_file(
    ops_bridge: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    harness: OpsHarness = await ops_bridge(ops={"api_token": ""})
    path = harness.running.ops_token_file
    assert path is not None and path.parent == harness.settings.node.var_dir
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 32
    assert load_token(path.parent) == (token, path)  # read again, never replaced
    status, _, _ = await harness.ops.get("/api/calls", token=token)
    assert status == 200
    status, _, _ = await harness.ops.get("/api/calls", token=TOKEN)
    assert status == 401
    assert f"ops API bearer token in {path}" in caplog.text and token not in caplog.text
    path.chmod(0o644)
    again: OpsHarness = await ops_bridge(ops={"api_token": ""}, var_dir=path.parent)
    assert again.running.ops_token_file == path and path.read_text().strip() == token
    assert "readable by other users" in caplog.text


async def test_refused_call_is_recorded_and_listed(ops_bridge: Any) -> None:
    harness: OpsHarness = await ops_bridge()
    api = harness.ops
    document = await _document(api)
    client = await harness.client()
    with pytest.raises(DialFailedError) as failed:
        call = await client.dial("+19005550100")
        await call.wait_answered()
    assert failed.value.status == 403
    calls = await _calls(api, document, "?active=false")
    assert len(calls) == 1
    record = calls[0]
    assert record["policy_refusals"][0]["reason"] == "destination-blocked"
    assert record["end_reason"] == "policy-refused"
    assert all(leg["encrypted"] is not True for leg in record["legs"] if leg["leg"] != "webrtc")
    status, body, _ = await api.get(f"/api/calls/{urllib.parse.quote(record['call_id'])}/events")
    assert status == 200
    assert [e["event"] for e in body["events"]] == ["started", "refused", "ended"]


async def test_stream_clients_are_bounded_kept_alive_and_closed_at_shutdown(
    ops_bridge: Any,
) -> None:
    harness: OpsHarness = await ops_bridge(ops={"max_stream_clients": 1})
    api = harness.ops
    document = await _document(api)
    assert harness.running.ops is not None
    harness.running.ops.stream.keepalive = 0.1  # 15 s in production
    first = SseReader(api)
    async with asyncio.timeout(5):
        while ": keep-alive" not in first.comments:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.02)
    status, body, _ = await api.get("/api/stream")
    assert status == 503 and "too many" in body["error"]
    check(document, "/api/stream", 503, body)
    harness.closed = True
    async with asyncio.timeout(10):
        await harness.running.close()  # the open stream ends; close() does not hang
    async with asyncio.timeout(5):
        with contextlib.suppress(aiohttp.ClientError):
            await first.task


async def test_finished_calls_come_from_the_store_after_a_restart(ops_bridge: Any) -> None:
    first: OpsHarness = await ops_bridge()
    client = await first.client()
    call = await client.dial(NUMBER)
    await call.wait_answered()
    assert await call.hangup() == 200
    await first.idle()
    document = await _document(first.ops)
    (record,) = await _calls(first.ops, document)
    status, events, _ = await first.ops.get(f"/api/calls/{record['call_id']}/events")
    assert status == 200
    first.closed = True
    await first.running.close()  # the store flushes

    second: OpsHarness = await ops_bridge(var_dir=first.settings.node.var_dir)
    assert second.running.ops is not None
    assert second.running.ops.recent.finished() == []  # nothing in memory: all from the store
    assert await _calls(second.ops, document) == [record]
    assert await _calls(second.ops, document, "?active=false&limit=1") == [record]
    assert await _calls(second.ops, document, "?active=true") == []
    status, stored, _ = await second.ops.get(f"/api/calls/{record['call_id']}")
    assert (status, stored) == (200, record)
    status, stored_events, _ = await second.ops.get(f"/api/calls/{record['call_id']}/events")
    assert status == 200
    check(document, "/api/calls/{call_id}/events", 200, stored_events)
    assert [e["seq"] for e in stored_events["events"]] == [e["seq"] for e in events["events"]]
    assert [e["event"] for e in stored_events["events"]] == [e["event"] for e in events["events"]]


def _update(seq: int) -> CallUpdate:
    return CallUpdate(call_id="c-1", seq=seq, at=0.0, event="ringing", detail={}, record={})


async def test_a_stream_client_that_falls_behind_is_dropped() -> None:
    # white-box: a reader that never reads cannot be made on loopback in bounded time (the
    # socket buffers take megabytes), so the client's queue is driven directly
    stream = CallStream(max_clients=4, queue_size=16)
    client = _Client(16)
    stream._clients.add(client)
    for seq in range(1, 18):
        stream.call_update(_update(seq))
    assert client.dropped and stream.clients == 0 and stream.dropped_clients == 1
    queued = [client.queue.get_nowait() for _ in range(client.queue.qsize())]
    assert len(queued) == 17 and queued[-1] == b""  # 16 messages, then the end
    assert queued[0].startswith(b"event: call\ndata: {")


@dataclass
class _DownStore:
    state: str = "down"
    queue_depth: int = 7
    queue_capacity: int = 1000
    dropped: int = 0
    spilled: int = 3
    last_error: str | None = "database refused writes"

    def health(self) -> _DownStore:
        return self


async def test_readyz_is_503_when_the_store_is_down(ops_bridge: Any) -> None:
    harness: OpsHarness = await ops_bridge()
    document = await _document(harness.ops)
    await trunk_up(harness)
    assert harness.running.ops is not None
    sources = harness.running.ops.sources
    real = sources.store
    sources.store = _DownStore()  # type: ignore[assignment] # a fault a real store needs minutes for
    try:
        status, body, _ = await harness.ops.get("/readyz", headers={})
    finally:
        sources.store = real
    assert status == 503 and body["store"]["state"] == "down" and body["trunks"] == {"sim": "up"}
    assert "last_error" not in body["store"]  # /readyz needs no token: no error texts
    check(document, "/readyz", 503, body)
    status, body, _ = await harness.ops.get("/readyz", headers={})
    assert status == 200 and body["store"]["state"] == "ok" and body["broker"] is None
