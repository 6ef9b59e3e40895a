"""The database and the MQTT broker go away mid-service: calls go on, nothing is lost.

A bridge with its store on a real PostgreSQL (``tests/postgres.py``) and its events on a
real mosquitto (``tests/mosquitto.py``) loses both; a call is placed, talks and hangs up
meanwhile; the store reports the outage in its health and spills what it could not write,
the publisher reports it is disconnected. Then both come back: the call's CDR, legs and
every event are in PostgreSQL exactly once, and the final security record is retained on
the broker, as if nothing had happened.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests import mosquitto as _broker_fixtures
from tests.bridge import test_calls as _call_fixtures
from tests.bridge.test_calls import Harness, _answered_call, _hang_up
from tests.call_records import RecordingSink
from tests.mosquitto import Mosquitto
from tests.postgres import PostgresServer

bridge = _call_fixtures.bridge
pki = _call_fixtures.pki
mosquitto = _broker_fixtures.mosquitto
LIMIT = 30.0


async def _until(condition: Any, timeout: float = LIMIT) -> None:  # noqa: ASYNC109 - a bound
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - bounded poll of health counters
            await asyncio.sleep(0.05)


async def test_a_call_survives_a_database_and_broker_outage_and_nothing_is_lost(
    bridge: Any, mosquitto: Mosquitto, postgres_server: PostgresServer
) -> None:
    url = await postgres_server.new_database()
    sections = {
        "store": {"url": url, "retry_initial": 0.1, "retry_max": 0.5, "max_retries": 2},
        "events": {
            "broker_host": "127.0.0.1",
            "broker_port": mosquitto.port,
            "ca_file": mosquitto.ca,
            "reconnect_max": 0.5,
        },
    }
    harness: Harness = await bridge(sections=sections)
    store, publisher = harness.running.call_store, harness.running.publisher
    assert store is not None and publisher is not None
    sink = RecordingSink()
    harness.running.orchestrator.journal.add_sink(sink)
    await _until(lambda: publisher.health().connected and store.health().state == "ok")
    client = await harness.client()

    postgres_server.stop()
    mosquitto.stop()
    try:
        call = await _answered_call(client)  # the call itself does not notice
        await asyncio.sleep(0.5)
        assert call.reception.count > 10  # the echo of our audio came back
        await _hang_up(harness, call)
        (final,) = await sink.wait_final(1, timeout=LIMIT)
        assert harness.running.orchestrator.ended == {"caller-hangup": 1}
        await _until(lambda: store.health().state == "down" and store.health().spilled > 0)
        assert not publisher.health().connected
        assert publisher.health().queue_depth > 0
        assert harness.running.ops is not None
        ready, ok = harness.running.ops.readiness()
        assert not ok and ready["store"]["state"] == "down"
    finally:
        if not postgres_server.running:
            postgres_server.start()
        if not mosquitto.running:
            mosquitto.start()

    call_id = final.call_id
    expected = [u.seq for u in sink.updates if u.call_id == call_id]
    await _until(lambda: store.health().state == "ok" and publisher.health().queue_depth == 0)

    async def stored_events() -> list[dict[str, Any]]:
        async with asyncio.timeout(LIMIT):
            while True:
                events = await store.call_events(call_id)
                if [e["seq"] for e in events] == expected:
                    return events
                await asyncio.sleep(0.1)

    events = await stored_events()
    assert events[-1]["final"] is True and events[-1]["event"] == "ended"
    record = await store.get_call(call_id)
    assert record is not None and record["end_reason"] == "caller-hangup"
    assert record["legs"] == final.record["legs"]
    async with mosquitto.subscriber(f"pstn-bridge/calls/{call_id}/security") as late:
        [message] = await late.collect(lambda seen: len(seen) >= 1)
    assert message.retain and message.json()["end_reason"] == "caller-hangup"
    assert message.json()["ended_at"] == final.record["ended_at"]
