"""The CDR store on SQLite and on a real PostgreSQL: rows, reads, replay, outages, secrets.

Each store test runs twice, on a SQLite file and on a database of the session's PostgreSQL
cluster (``tests/postgres.py``, started by the fixture; a machine without PostgreSQL fails
these tests). Calls are fed the way the bridge feeds them: real
:class:`~bridge.security.SecurityRecord` objects reported through a real
:class:`~bridge.call.journal.Journal` with the store as a sink. The faults are real too:
the PostgreSQL server is stopped (``pg_ctl stop -m fast``) while updates arrive, and a
SQLite file is locked by another connection. The last test places a call through a running
bridge and reads its rows back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from bridge import _store_schema
from bridge._cdr_rows import stored_form, stored_line
from bridge._store_schema import CALLS, EVENTS, LEGS, REFUSALS, VERSION, Migration
from bridge.call.journal import CallUpdate, Journal
from bridge.media.webrtc_leg import DtlsFacts
from bridge.security import SecurityRecord
from bridge.store import (
    CallSchemaVersionError,
    CallStore,
    CallStoreUnavailableError,
    StoreConfig,
    StoreHealth,
)
from bridge.users import sqlite_url
from sip_gateway.sdp.crypto import CryptoAttribute
from sip_gateway.tls import TlsSessionInfo
from tests.postgres import PostgresServer

T0 = 1_790_000_000.0  # 2026-09-21T13:33:20Z


@dataclass
class Db:
    """One empty database of a test: its kind, URL and (PostgreSQL) server."""

    kind: str
    url: str
    server: PostgresServer | None = None


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    if request.param == "sqlite":
        return Db("sqlite", sqlite_url(tmp_path / "var" / "bridge.db"))
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return Db("postgresql", await server.new_database(), server)


def _config(tmp_path: Path, **kwargs: Any) -> StoreConfig:
    options: dict[str, Any] = {
        "spill_file": tmp_path / "var" / "cdr-spill.jsonl",
        "retry_initial": 0.05,
        "retry_max": 0.2,
        "max_retries": 2,
        "warn_interval": 0.5,
    }
    return StoreConfig(**(options | kwargs))


@pytest.fixture
async def store(db: Db, tmp_path: Path) -> AsyncIterator[CallStore]:
    opened = await CallStore.open(db.url, _config(tmp_path))
    opened.start()
    yield opened
    await opened.aclose()


class Collect:
    """A sink that keeps every update (what the store was given)."""

    def __init__(self) -> None:
        self.updates: list[CallUpdate] = []

    def call_update(self, update: CallUpdate) -> None:
        self.updates.append(update)


def _journal(*sinks: Any) -> Journal:
    clock = itertools.count(T0, 0.25)
    return Journal(sinks=list(sinks), clock=lambda: next(clock))


def _tls(*, client: bool) -> TlsSessionInfo:
    if client:
        return TlsSessionInfo(
            version="TLSv1.3",
            cipher="TLS_AES_256_GCM_SHA384",
            peer_certificate_verified=True,
            peer_certificate_subject="CN=carrier.test",
            client_certificate_presented=None,
        )
    return TlsSessionInfo(
        version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        peer_certificate_verified=False,
        peer_certificate_subject=None,
        client_certificate_presented=False,
    )


def _record(call_id: str, started: float = T0) -> SecurityRecord:
    record = SecurityRecord(
        call_id=call_id,
        direction="outbound",
        from_party="alice",
        to_party="+441632960123",
        started_at=started,
        webrtc_tls=_tls(client=False),
    )
    record.user, record.trunk = "alice", "sim"
    return record


def _begin_call(journal: Journal, call_id: str, started: float = T0) -> SecurityRecord:
    """started, dialing, gateway leg-up, ringing: a call that is not answered yet."""
    record = _record(call_id, started)
    journal.report(record, "started", {"direction": "outbound", "user": "alice"})
    journal.report(record, "dialing")
    record.gateway_peer = "127.0.0.1:5061"
    record.gateway_tls = _tls(client=True)
    _sdes_line()  # the gateway leg's keys, made for this call as the bridge makes them
    record.gateway_suite, record.gateway_keys_fresh = "AEAD_AES_128_GCM", True
    record.gateway_codec = "PCMU/8000"
    journal.report(record, "leg-up", {"leg": "gateway"})
    journal.report(record, "ringing")
    return record


def _sdes_line() -> str:
    """A fresh SDES ``a=crypto`` line (the suite-wide leak scan learns its key)."""
    attribute = CryptoAttribute.create(tag=1, suite="AEAD_AES_128_GCM", key_salt=os.urandom(28))
    return f"a=crypto:{attribute}"


def _finish_call(journal: Journal, record: SecurityRecord, talk: float = 60.0) -> None:
    """answered (2.5 s after the start), webrtc leg-up, ending, ended after ``talk`` s."""
    record.answered_at = record.started_at + 2.5
    record.dtls = DtlsFacts(
        dtls_version="DTLSv1.2",
        cipher="ECDHE-ECDSA-AES128-GCM-SHA256",
        srtp_profile="SRTP_AEAD_AES_128_GCM",
        role="server",
        remote_fingerprint="sha-256 AB:CD:EF",
        fingerprint_matches_signaling=True,
    )
    record.webrtc_codec = "opus/48000/2"
    journal.report(record, "leg-up", {"leg": "webrtc"})
    journal.report(record, "answered")
    journal.report(record, "ending", {"cause": "caller-hangup"})
    record.freeze("caller-hangup", None)
    record.ended_at = record.answered_at + talk
    journal.report(record, "ended", {"reason": "caller-hangup"})


def _whole_call(journal: Journal, call_id: str, started: float = T0) -> None:
    _finish_call(journal, _begin_call(journal, call_id, started))


def _refused_call(journal: Journal, call_id: str, reasons: Iterable[str]) -> None:
    """A refused attempt, as the orchestrator reports one (no PSTN legs)."""
    record = _record(call_id)
    record.reaches_pstn = False
    for reason in reasons:
        record.refuse(reason, f"refused by policy {reason}")
    journal.report(record, "started", {"direction": "outbound", "user": "alice"})
    journal.report(record, "refused", {"reason": record.policy_refusals[0].reason, "status": 488})
    record.freeze("encryption-required", 488)
    journal.report(record, "ended", {"reason": "encryption-required"})


async def _settle(store: CallStore, state: str = "ok", timeout: float = 15.0) -> list[str]:  # noqa: ASYNC109
    """Wait for the writer to take everything and the store to reach ``state``; the states seen."""
    seen: list[str] = []
    drained = asyncio.ensure_future(store.drain())
    try:
        async with asyncio.timeout(timeout):
            while not drained.done() or store.health().state != state:
                now = store.health().state
                if not seen or seen[-1] != now:
                    seen.append(now)
                await asyncio.sleep(0.01)
    finally:
        drained.cancel()
    return seen if seen[-1:] == [state] else [*seen, state]


async def _table(url: str, table: Any, order: Iterable[str]) -> list[dict[str, Any]]:
    """Every row of ``table`` read with a connection of the test's own."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(table).order_by(*(table.c[name] for name in order))
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]
    finally:
        await engine.dispose()


async def _dump(url: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "calls": await _table(url, CALLS, ["call_id"]),
        "legs": await _table(url, LEGS, ["call_id", "leg"]),
        "events": await _table(url, EVENTS, ["call_id", "seq"]),
        "refusals": await _table(url, REFUSALS, ["call_id", "idx"]),
    }


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# -- rows ------------------------------------------------------------------------------


async def test_a_calls_updates_become_one_cdr_row_legs_and_ordered_events(
    db: Db, store: CallStore
) -> None:
    seen = Collect()
    journal = _journal(store, seen)
    _whole_call(journal, "c-one")
    assert await _settle(store) == ["ok"]

    (call,) = await _table(db.url, CALLS, ["call_id"])
    final = seen.updates[-1]
    assert final.final and final.event == "ended"
    assert {key: call[key] for key in ("call_id", "direction", "user_name", "trunk")} == {
        "call_id": "c-one",
        "direction": "outbound",
        "user_name": "alice",
        "trunk": "sim",
    }
    assert (call["from_party"], call["to_party"]) == ("alice", "+441632960123")
    assert _utc(call["started_at"]) == datetime.fromtimestamp(T0, UTC)
    assert _utc(call["answered_at"]) == datetime.fromtimestamp(T0 + 2.5, UTC)
    assert _utc(call["ended_at"]) == datetime.fromtimestamp(T0 + 62.5, UTC)
    assert (call["setup_seconds"], call["talk_seconds"]) == (2.5, 60.0)
    assert (call["end_reason"], call["sip_status"]) == ("caller-hangup", None)
    assert (call["webrtc_codec"], call["gateway_codec"]) == ("opus/48000/2", "PCMU/8000")
    assert call["end_to_end_encrypted"] is False
    assert call["policy_refusals"] == 0
    assert call["last_seq"] == final.seq == len(seen.updates) == 8
    assert json.loads(call["record"]) == final.record
    assert _utc(call["updated_at"]) == datetime.fromtimestamp(final.at, UTC)

    legs = {leg["leg"]: leg for leg in await _table(db.url, LEGS, ["leg"])}
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

    events = await _table(db.url, EVENTS, ["seq"])
    assert [event["seq"] for event in events] == list(range(1, 9))
    assert [event["event"] for event in events] == [update.event for update in seen.updates]
    assert [event["final"] for event in events] == [False] * 7 + [True]


async def test_reads_list_get_and_events(store: CallStore) -> None:
    seen = Collect()
    journal = _journal(store, seen)
    _whole_call(journal, "c-old", started=T0)
    _whole_call(journal, "c-new", started=T0 + 100)
    live = _begin_call(journal, "c-live", started=T0 + 200)
    await _settle(store)

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
    journal = _journal(store)
    _refused_call(journal, "c-r1", ["plain-rtp-offered"])
    _refused_call(journal, "c-r2", ["no-fingerprint", "plain-rtp-offered"])
    _refused_call(journal, "c-r3", ["blocked-prefix"])
    _whole_call(journal, "c-ok")
    await _settle(store)

    assert await store.refusal_counts() == {
        "blocked-prefix": 1,
        "no-fingerprint": 1,
        "plain-rtp-offered": 2,
    }
    counts = {row["call_id"]: row["policy_refusals"] for row in await _table(db.url, CALLS, [])}
    assert counts == {"c-r1": 1, "c-r2": 2, "c-r3": 1, "c-ok": 0}
    refused = await store.get_call("c-r2")
    assert refused is not None
    assert [leg["leg"] for leg in refused["legs"]] == ["webrtc"]
    assert refused["end_reason"] == "encryption-required"
    (row,) = [r for r in await _table(db.url, CALLS, []) if r["call_id"] == "c-r2"]
    assert (row["sip_status"], row["talk_seconds"], row["answered_at"]) == (488, 0.0, None)


async def test_replaying_updates_again_in_any_order_changes_nothing(db: Db, tmp_path: Path) -> None:
    config = _config(tmp_path)
    seen = Collect()
    store = await CallStore.open(db.url, config)
    store.start()
    journal = _journal(store, seen)
    _whole_call(journal, "c-a")
    _refused_call(journal, "c-b", ["plain-rtp-offered"])
    await _settle(store)
    await store.aclose()
    before = await _dump(db.url)
    assert len(before["events"]) == len(seen.updates) == 11

    # a leftover spill file holding every update twice, newest first: replayed at start-up
    lines = [stored_line(stored_form(update)) for update in reversed(seen.updates)]
    config.spill_file.parent.mkdir(parents=True, exist_ok=True)
    config.spill_file.write_text("".join(lines + lines) + '{"truncated": ')
    store = await CallStore.open(db.url, config)
    assert store.health().state == "degraded"  # spilled updates wait for the writer
    store.start()
    try:
        await _settle(store)
        assert config.spill_file.read_bytes() == b""
        assert await _dump(db.url) == before
        assert (await store.get_call("c-a") or {}).get("end_reason") == "caller-hangup"
    finally:
        await store.aclose()


# -- schema ----------------------------------------------------------------------------


async def test_schema_version_is_recorded_and_a_newer_one_refused(db: Db, tmp_path: Path) -> None:
    store = await CallStore.open(db.url, _config(tmp_path))
    await store.aclose()
    store = await CallStore.open(db.url, _config(tmp_path))  # reopening migrates nothing
    await store.aclose()
    (row,) = await _table(db.url, VERSION, ["version"])
    assert (row["version"], row["description"]) == (1, "calls, legs, call_events, policy_refusals")

    engine = create_async_engine(db.url)
    async with engine.begin() as conn:
        await conn.execute(
            insert(VERSION).values(version=7, applied_at=datetime.now(UTC), description="future")
        )
    await engine.dispose()
    with pytest.raises(CallSchemaVersionError, match="schema version 7, newer than"):
        await CallStore.open(db.url, _config(tmp_path))


async def test_a_later_migration_is_applied_once_and_a_failing_one_rolled_back(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await CallStore.open(db.url, _config(tmp_path))
    await store.aclose()

    def add_column(conn: Any) -> None:
        conn.execute(text("ALTER TABLE legs ADD COLUMN note VARCHAR(32)"))

    def broken(conn: Any) -> None:
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(text("SELECT no_such_column FROM calls"))

    v2, v3 = Migration(2, "legs.note", add_column), Migration(3, "broken", broken)
    monkeypatch.setattr(_store_schema, "MIGRATIONS", (*_store_schema.MIGRATIONS, v2, v3))
    with pytest.raises(Exception, match="CDR database"):
        await CallStore.open(db.url, _config(tmp_path))
    versions = [row["version"] for row in await _table(db.url, VERSION, ["version"])]
    assert versions == [1]  # neither step of the failed run was kept

    monkeypatch.setattr(_store_schema, "MIGRATIONS", (*_store_schema.MIGRATIONS[:2],))
    store = await CallStore.open(db.url, _config(tmp_path))
    await store.aclose()
    rows = await _table(db.url, VERSION, ["version"])
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


# -- faults ----------------------------------------------------------------------------


async def test_postgres_outage_is_buffered_spilled_and_replayed(
    postgres_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.store")
    url = await postgres_server.new_database()
    config = _config(tmp_path, retry_initial=0.3, retry_max=0.5)
    store = await CallStore.open(url, config)
    store.start()
    seen = Collect()
    journal = _journal(store, seen)
    try:
        _whole_call(journal, "c-before")
        await _settle(store)
        postgres_server.stop()
        try:
            call = _begin_call(journal, "c-during", started=T0 + 100)
            assert store.health().queue_depth == 4  # taken without waiting for the database
            states = await _settle(store, "down")
            assert states == ["ok", "degraded", "down"]  # retried before giving up
            down = store.health()
            assert down.spilled == 4
            assert down.dropped == 0
            assert "CDR database" in (down.last_error or "")
            assert stat.S_IMODE(config.spill_file.stat().st_mode) == 0o600
            spilled = [json.loads(line) for line in config.spill_file.read_text().splitlines()]
            assert [(s["call_id"], s["seq"]) for s in spilled] == [
                ("c-during", n) for n in (1, 2, 3, 4)
            ]
            _finish_call(journal, call)  # while down: straight to the spill file
            await _settle(store, "down")
            assert store.health().spilled == 8
        finally:
            postgres_server.start()
        assert await _settle(store, "ok") == ["down", "ok"]
        assert config.spill_file.read_bytes() == b""
        dump = await _dump(url)
        assert [row["call_id"] for row in dump["calls"]] == ["c-before", "c-during"]
        pairs = [(row["call_id"], row["seq"]) for row in dump["events"]]
        assert pairs == [(u.call_id, u.seq) for u in sorted(seen.updates, key=lambda u: u.call_id)]
        assert await store.get_call("c-during") == seen.updates[-1].record
        health = store.health()
        assert (health.state, health.queue_depth, health.dropped) == ("ok", 0, 0)
        messages = [record.getMessage() for record in caplog.records]
        assert any("CDR write failed" in m for m in messages)
        assert any("spilled to" in m for m in messages)
        assert any("replayed 8 call updates" in m for m in messages), messages
    finally:
        await store.aclose()


async def test_a_locked_sqlite_database_is_retried_then_spilled_and_replayed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "bridge.db"
    config = _config(tmp_path)
    store = await CallStore.open(sqlite_url(path) + "?timeout=0.05", config)
    store.start()
    seen = Collect()
    journal = _journal(store, seen)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        _whole_call(journal, "c-before")
        await _settle(store)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        _whole_call(journal, "c-locked", started=T0 + 100)
        assert "degraded" in await _settle(store, "down")
        assert "database is locked" in (store.health().last_error or "")
        assert store.health().spilled == 8
        locker.execute("ROLLBACK")
        await _settle(store, "ok")
        events = await store.call_events("c-locked")
        assert [event["seq"] for event in events] == list(range(1, 9))
        assert config.spill_file.read_bytes() == b""
    finally:
        locker.close()
        await store.aclose()


async def test_a_full_queue_spills_at_once_and_nothing_is_lost(db: Db, tmp_path: Path) -> None:
    config = _config(tmp_path, queue_size=3)
    store = await CallStore.open(db.url, config)  # the writer is not started yet
    seen = Collect()
    _whole_call(_journal(store, seen), "c-burst")
    health = store.health()
    assert (health.queue_depth, health.queue_capacity, health.spilled) == (3, 3, 5)
    assert health.state == "degraded"
    lines = config.spill_file.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [4, 5, 6, 7, 8]
    store.start()
    try:
        await _settle(store)
        assert [e["seq"] for e in await store.call_events("c-burst")] == list(range(1, 9))
        assert await store.get_call("c-burst") == seen.updates[-1].record
    finally:
        await store.aclose()


async def test_an_unwritable_spill_file_counts_dropped_updates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path, queue_size=1, spill_file=tmp_path / "spill-is-a-directory")
    store = await CallStore.open(sqlite_url(tmp_path / "bridge.db"), config)
    config.spill_file.mkdir()  # taken away after the start: appends now fail
    _begin_call(_journal(store), "c-lost")
    health = store.health()
    assert (health.queue_depth, health.dropped, health.spilled) == (1, 3, 0)
    assert "spill file" in (health.last_error or "")
    assert [r.levelname for r in caplog.records if "LOST" in r.getMessage()] == ["ERROR"]
    await store.aclose()
    with pytest.raises(CallStoreUnavailableError, match="spill-is-a-directory"):
        await CallStore.open(sqlite_url(tmp_path / "bridge.db"), config)


async def test_closing_writes_what_is_queued_and_later_updates_are_spilled(
    db: Db, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    store = await CallStore.open(db.url, config)  # never started: aclose writes the queue
    journal = _journal(store)
    record = _begin_call(journal, "c-close")
    await store.aclose()
    assert [e["seq"] for e in (await _dump(db.url))["events"]] == [1, 2, 3, 4]
    _finish_call(journal, record)  # after close: kept in the spill file for the next start
    assert len(config.spill_file.read_text().splitlines()) == 4
    store = await CallStore.open(db.url, config)
    store.start()
    try:
        await _settle(store)
        assert len(await store.call_events("c-close")) == 8
    finally:
        await store.aclose()


async def test_no_secret_reaches_the_spill_file_rows_or_logs(
    db: Db, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = _config(tmp_path, queue_size=1)
    store = await CallStore.open(db.url, config)
    record = _record("c-secret")
    sdes = _sdes_line()
    key = sdes.partition("inline:")[2]
    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----"
    for seq, detail in enumerate(
        [{"sdp": sdes}, {"cause": f"bad answer: {sdes}|2^20|1:4 (refused)"}, {"key": pem}], start=1
    ):
        store.call_update(
            CallUpdate(
                call_id="c-secret",
                seq=seq,
                at=T0 + seq,
                event="refused",
                detail=detail,
                record=record.as_dict(),
            )
        )
    assert store.health().spilled == 2
    spilled = config.spill_file.read_text()
    assert stat.S_IMODE(config.spill_file.stat().st_mode) == 0o600
    assert "[sdes key removed]" in spilled
    assert "[private key removed]" in spilled
    store.start()
    try:
        await _settle(store)
        events = await store.call_events("c-secret")
        assert [e["detail"] for e in events][:2] == [
            {"sdp": "a=crypto:1 AEAD_AES_128_GCM [sdes key removed]"},
            {"cause": "bad answer: a=crypto:1 AEAD_AES_128_GCM [sdes key removed] (refused)"},
        ]
    finally:
        await store.aclose()
    dump = json.dumps(await _dump(db.url), default=str)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for text_ in (spilled, dump, logs):
        assert "inline:" not in text_
        assert key not in text_
        assert key[:16] not in text_
        assert "MIGHAgEAMBMGByqGSM49" not in text_


async def test_health_of_a_new_store_is_ok(store: CallStore) -> None:
    assert store.health() == StoreHealth(
        state="ok", queue_depth=0, queue_capacity=1000, dropped=0, spilled=0, last_error=None
    )
