"""The CDR store on SQLite and on a real PostgreSQL: rows, reads, refusals, replay, schema.

Each test taking ``db`` runs twice, on SQLite and on PostgreSQL (``store_support``). The
last test places a call through a running bridge (``test_calls``' harness) and reads its
rows back. Faults (outages, full queue, secrets) are in ``test_store_faults``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from bridge import _store_schema
from bridge._cdr_rows import stored_form, stored_line
from bridge._store_schema import CALLS, EVENTS, LEGS, VERSION, Migration
from bridge.store import CallSchemaVersionError, CallStore, StoreHealth
from bridge.users import sqlite_url
from tests.bridge.store_support import (
    T0,
    Collect,
    Db,
    begin_call,
    db,
    dump_tables,
    new_journal,
    read_table,
    refused_call,
    settle,
    store,
    store_config,
    utc,
    whole_call,
)
from tests.bridge.test_calls import NUMBER, USER, _answered_call, _hang_up, bridge, pki

__all__ = ["bridge", "db", "pki", "store"]  # fixtures


# -- rows ------------------------------------------------------------------------------


async def test_a_calls_updates_become_one_cdr_row_legs_and_ordered_events(
    db: Db, store: CallStore
) -> None:
    seen = Collect()
    journal = new_journal(store, seen)
    whole_call(journal, "c-one")
    assert await settle(store) == ["ok"]

    (call,) = await read_table(db.url, CALLS, ["call_id"])
    final = seen.updates[-1]
    assert final.final and final.event == "ended"
    assert {key: call[key] for key in ("call_id", "direction", "user_name", "trunk")} == {
        "call_id": "c-one",
        "direction": "outbound",
        "user_name": "alice",
        "trunk": "sim",
    }
    assert (call["from_party"], call["to_party"]) == ("alice", "+441632960123")
    assert utc(call["started_at"]) == datetime.fromtimestamp(T0, UTC)
    assert utc(call["answered_at"]) == datetime.fromtimestamp(T0 + 2.5, UTC)
    assert utc(call["ended_at"]) == datetime.fromtimestamp(T0 + 62.5, UTC)
    assert (call["setup_seconds"], call["talk_seconds"]) == (2.5, 60.0)
    assert (call["end_reason"], call["sip_status"]) == ("caller-hangup", None)
    assert (call["webrtc_codec"], call["gateway_codec"]) == ("opus/48000/2", "PCMU/8000")
    assert call["end_to_end_encrypted"] is False
    assert call["policy_refusals"] == 0
    assert call["last_seq"] == final.seq == len(seen.updates) == 8
    assert json.loads(call["record"]) == final.record
    assert utc(call["updated_at"]) == datetime.fromtimestamp(final.at, UTC)

    legs = {leg["leg"]: leg for leg in await read_table(db.url, LEGS, ["leg"])}
    assert set(legs) == {"webrtc", "gateway", "pstn"}
    webrtc, gateway, pstn = legs["webrtc"], legs["gateway"], legs["pstn"]
    assert webrtc["encrypted"] is True
    assert (webrtc["signaling_transport"], webrtc["tls_version"]) == ("wss", "TLSv1.3")
    assert webrtc["tls_cipher"] == "TLS_AES_128_GCM_SHA256"
    assert (webrtc["media_protocol"], webrtc["keying"]) == ("DTLS-SRTP", None)
    assert (webrtc["dtls_version"], webrtc["dtls_role"]) == ("DTLSv1.2", "server")
    assert webrtc["srtp_profile"] == "SRTP_AEAD_AES_128_GCM"
    assert webrtc["remote_fingerprint"] == "sha-256 AB:CD:EF"
    assert webrtc["fingerprint_matches_signaling"] is True
    assert webrtc["codec"] == "opus/48000/2"
    assert gateway["encrypted"] is True
    assert (gateway["signaling_transport"], gateway["tls_version"]) == ("tls", "TLSv1.3")
    assert gateway["tls_cipher"] == "TLS_AES_256_GCM_SHA384"
    assert gateway["peer_certificate_verified"] is True
    assert gateway["peer_certificate_subject"] == "CN=carrier.test"
    assert gateway["mutual_tls"] is None  # a client cannot observe it: null, never a default
    assert (gateway["media_protocol"], gateway["keying"]) == ("SRTP", "SDES")
    assert (gateway["crypto_suite"], gateway["keys_fresh"]) == ("AEAD_AES_128_GCM", True)
    assert (gateway["codec"], gateway["peer"]) == ("PCMU/8000", "127.0.0.1:5061")
    assert gateway["dtls_version"] is None
    assert pstn["encrypted"] is None
    assert pstn["status"] == "carrier-dependent"
    assert pstn["tls_version"] is None
    assert {leg["seq"] for leg in legs.values()} == {final.seq}

    events = await read_table(db.url, EVENTS, ["seq"])
    assert [event["seq"] for event in events] == list(range(1, 9))
    assert [event["event"] for event in events] == [update.event for update in seen.updates]
    assert [event["final"] for event in events] == [False] * 7 + [True]


async def test_reads_list_get_and_events(store: CallStore) -> None:
    seen = Collect()
    journal = new_journal(store, seen)
    whole_call(journal, "c-old", started=T0)
    whole_call(journal, "c-new", started=T0 + 100)
    live = begin_call(journal, "c-live", started=T0 + 200)
    await settle(store)

    records = await store.list_calls()
    assert [record["call_id"] for record in records] == ["c-live", "c-new", "c-old"]
    assert [r["call_id"] for r in await store.list_calls(active=True)] == ["c-live"]
    assert [r["call_id"] for r in await store.list_calls(active=False)] == ["c-new", "c-old"]
    since = datetime.fromtimestamp(T0 + 100, UTC)
    assert [r["call_id"] for r in await store.list_calls(since=since)] == ["c-live", "c-new"]
    naive = since.replace(tzinfo=None)
    assert [r["call_id"] for r in await store.list_calls(since=naive, active=False)] == ["c-new"]
    assert [r["call_id"] for r in await store.list_calls(limit=1)] == ["c-live"]
    with pytest.raises(ValueError, match="limit"):
        await store.list_calls(limit=0)

    assert await store.get_call("c-live") == live.as_dict()
    assert await store.get_call("c-unknown") is None
    ended = [u for u in seen.updates if u.call_id == "c-new"]
    assert await store.get_call("c-new") == ended[-1].record
    assert await store.call_events("c-new") == [update.as_dict() for update in ended]
    assert await store.call_events("c-unknown") == []
    assert [leg["leg"] for leg in await store.call_legs("c-new")] == ["webrtc", "gateway", "pstn"]


async def test_refusals_are_counted_by_reason(db: Db, store: CallStore) -> None:
    journal = new_journal(store)
    refused_call(journal, "c-r1", ["plain-rtp-offered"])
    refused_call(journal, "c-r2", ["no-fingerprint", "plain-rtp-offered"])
    refused_call(journal, "c-r3", ["blocked-prefix"])
    whole_call(journal, "c-ok")
    await settle(store)

    assert await store.refusal_counts() == {
        "blocked-prefix": 1,
        "no-fingerprint": 1,
        "plain-rtp-offered": 2,
    }
    counts = {row["call_id"]: row["policy_refusals"] for row in await read_table(db.url, CALLS, [])}
    assert counts == {"c-r1": 1, "c-r2": 2, "c-r3": 1, "c-ok": 0}
    refused = await store.get_call("c-r2")
    assert refused is not None
    assert [leg["leg"] for leg in refused["legs"]] == ["webrtc"]
    assert refused["end_reason"] == "encryption-required"
    (row,) = [r for r in await read_table(db.url, CALLS, []) if r["call_id"] == "c-r2"]
    assert (row["sip_status"], row["talk_seconds"], row["answered_at"]) == (488, 0.0, None)


async def test_replaying_updates_again_in_any_order_changes_nothing(db: Db, tmp_path: Path) -> None:
    config = store_config(tmp_path)
    seen = Collect()
    store = await CallStore.open(db.url, config)
    store.start()
    journal = new_journal(store, seen)
    whole_call(journal, "c-a")
    refused_call(journal, "c-b", ["plain-rtp-offered"])
    await settle(store)
    await store.aclose()
    before = await dump_tables(db.url)
    assert len(before["events"]) == len(seen.updates) == 11

    # a leftover spill file holding every update twice, newest first: replayed at start-up
    lines = [stored_line(stored_form(update)) for update in reversed(seen.updates)]
    config.spill_file.parent.mkdir(parents=True, exist_ok=True)
    config.spill_file.write_text("".join(lines + lines) + '{"truncated": ')
    store = await CallStore.open(db.url, config)
    assert store.health().state == "degraded"  # spilled updates wait for the writer
    store.start()
    try:
        await settle(store)
        assert config.spill_file.read_bytes() == b""
        assert await dump_tables(db.url) == before
        assert (await store.get_call("c-a") or {}).get("end_reason") == "caller-hangup"
    finally:
        await store.aclose()


# -- schema ----------------------------------------------------------------------------


async def test_schema_version_is_recorded_and_a_newer_one_refused(db: Db, tmp_path: Path) -> None:
    store = await CallStore.open(db.url, store_config(tmp_path))
    await store.aclose()
    store = await CallStore.open(db.url, store_config(tmp_path))  # reopening migrates nothing
    await store.aclose()
    (row,) = await read_table(db.url, VERSION, ["version"])
    assert (row["version"], row["description"]) == (1, "calls, legs, call_events, policy_refusals")

    engine = create_async_engine(db.url)
    async with engine.begin() as conn:
        await conn.execute(
            insert(VERSION).values(version=7, applied_at=datetime.now(UTC), description="future")
        )
    await engine.dispose()
    with pytest.raises(CallSchemaVersionError, match="schema version 7, newer than"):
        await CallStore.open(db.url, store_config(tmp_path))


async def test_a_later_migration_is_applied_once_and_a_failing_one_rolled_back(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await CallStore.open(db.url, store_config(tmp_path))
    await store.aclose()

    def add_column(conn: Any) -> None:
        conn.execute(text("ALTER TABLE legs ADD COLUMN note VARCHAR(32)"))

    def broken(conn: Any) -> None:
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(text("SELECT no_such_column FROM calls"))

    v2, v3 = Migration(2, "legs.note", add_column), Migration(3, "broken", broken)
    monkeypatch.setattr(_store_schema, "MIGRATIONS", (*_store_schema.MIGRATIONS, v2, v3))
    with pytest.raises(Exception, match="CDR database"):
        await CallStore.open(db.url, store_config(tmp_path))
    versions = [row["version"] for row in await read_table(db.url, VERSION, ["version"])]
    assert versions == [1]  # neither step of the failed run was kept

    monkeypatch.setattr(_store_schema, "MIGRATIONS", (*_store_schema.MIGRATIONS[:2],))
    store = await CallStore.open(db.url, store_config(tmp_path))
    await store.aclose()
    rows = await read_table(db.url, VERSION, ["version"])
    assert [(row["version"], row["description"]) for row in rows] == [
        (1, "calls, legs, call_events, policy_refusals"),
        (2, "legs.note"),
    ]
    engine = create_async_engine(db.url)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT note FROM legs"))
        with pytest.raises(Exception, match="half_done"):
            await conn.execute(text("SELECT x FROM half_done"))
    await engine.dispose()


async def test_health_of_a_new_store_is_ok(store: CallStore) -> None:
    assert store.health() == StoreHealth(
        state="ok", queue_depth=0, queue_capacity=1000, dropped=0, spilled=0, last_error=None
    )


# -- through the running bridge ----------------------------------------------------------


async def test_a_call_through_the_running_bridge_is_stored(bridge) -> None:
    harness = await bridge()
    call_store = harness.running.call_store
    assert call_store is not None
    client = await harness.client()
    call = await _answered_call(client, codecs=("PCMU", "opus"))
    await asyncio.sleep(0.3)
    await _hang_up(harness, call)
    async with asyncio.timeout(10):
        await call_store.drain()
    (record,) = await call_store.list_calls()
    assert record["end_reason"] == "caller-hangup"
    assert call_store.health().state == "ok"

    url = sqlite_url(harness.settings.node.var_dir / "bridge.db")  # beside the users
    (row,) = await read_table(url, CALLS, [])
    assert row["call_id"] == record["call_id"]
    assert (row["direction"], row["user_name"], row["trunk"]) == ("outbound", USER, "sim")
    assert (row["from_party"], row["to_party"]) == (record["from"], record["to"])
    assert NUMBER in row["to_party"]
    assert row["talk_seconds"] > 0.2
    assert row["setup_seconds"] >= 0
    assert (row["webrtc_codec"], row["gateway_codec"]) == ("PCMU/8000", "PCMU/8000")
    assert row["end_to_end_encrypted"] is False
    assert json.loads(row["record"]) == record

    legs = {leg["leg"]: leg for leg in await call_store.call_legs(record["call_id"])}
    assert legs["webrtc"]["encrypted"] is True
    assert legs["webrtc"]["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert legs["webrtc"]["dtls_version"] == "DTLSv1.2"
    assert legs["webrtc"]["srtp_profile"].startswith("SRTP_")
    assert legs["webrtc"]["fingerprint_matches_signaling"] is True
    assert legs["gateway"]["encrypted"] is True
    assert legs["gateway"]["peer_certificate_verified"] is True
    assert legs["gateway"]["keying"] == "SDES"
    assert legs["gateway"]["crypto_suite"] in (
        "AEAD_AES_256_GCM",
        "AEAD_AES_128_GCM",
        "AES_CM_128_HMAC_SHA1_80",
    )
    assert legs["gateway"]["keys_fresh"] is True
    assert (legs["pstn"]["encrypted"], legs["pstn"]["status"]) == (None, "carrier-dependent")

    events = await call_store.call_events(record["call_id"])
    names = [event["event"] for event in events]
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert (names[0], names[-1]) == ("started", "ended")
    assert "answered" in names
    assert sorted(e["detail"].get("leg") for e in events if e["event"] == "leg-up") == [
        "gateway",
        "webrtc",
    ]
    assert [event["final"] for event in events] == [False] * (len(events) - 1) + [True]
