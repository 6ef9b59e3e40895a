"""The CDR database schema of :mod:`bridge.store` and its ordered migrations.

Theory of operation: four tables hold what the call journal reports, written only by
:class:`~bridge.store.CallStore`:

* ``calls``: the CDR, one row per call (``call_id``): direction, user, parties, trunk,
  times (UTC), end reason, SIP status, setup and talk durations in seconds (computed from
  the record's times), the codecs of both legs, ``end_to_end_encrypted``, the number of
  policy refusals, the latest record as JSON text (``record``), the ``seq`` of the update
  that wrote it (``last_seq``) and that update's time (``updated_at``).
* ``legs``: one row per call and leg name (``webrtc``, ``gateway``, ``pstn``) with the
  record's per-leg facts as queryable columns (TLS version and cipher, certificate
  verification, DTLS version, SRTP profile, SDES suite, ...), also stamped with ``seq``.
* ``call_events``: every update (``call_id``, ``seq`` unique together), its time, event
  name, detail (JSON) and whether it was the final one.
* ``policy_refusals``: each refusal on a call (``call_id``, ``idx`` in the record's list),
  with its ``reason``, so refusals can be counted by reason in SQL.

Rows are only ever written by :class:`Upserts` (``INSERT ... ON CONFLICT``, SQLite and
PostgreSQL): ``calls`` and ``legs`` rows are replaced only by a later ``seq``, events and
refusals are inserted once, so writing an update twice, or an old one after a newer one,
changes nothing. On SQLite, :func:`sqlite_connect` and :func:`sqlite_begin` make the
store's connections begin their transactions themselves (the driver would commit DDL on its
own), so a migration and its version row are committed together or not at all.
:func:`refused_value` tells a refused value (retrying cannot help) from an outage, and
:func:`describe_error` words an error without SQL parameters or row values.

The schema is versioned in its own table, ``cdr_schema_version`` (one row per applied
migration: ``version``, ``applied_at``, ``description``; the current version is the
highest), separate from the user store's ``schema_version``. :data:`MIGRATIONS` is the
ordered history; :func:`migrate` applies the missing ones inside the caller's transaction.

Adding a migration (say version 2, a new column): write ``_migrate_v2(conn)`` doing the
change with portable DDL (``conn.execute(text("ALTER TABLE legs ADD COLUMN x VARCHAR(64)"))``
or SQLAlchemy DDL constructs; data fixes with Core statements), append
``Migration(2, "legs.x", _migrate_v2)`` to :data:`MIGRATIONS`, and change the live table
definitions to match: the first migration that changes a table moves the live definitions
out of :func:`_define_v1` into their own function, because ``_define_v1`` must keep
creating exactly the version 1 tables so that a new database replays the whole history.
A database whose version is higher than the newest migration is refused by the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from ._cdr_rows import BatchRows

__all__ = [
    "CALLS",
    "EVENTS",
    "LEGS",
    "MIGRATIONS",
    "REFUSALS",
    "VERSION",
    "WRITE_TIMEOUT",
    "Migration",
    "Upserts",
    "describe_error",
    "latest_version",
    "migrate",
    "refused_value",
    "sqlite_begin",
    "sqlite_connect",
    "stored_version",
]


def _define_v1(metadata: MetaData) -> tuple[Table, Table, Table, Table]:
    """The version 1 tables (frozen: migration 1 creates exactly these)."""
    calls = Table(
        "calls",
        metadata,
        Column("call_id", String(128), primary_key=True),
        Column("direction", String(16)),
        Column("user_name", String(64)),
        Column("from_party", String(256)),
        Column("to_party", String(256)),
        Column("trunk", String(64)),
        Column("started_at", DateTime(timezone=True), index=True),
        Column("answered_at", DateTime(timezone=True)),
        Column("ended_at", DateTime(timezone=True), index=True),
        Column("end_reason", String(64), index=True),
        Column("sip_status", Integer),
        Column("setup_seconds", Double),
        Column("talk_seconds", Double),
        Column("webrtc_codec", String(64)),
        Column("gateway_codec", String(64)),
        Column("end_to_end_encrypted", Boolean),
        Column("policy_refusals", Integer, nullable=False),
        Column("last_seq", Integer, nullable=False),
        Column("record", Text, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    legs = Table(
        "legs",
        metadata,
        Column("call_id", String(128), ForeignKey("calls.call_id"), primary_key=True),
        Column("leg", String(16), primary_key=True),
        Column("seq", Integer, nullable=False),
        Column("encrypted", Boolean),
        Column("signaling_transport", String(16)),
        Column("tls_version", String(32)),
        Column("tls_cipher", String(128)),
        Column("peer_certificate_verified", Boolean),
        Column("peer_certificate_subject", String(512)),
        Column("mutual_tls", Boolean),
        Column("media_protocol", String(32)),
        Column("keying", String(16)),
        Column("dtls_version", String(32)),
        Column("dtls_cipher", String(128)),
        Column("dtls_role", String(16)),
        Column("srtp_profile", String(64)),
        Column("crypto_suite", String(64)),
        Column("keys_fresh", Boolean),
        Column("remote_fingerprint", String(256)),
        Column("fingerprint_matches_signaling", Boolean),
        Column("codec", String(64)),
        Column("peer", String(256)),
        Column("status", String(32)),
    )
    events = Table(
        "call_events",
        metadata,
        Column("call_id", String(128), ForeignKey("calls.call_id"), primary_key=True),
        Column("seq", Integer, primary_key=True),
        Column("at", Double, nullable=False),
        Column("event", String(32), nullable=False),
        Column("detail", JSON, nullable=False),
        Column("final", Boolean, nullable=False),
    )
    refusals = Table(
        "policy_refusals",
        metadata,
        Column("call_id", String(128), ForeignKey("calls.call_id"), primary_key=True),
        Column("idx", Integer, primary_key=True),
        Column("reason", String(64), nullable=False),
        Column("detail", Text),
        Column("at", DateTime(timezone=True)),
        Index("ix_policy_refusals_reason", "reason"),
    )
    return calls, legs, events, refusals


_LIVE = MetaData()
CALLS, LEGS, EVENTS, REFUSALS = _define_v1(_LIVE)
"""The tables as this code reads and writes them (the newest version)."""

VERSION = Table(
    "cdr_schema_version",
    MetaData(),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("description", String(200), nullable=False),
)
"""One row per applied migration; never migrated itself."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema's history.

    Attributes:
        version: the schema version after this step (1, 2, ... without gaps).
        description: what it changes (stored in ``cdr_schema_version``).
        apply: does the change on a synchronous connection inside the caller's
            transaction.
    """

    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_v1(conn: Connection) -> None:
    metadata = MetaData()
    _define_v1(metadata)
    metadata.create_all(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "calls, legs, call_events, policy_refusals", _create_v1),
)
"""The ordered history; append, never edit an applied step."""


def latest_version() -> int:
    """The version this code reads and writes (the last migration's)."""
    return MIGRATIONS[-1].version


def stored_version(conn: Connection) -> int:
    """The database's CDR schema version, 0 for a database without the CDR tables."""
    if not inspect(conn).has_table(VERSION.name):
        return 0
    version = conn.scalar(select(VERSION.c.version).order_by(VERSION.c.version.desc()).limit(1))
    return 0 if version is None else int(version)


def migrate(conn: Connection, current: int) -> list[int]:
    """Apply every migration after ``current``, recording each; returns their versions.

    Runs on a synchronous connection (``AsyncConnection.run_sync``) inside the caller's
    transaction: either every step and its record are committed, or none.
    """
    VERSION.create(conn, checkfirst=True)
    applied = []
    for step in MIGRATIONS:
        if step.version <= current:
            continue
        step.apply(conn)
        conn.execute(
            insert(VERSION).values(
                version=step.version, applied_at=datetime.now(UTC), description=step.description
            )
        )
        applied.append(step.version)
    return applied


class Upserts:
    """The dialect's upserts: rows replaced only by a later ``seq``, events written once."""

    def __init__(self, dialect: str) -> None:
        self.calls = self._upsert(dialect, CALLS, ("call_id",), "last_seq")
        self.legs = self._upsert(dialect, LEGS, ("call_id", "leg"), "seq")
        self.events = self._insert(dialect, EVENTS).on_conflict_do_nothing(
            index_elements=["call_id", "seq"]
        )
        self.refusals = self._insert(dialect, REFUSALS).on_conflict_do_nothing(
            index_elements=["call_id", "idx"]
        )

    async def write(self, conn: AsyncConnection, rows: BatchRows) -> None:
        """Write a batch's rows (calls first: the other tables refer to them)."""
        for statement, values in (
            (self.calls, rows.calls),
            (self.legs, rows.legs),
            (self.events, rows.events),
            (self.refusals, rows.refusals),
        ):
            if values:
                await conn.execute(statement, values)

    @staticmethod
    def _insert(dialect: str, table: Table) -> Any:
        return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)

    def _upsert(self, dialect: str, table: Table, keys: tuple[str, ...], guard: str) -> Any:
        statement = self._insert(dialect, table)
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={
                column.name: excluded[column.name] for column in table.c if column.name not in keys
            },
            where=table.c[guard] < excluded[guard],
        )


def sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Foreign keys on; the driver's own BEGIN off (see :func:`sqlite_begin`)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sqlite_begin(conn: Any) -> None:
    """Begin every transaction ourselves, so that DDL (migrations) is transactional too."""
    conn.exec_driver_sql("BEGIN")


WRITE_TIMEOUT = 30.0
"""Seconds one batch write may take before it counts as failed."""


def refused_value(exc: BaseException) -> bool:
    """Whether the database or its driver refused a value (retrying cannot help): SQLSTATE
    classes 22 (data) and 23 (integrity), or a value the driver could not bind."""
    bad_value = OverflowError | ValueError | TypeError
    if isinstance(exc, DataError | IntegrityError | bad_value):
        return True
    if not isinstance(exc, StatementError) or exc.orig is None:
        return False
    orig = exc.orig
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    return (
        isinstance(orig, bad_value)
        or isinstance(orig.__cause__, bad_value)
        or (sqlstate[:2] in ("22", "23"))
    )


def describe_error(exc: BaseException) -> str:
    """What went wrong, in the driver's words, never with SQL parameters or row values."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {WRITE_TIMEOUT:.0f} s"
    orig = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    driver = orig.__cause__ or orig  # the driver's own error under SQLAlchemy's adapter
    name = type(driver).__name__
    if refused_value(exc):  # driver messages may quote the refused value
        sqlstate = getattr(orig, "sqlstate", None)
        return f"{name}{f' (SQLSTATE {sqlstate})' if sqlstate else ''}: a value was refused"
    if isinstance(driver, OSError) and driver.strerror:
        return driver.strerror
    message = str(driver).strip().splitlines()
    return f"{name}: {message[0][:200]}" if message else name
