"""Shared by the CDR store tests: databases, store fixtures, calls fed through a journal.

``db`` is parametrised: an empty SQLite file, and an empty database of the session's real
PostgreSQL cluster (``tests/postgres.py``; a machine without PostgreSQL fails the tests,
never skips them). Calls are fed the way the bridge feeds them: real
:class:`~bridge.security.SecurityRecord` objects reported through a real
:class:`~bridge.call.journal.Journal` with the store as a sink; the gateway leg's SDES keys
are made for each call (so the suite-wide leak scan knows them) and never given to the
store. The rows are read back with a connection of the test's own.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from bridge._store_schema import CALLS, EVENTS, LEGS, REFUSALS
from bridge.call.journal import CallUpdate, Journal
from bridge.media.webrtc_leg import DtlsFacts
from bridge.security import SecurityRecord
from bridge.store import CallStore, StoreConfig
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


def store_config(tmp_path: Path, **kwargs: Any) -> StoreConfig:
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
    opened = await CallStore.open(db.url, store_config(tmp_path))
    opened.start()
    yield opened
    await opened.aclose()


class Collect:
    """A sink that keeps every update (what the store was given)."""

    def __init__(self) -> None:
        self.updates: list[CallUpdate] = []

    def call_update(self, update: CallUpdate) -> None:
        self.updates.append(update)


def new_journal(*sinks: Any) -> Journal:
    clock = itertools.count(T0, 0.25)
    return Journal(sinks=list(sinks), clock=lambda: next(clock))


def tls_info(*, client: bool) -> TlsSessionInfo:
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


def new_record(call_id: str, started: float = T0) -> SecurityRecord:
    record = SecurityRecord(
        call_id=call_id,
        direction="outbound",
        from_party="alice",
        to_party="+441632960123",
        started_at=started,
        webrtc_tls=tls_info(client=False),
    )
    record.user, record.trunk = "alice", "sim"
    return record


def begin_call(journal: Journal, call_id: str, started: float = T0) -> SecurityRecord:
    """started, dialing, gateway leg-up, ringing: a call that is not answered yet."""
    record = new_record(call_id, started)
    journal.report(record, "started", {"direction": "outbound", "user": "alice"})
    journal.report(record, "dialing")
    record.gateway_peer = "127.0.0.1:5061"
    record.gateway_tls = tls_info(client=True)
    sdes_line()  # the gateway leg's keys, made for this call as the bridge makes them
    record.gateway_suite, record.gateway_keys_fresh = "AEAD_AES_128_GCM", True
    record.gateway_codec = "PCMU/8000"
    journal.report(record, "leg-up", {"leg": "gateway"})
    journal.report(record, "ringing")
    return record


def sdes_line() -> str:
    """A fresh SDES ``a=crypto`` line (the suite-wide leak scan learns its key)."""
    attribute = CryptoAttribute.create(tag=1, suite="AEAD_AES_128_GCM", key_salt=os.urandom(28))
    return f"a=crypto:{attribute}"


def finish_call(journal: Journal, record: SecurityRecord, talk: float = 60.0) -> None:
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


def whole_call(journal: Journal, call_id: str, started: float = T0) -> None:
    finish_call(journal, begin_call(journal, call_id, started))


def refused_call(journal: Journal, call_id: str, reasons: Iterable[str]) -> None:
    """A refused attempt, as the orchestrator reports one (no PSTN legs)."""
    record = new_record(call_id)
    record.reaches_pstn = False
    for reason in reasons:
        record.refuse(reason, f"refused by policy {reason}")
    journal.report(record, "started", {"direction": "outbound", "user": "alice"})
    journal.report(record, "refused", {"reason": record.policy_refusals[0].reason, "status": 488})
    record.freeze("encryption-required", 488)
    journal.report(record, "ended", {"reason": "encryption-required"})


async def settle(store: CallStore, state: str = "ok", timeout: float = 15.0) -> list[str]:  # noqa: ASYNC109
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


async def read_table(url: str, table: Any, order: Iterable[str]) -> list[dict[str, Any]]:
    """Every row of ``table`` read with a connection of the test's own."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(table).order_by(*(table.c[name] for name in order))
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]
    finally:
        await engine.dispose()


async def dump_tables(url: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "calls": await read_table(url, CALLS, ["call_id"]),
        "legs": await read_table(url, LEGS, ["call_id", "leg"]),
        "events": await read_table(url, EVENTS, ["call_id", "seq"]),
        "refusals": await read_table(url, REFUSALS, ["call_id", "idx"]),
    }


def utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
