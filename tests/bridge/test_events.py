"""MQTT events against a real mosquitto with a TLS listener (``tests/mosquitto.py``).

Through a running bridge (the harness of ``test_calls.py``): a call's lifecycle events
arrive in ``seq`` order and a subscriber that connects after the call still gets the final
security record (retained). As a process: ``pstn-bridge serve`` says ``online`` (retained);
when it hangs (SIGSTOP) the broker publishes its last will ``offline`` after the keep-alive
runs out, it comes back ``online`` when resumed, and a SIGKILL gives ``offline`` again.
The publisher alone: a broker outage never blocks ``call_update`` (the oldest updates are
dropped and counted, the rest are published after the reconnect); a broker whose
certificate does not verify is refused and said so; mutual TLS with a password works and
the password appears nowhere. The queue and the back-off are also tested without a broker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.app import StartupError, start
from bridge.call.journal import CallUpdate
from bridge.events import Backoff, MqttConfig, MqttPublisher, UpdateQueue
from bridge.settings import Settings, SettingsError, load_settings
from sip_gateway.tls import TlsClientConfig
from tests import mosquitto as _broker_fixtures
from tests.bridge import test_calls as _call_fixtures
from tests.bridge.test_calls import Harness, _answered_call, _bridge_call, _hang_up
from tests.interop.peers import free_port
from tests.mosquitto import Mosquitto, Received
from tests.pki import Pki

bridge = _call_fixtures.bridge  # the running-bridge harness of test_calls.py
pki = _call_fixtures.pki
mosquitto = _broker_fixtures.mosquitto

MQTT_USER = "bridge-node"
MQTT_PASSWORD = "mqtt-Pa55word-n0t-for-logs"


def _config(broker: Mosquitto, **overrides: Any) -> MqttConfig:
    tls = overrides.pop("tls", None) or TlsClientConfig(ca_file=broker.ca)
    return MqttConfig(
        broker_host="127.0.0.1",
        broker_port=broker.port,
        tls=tls,
        keepalive=overrides.pop("keepalive", 5),
        reconnect_min=overrides.pop("reconnect_min", 0.1),
        reconnect_max=overrides.pop("reconnect_max", 0.5),
        **overrides,
    )


def _update(call_id: str, seq: int, event: str = "started", *, final: bool = False) -> CallUpdate:
    record = {"call_id": call_id, "legs": [], "end_reason": "caller-hangup" if final else None}
    return CallUpdate(
        call_id=call_id, seq=seq, at=time.time(), event=event, detail={}, record=record, final=final
    )


async def _until(condition: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a bound
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - bounded poll of a health counter
            await asyncio.sleep(0.02)


def _states(messages: list[Received]) -> list[str]:
    return [m.json()["state"] for m in messages]


# -- through a running bridge -----------------------------------------------------------


async def test_call_events_in_order_and_final_record_retained(bridge, mosquitto, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    events = {"broker_host": "127.0.0.1", "broker_port": mosquitto.port, "ca_file": mosquitto.ca}
    async with mosquitto.subscriber("pstn-bridge/calls/+/events", "pstn-bridge/nodes/#") as live:
        harness: Harness = await bridge(sections={"events": events})
        publisher = harness.running.publisher
        assert publisher is not None
        node = harness.settings.node.id
        status = f"pstn-bridge/nodes/{node}/status"
        await live.collect(lambda seen: "online" in _states([m for m in seen if m.topic == status]))
        client = await harness.client()
        call = await _answered_call(client)
        bridged = _bridge_call(harness)
        call_id = bridged.record.call_id
        crypto = bridged.gateway.media_config.crypto
        await _hang_up(harness, call)
        topic = f"pstn-bridge/calls/{call_id}/events"
        await live.collect(lambda seen: any(m.topic == topic and m.json()["final"] for m in seen))
        updates = [m.json() for m in live.on(topic)]
    assert [u["seq"] for u in updates] == list(range(1, len(updates) + 1))
    names = [u["event"] for u in updates]
    assert names[0] == "started" and names[-1] == "ended", names
    assert names.index("started") < names.index("answered") < names.index("ended")
    assert all(not m.retain for m in live.on(topic))
    health = publisher.health()
    assert health.connected and health.dropped == 0 and health.queue_depth == 0
    assert health.published >= 2 * len(updates) + 1

    # a subscriber that arrives after the call gets the final record, retained
    async with mosquitto.subscriber(f"pstn-bridge/calls/{call_id}/security") as late:
        [message] = await late.collect(lambda seen: len(seen) >= 1)
        await asyncio.sleep(0.2)
        assert len(late.received) == 1
    assert message.retain
    record = message.json()
    assert record["call_id"] == call_id
    assert record["end_reason"] == "caller-hangup" and record["ended_at"] is not None
    legs = {leg["leg"]: leg for leg in record["legs"]}
    assert legs["webrtc"]["media"]["protocol"] == "DTLS-SRTP"
    assert legs["gateway"]["media"]["keying"] == "SDES"
    assert legs["pstn"]["status"] == "carrier-dependent"
    assert "pstn-leg-carrier-dependent" in record["caveats"]
    assert record["end_to_end_encrypted"] is False

    # no key material in anything published or logged
    keys = [crypto.local_key, crypto.remote_key]
    forms = [f(k) for k in keys for f in (lambda k: base64.b64encode(k).decode(), bytes.hex)]
    published = [m.payload.decode() for m in live.received] + [message.payload.decode()]
    for text in [*published, caplog.text]:
        assert "inline:" not in text and "a=crypto" not in text
        for form in forms:
            assert form not in text


async def test_without_a_broker_there_is_no_publisher(bridge) -> None:
    harness = await bridge()
    assert harness.running.publisher is None
    sinks = harness.running.orchestrator.journal.sinks
    assert not any(isinstance(sink, MqttPublisher) for sink in sinks)


async def test_an_unusable_ca_file_stops_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    settings = Settings.model_validate(
        {
            "node": {"var_dir": tmp_path / "var"},
            "events": {"broker_host": "127.0.0.1", "ca_file": missing},
        }
    )
    with pytest.raises(StartupError, match=r"option events: CA file .*no-such-ca\.pem"):
        await start(settings)


# -- the node's status and last will, with `pstn-bridge serve` as a process --------------


def _serve_config(tmp_path: Path, certs: Pki, broker: Mosquitto) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[node]
id = "node-k"
var_dir = "{tmp_path / "var"}"
[tls]
cert_file = "{certs.crt("server")}"
key_file = "{certs.key("server")}"
ca_file = "{certs.ca}"
[sip]
listen_port = {free_port()}
[http]
listen_port = {free_port()}
[users]
demo_user = ""
[carrier_sim]
enabled = false
[events]
broker_host = "127.0.0.1"
broker_port = {broker.port}
ca_file = "{broker.ca}"
client_cert_file = "{certs.crt("client")}"
client_key_file = "{certs.key("client")}"
username = "{MQTT_USER}"
keepalive = 2
reconnect_max = 1.0
[[trunks]]
name = "nowhere"
host = "127.0.0.1"
port = {free_port()}
options_interval = 0
"""
    )
    return path


async def test_status_online_and_last_will_when_the_bridge_hangs_or_dies(
    tmp_path: Path, tls_pki: Pki, leak_scan: Any
) -> None:
    leak_scan.add_text("mqtt password", MQTT_PASSWORD)  # the suite-wide scan looks for it too
    with Mosquitto(
        tmp_path / "broker", tls_pki, require_certificate=True, passwords={MQTT_USER: MQTT_PASSWORD}
    ) as broker:
        topic = "pstn-bridge/nodes/node-k/status"
        env = os.environ | {"PSTN_BRIDGE_EVENTS__PASSWORD": MQTT_PASSWORD}
        out = tmp_path / "serve.log"
        async with broker.subscriber(topic, username=MQTT_USER, password=MQTT_PASSWORD) as sub:
            config = _serve_config(tmp_path, tls_pki, broker)
            with out.open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "bridge.ops.cli", "serve", "--config", str(config)),
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                await sub.collect(lambda seen: _states(seen) == ["online"], timeout=30)
                hung = time.monotonic()
                os.kill(proc.pid, signal.SIGSTOP)  # hung: only the keep-alive can tell
                await sub.collect(lambda seen: _states(seen)[-1] == "offline", timeout=10)
                hung = time.monotonic() - hung
                os.kill(proc.pid, signal.SIGCONT)
                await sub.collect(lambda seen: _states(seen)[-1] == "online", timeout=15)
                killed = time.monotonic()
                os.kill(proc.pid, signal.SIGKILL)
                await sub.collect(lambda seen: _states(seen)[-1] == "offline", timeout=10)
                killed = time.monotonic() - killed
            finally:
                if proc.returncode is None:
                    proc.kill()
                async with asyncio.timeout(10):
                    await proc.wait()
        states = _states(sub.received)
        assert states == ["online", "offline", "online", "offline"], states
        wills = [m.json() for m in sub.received if m.json()["state"] == "offline"]
        assert all(w["reason"] == "connection-lost" and w["node_id"] == "node-k" for w in wills)
        # the last packet from the bridge came up to 2 s before SIGSTOP; mosquitto waits 1.5 x 2 s
        assert 0.5 <= hung <= 8.0, f"will after {hung:.1f} s of silence (keepalive 2 s)"
        assert killed <= 4.0, f"will {killed:.1f} s after SIGKILL"
        print(f"\nwill after a hang: {hung:.2f} s; after SIGKILL: {killed:.2f} s")
        async with broker.subscriber(topic, username=MQTT_USER, password=MQTT_PASSWORD) as late:
            [retained] = await late.collect(lambda seen: len(seen) >= 1)
        assert retained.retain and retained.json()["state"] == "offline"
        logs = out.read_text(errors="replace")
        assert "MQTT broker 127.0.0.1" in logs and "connected" in logs
        assert MQTT_PASSWORD not in logs
        assert MQTT_PASSWORD not in broker.logs()


# -- the publisher alone: outage, TLS, credentials --------------------------------------


async def test_broker_outage_never_blocks_and_publishing_resumes(tmp_path: Path, tls_pki: Pki):
    broker = Mosquitto(tmp_path / "broker", tls_pki)
    broker.start()
    publisher = MqttPublisher(_config(broker, queue_size=20), node_id="node-o")
    try:
        async with broker.subscriber("pstn-bridge/calls/#") as sub:
            publisher.start()
            await _until(lambda: publisher.health().connected)
            for seq in (1, 2, 3):
                publisher.call_update(_update("c-before", seq, final=seq == 3))
            await sub.collect(lambda seen: len(seen) >= 6)
            broker.stop()
        await _until(lambda: not publisher.health().connected, timeout=5)

        lag = await _loop_lag_while(_feed_outage(publisher), seconds=1.5)
        health = publisher.health()
        assert not health.connected and health.last_error
        assert health.queue_depth == 20 and health.dropped == 30
        reconnects = health.reconnects
        assert reconnects >= 2, "no reconnection attempts during the outage"
        assert lag < 0.1, f"the event loop stalled {lag * 1000:.0f} ms during the outage"

        broker.start()  # same port, empty (no persistence): retained state is gone
        await _until(lambda: publisher.health().connected and not publisher.health().queue_depth)
        health = publisher.health()
        assert health.reconnects > reconnects - 1 and health.dropped == 30
        async with broker.subscriber("pstn-bridge/calls/+/security") as late:
            await late.collect(lambda seen: len(seen) >= 20)
            await asyncio.sleep(0.3)
        calls = {m.topic.split("/")[2] for m in late.received}
        assert calls == {f"c-out-{n}" for n in range(30, 50)}, "not the newest 20 updates"
        assert all(m.retain and m.json()["end_reason"] == "caller-hangup" for m in late.received)
    finally:
        await publisher.aclose()
        broker.stop()


async def test_closing_on_a_stalled_broker_is_bounded_and_leaves_offline(
    mosquitto: Mosquitto,
) -> None:
    publisher = MqttPublisher(_config(mosquitto, close_timeout=1.0), node_id="node-s")
    publisher.start()
    await _until(lambda: publisher.health().connected)
    assert mosquitto.peer is not None
    mosquitto.peer.send_signal(signal.SIGSTOP)  # alive but silent: no PUBACK comes
    try:
        publisher.call_update(_update("c-s", 1))
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await publisher.aclose()
        took = time.monotonic() - began
    finally:
        mosquitto.peer.send_signal(signal.SIGCONT)
    assert took < 1.0 + 1.6, f"aclose took {took:.1f} s"
    assert publisher.health().queue_depth == 1  # not published, and says so
    async with mosquitto.subscriber("pstn-bridge/nodes/node-s/status") as late:
        [status] = await late.collect(lambda seen: len(seen) >= 1)
    assert status.retain and status.json()["state"] == "offline"


async def _feed_outage(publisher: MqttPublisher) -> None:
    """50 one-update calls while the broker is away; each call_update must be instant."""
    slowest = 0.0
    for n in range(50):
        began = time.perf_counter()
        publisher.call_update(_update(f"c-out-{n}", 1, "ended", final=True))
        slowest = max(slowest, time.perf_counter() - began)
        await asyncio.sleep(0.02)
    assert slowest < 0.005, f"call_update took {slowest * 1000:.1f} ms"


async def _loop_lag_while(work: Any, seconds: float) -> float:
    """Run ``work`` and tick every 10 ms for ``seconds``; returns the worst lateness."""
    task = asyncio.ensure_future(work)
    worst = 0.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        before = loop.time()
        await asyncio.sleep(0.01)
        worst = max(worst, loop.time() - before - 0.01)
    await task
    return worst


async def test_a_broker_certificate_that_does_not_verify_is_refused(
    mosquitto: Mosquitto, tls_pki: Pki, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.events")
    config = _config(mosquitto, tls=TlsClientConfig(ca_file=tls_pki.rogue_ca))
    publisher = MqttPublisher(config, node_id="node-t")
    async with mosquitto.subscriber("pstn-bridge/#") as sub:
        publisher.start()
        publisher.call_update(_update("c-t", 1))
        try:
            await _until(lambda: publisher.health().reconnects >= 3)
        finally:
            await publisher.aclose()
        await asyncio.sleep(0.2)
    health = publisher.health()
    assert not health.connected and health.published == 0 and health.queue_depth == 1
    assert health.last_error is not None
    assert "did not verify against" in health.last_error
    assert str(tls_pki.rogue_ca) in health.last_error
    warnings = [r.getMessage() for r in caplog.records if r.name == "bridge.events"]
    refused = [w for w in warnings if "cannot connect: TLS" in w]
    assert len(refused) == 1, warnings  # one line, not one per attempt
    assert sub.received == []
    assert "unknown ca" in mosquitto.logs()  # the broker saw our TLS alert


async def test_mutual_tls_with_password_and_a_wrong_password(
    tmp_path: Path, tls_pki: Pki, caplog: pytest.LogCaptureFixture, leak_scan: Any
) -> None:
    leak_scan.add_text("mqtt password", MQTT_PASSWORD)
    caplog.set_level(logging.DEBUG)
    users = {MQTT_USER: MQTT_PASSWORD}
    with Mosquitto(tmp_path / "b", tls_pki, require_certificate=True, passwords=users) as broker:
        mutual = TlsClientConfig(
            ca_file=broker.ca,
            certificate_chain=tls_pki.crt("client"),
            private_key=tls_pki.key("client"),
        )
        good = MqttPublisher(
            _config(broker, tls=mutual, username=MQTT_USER, password=MQTT_PASSWORD), node_id="ok"
        )
        bad = MqttPublisher(
            _config(broker, tls=mutual, username=MQTT_USER, password="wrong-" + MQTT_PASSWORD),
            node_id="bad",
        )
        async with broker.subscriber("pstn-bridge/calls/#", **_creds()) as sub:
            good.start()
            bad.start()
            good.call_update(_update("c-m", 1))
            bad.call_update(_update("c-x", 1))
            await sub.collect(lambda seen: len(seen) >= 2)
            await _until(lambda: bad.health().reconnects >= 2)
            await good.aclose()
            await bad.aclose()
        assert {m.topic.split("/")[2] for m in sub.received} == {"c-m"}
        assert bad.health().last_error is not None
        assert "authori" in bad.health().last_error.lower()  # "Not authorized"
        for text in (caplog.text, repr(good.config), str(bad.health()), broker.logs()):
            assert MQTT_PASSWORD not in text


def _creds() -> dict[str, str]:
    return {"username": MQTT_USER, "password": MQTT_PASSWORD}


# -- without a broker: queue, back-off, configuration -----------------------------------


def test_a_full_queue_drops_the_oldest_and_never_the_one_in_flight() -> None:
    queue = UpdateQueue(2)
    assert queue.put(_update("c-1", 1)) is None
    current = queue.take()
    assert current is not None and current.call_id == "c-1"
    for n in range(2, 6):
        queue.put(_update(f"c-{n}", 1))
    assert queue.dropped == 2 and len(queue) == 3
    assert queue.take() is current  # still in flight until done()
    queue.done()
    taken = []
    while (update := queue.take()) is not None:
        taken.append(update.call_id)
        queue.done()
    assert taken == ["c-4", "c-5"]


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    low = Backoff(0.5, 4.0, random=lambda: 0.0)
    high = Backoff(0.5, 4.0, random=lambda: 0.999999)
    assert [round(low.next_delay(), 3) for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert [round(high.next_delay(), 2) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    high.reset()
    assert round(high.next_delay(), 2) == 0.5
    for _ in range(100):  # very long outages stay at the cap
        assert high.next_delay() <= 4.0


@pytest.mark.parametrize("prefix", ["", "a/#", "a/+/b", "/a", "a/"])
def test_topic_prefix_without_wildcards(prefix: str) -> None:
    with pytest.raises(ValueError, match="topic_prefix"):
        MqttConfig(broker_host="h", tls=TlsClientConfig(), topic_prefix=prefix)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[events]\ntopic_prefix = "a/#"\n', "option events.topic_prefix"),
        ('[events]\nclient_cert_file = "c.pem"\n', "client_key_file go together"),
        ('[events]\npassword = "x"\n', "password needs username"),
        ("[events]\nkeepalive = 1\n", "option events.keepalive"),
    ],
)
def test_events_settings_name_the_option(tmp_path: Path, toml: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError, match=needle):
        load_settings(path)


def test_the_password_is_not_shown() -> None:
    config = MqttConfig(broker_host="h", tls=TlsClientConfig(), password=MQTT_PASSWORD)
    assert MQTT_PASSWORD not in repr(config)
    settings = Settings.model_validate({"events": {"username": "u", "password": MQTT_PASSWORD}})
    assert MQTT_PASSWORD not in repr(settings) and MQTT_PASSWORD not in json.dumps(
        settings.model_dump(mode="json")
    )
