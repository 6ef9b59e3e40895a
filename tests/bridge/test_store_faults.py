"""The CDR store under faults: PostgreSQL stopped mid-call, SQLite locked, a full queue,
an unwritable spill file, closing with updates queued, and secrets fed in details.

The faults are real: ``pg_ctl stop -m fast`` on the session's PostgreSQL cluster while
updates arrive (then ``pg_ctl start``), and a SQLite file held by another connection's
``BEGIN EXCLUSIVE``. Only the spill file taken away (a directory where the file should be)
stands for a disk that refuses writes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
from pathlib import Path

import pytest

from bridge.call.journal import CallUpdate
from bridge.store import CallStore, CallStoreUnavailableError
from bridge.users import sqlite_url
from tests.bridge.store_support import (
    T0,
    Collect,
    Db,
    begin_call,
    db,
    dump_tables,
    finish_call,
    new_journal,
    new_record,
    sdes_line,
    settle,
    store_config,
    whole_call,
)
from tests.postgres import PostgresServer

__all__ = ["db"]  # fixtures


# -- faults ----------------------------------------------------------------------------


async def test_postgres_outage_is_buffered_spilled_and_replayed(
    postgres_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.store")
    url = await postgres_server.new_database()
    config = store_config(tmp_path, retry_initial=0.3, retry_max=0.5)
    store = await CallStore.open(url, config)
    store.start()
    seen = Collect()
    journal = new_journal(store, seen)
    try:
        whole_call(journal, "c-before")
        await settle(store)
        postgres_server.stop()
        try:
            call = begin_call(journal, "c-during", started=T0 + 100)
            assert store.health().queue_depth == 4  # taken without waiting for the database
            states = await settle(store, "down")
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
            finish_call(journal, call)  # while down: straight to the spill file
            await settle(store, "down")
            assert store.health().spilled == 8
        finally:
            postgres_server.start()
        assert await settle(store, "ok") == ["down", "ok"]
        assert config.spill_file.read_bytes() == b""
        dump = await dump_tables(url)
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
    config = store_config(tmp_path)
    store = await CallStore.open(sqlite_url(path) + "?timeout=0.05", config)
    store.start()
    seen = Collect()
    journal = new_journal(store, seen)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        whole_call(journal, "c-before")
        await settle(store)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        whole_call(journal, "c-locked", started=T0 + 100)
        assert "degraded" in await settle(store, "down")
        assert "database is locked" in (store.health().last_error or "")
        assert store.health().spilled == 8
        locker.execute("ROLLBACK")
        await settle(store, "ok")
        events = await store.call_events("c-locked")
        assert [event["seq"] for event in events] == list(range(1, 9))
        assert config.spill_file.read_bytes() == b""
    finally:
        locker.close()
        await store.aclose()


async def test_a_full_queue_spills_at_once_and_nothing_is_lost(db: Db, tmp_path: Path) -> None:
    config = store_config(tmp_path, queue_size=3)
    store = await CallStore.open(db.url, config)  # the writer is not started yet
    seen = Collect()
    whole_call(new_journal(store, seen), "c-burst")
    health = store.health()
    assert (health.queue_depth, health.queue_capacity, health.spilled) == (3, 3, 5)
    assert health.state == "degraded"
    lines = config.spill_file.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [4, 5, 6, 7, 8]
    store.start()
    try:
        await settle(store)
        assert [e["seq"] for e in await store.call_events("c-burst")] == list(range(1, 9))
        assert await store.get_call("c-burst") == seen.updates[-1].record
    finally:
        await store.aclose()


async def test_an_unwritable_spill_file_counts_dropped_updates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = store_config(tmp_path, queue_size=1, spill_file=tmp_path / "spill-is-a-directory")
    store = await CallStore.open(sqlite_url(tmp_path / "bridge.db"), config)
    config.spill_file.mkdir()  # taken away after the start: appends now fail
    begin_call(new_journal(store), "c-lost")
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
    config = store_config(tmp_path)
    store = await CallStore.open(db.url, config)  # never started: aclose writes the queue
    journal = new_journal(store)
    record = begin_call(journal, "c-close")
    await store.aclose()
    assert [e["seq"] for e in (await dump_tables(db.url))["events"]] == [1, 2, 3, 4]
    finish_call(journal, record)  # after close: kept in the spill file for the next start
    assert len(config.spill_file.read_text().splitlines()) == 4
    store = await CallStore.open(db.url, config)
    store.start()
    try:
        await settle(store)
        assert len(await store.call_events("c-close")) == 8
    finally:
        await store.aclose()


async def test_no_secret_reaches_the_spill_file_rows_or_logs(
    db: Db, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = store_config(tmp_path, queue_size=1)
    store = await CallStore.open(db.url, config)
    record = new_record("c-secret")
    sdes = sdes_line()
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
        await settle(store)
        events = await store.call_events("c-secret")
        assert [e["detail"] for e in events][:2] == [
            {"sdp": "a=crypto:1 AEAD_AES_128_GCM [sdes key removed]"},
            {"cause": "bad answer: a=crypto:1 AEAD_AES_128_GCM [sdes key removed] (refused)"},
        ]
    finally:
        await store.aclose()
    dump = json.dumps(await dump_tables(db.url), default=str)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for text_ in (spilled, dump, logs):
        assert "inline:" not in text_
        assert key not in text_
        assert key[:16] not in text_
        assert "MIGHAgEAMBMGByqGSM49" not in text_


async def test_a_row_the_database_refuses_is_set_aside_and_the_rest_written(
    db: Db, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = store_config(tmp_path)
    store = await CallStore.open(db.url, config)
    good = new_record("c-good").as_dict()
    bad = new_record("c-bad").as_dict() | {"sip_status": 2**70}  # no database holds it
    for call_id, seq, record in (("c-good", 1, good), ("c-bad", 1, bad), ("c-good", 2, good)):
        store.call_update(
            CallUpdate(call_id=call_id, seq=seq, at=T0, event="started", detail={}, record=record)
        )
    store.start()  # the three updates are one batch: the bad one must not hold up the others
    try:
        await settle(store)
        assert [e["seq"] for e in await store.call_events("c-good")] == [1, 2]
        assert await store.get_call("c-bad") is None
        health = store.health()
        assert (health.state, health.rejected, health.dropped, health.spilled) == ("ok", 1, 0, 0)
        rejected = config.spill_file.with_name(config.spill_file.name + ".rejected")
        (line,) = rejected.read_text().splitlines()
        assert json.loads(line)["call_id"] == "c-bad"
        assert stat.S_IMODE(rejected.stat().st_mode) == 0o600
        assert any("refused 1 call updates" in r.getMessage() for r in caplog.records)
        assert str(2**70) not in caplog.text  # driver messages quoting the value are not logged
    finally:
        await store.aclose()
