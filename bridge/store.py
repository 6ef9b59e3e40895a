"""Call detail records: every call update, written to a SQL database without blocking calls.

Theory of operation: :class:`CallStore` is a :class:`~bridge.call.journal.CallSink`. Its
:meth:`~CallStore.call_update` only puts the update on a bounded queue; one writer task
(:meth:`~CallStore.start`) takes what is queued in batches and writes each batch in one
transaction through SQLAlchemy 2 Core (async): SQLite through aiosqlite by default (the
bridge's ``<var_dir>/bridge.db``, shared with the user store), PostgreSQL through asyncpg
for a ``postgresql+asyncpg://`` URL. The tables, their upsert rules and the schema's
migration path are in :mod:`bridge._store_schema`; how an update becomes rows (and how
secrets are scrubbed from it first) is in :mod:`bridge._cdr_rows`. Every write is an
idempotent upsert guarded by the update's ``seq``, so an update may be written any number
of times, in any order, with the same result.

When the database fails, the writer logs the error (rate-limited; driver messages only,
the engine hides SQL parameters), marks the store ``degraded`` and retries the batch with
capped exponential back-off (``retry_initial`` doubling up to ``retry_max``). A batch that
still fails after ``max_retries`` retries goes to the spill file
(:mod:`bridge._cdr_spill`, JSON lines, mode 0600) and the store is ``down``: later batches
get one attempt each, at most once per back-off interval, and are spilled when it fails.
An update that finds the queue full is spilled at once; it is counted as dropped (and
logged) only when the spill file cannot be written either. After a successful write, and
at start-up, the spill file is replayed into the database and emptied; ``degraded`` lasts
until it is. A value the database refuses (SQLSTATE 22/23, or one its driver cannot bind)
is not an outage: the batch is written update by update and a refused update is set aside
in ``<spill_file>.rejected`` (counted, logged without the value) so it cannot hold up the
rest. :meth:`CallStore.aclose` lets the writer finish (bounded), writes what is left
once and spills whatever the database does not take.

Errors::

    CallStoreError
    +-- CallStoreUnavailableError  the database cannot be opened, read or written
    +-- CallSchemaVersionError     the database has a newer CDR schema than this code
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sip_gateway.tls import TlsClientConfig, TlsPolicyError

from . import _cdr_reads as reads
from ._cdr_rows import batch_rows, stored_form, stored_line
from ._cdr_spill import SpillFile
from ._store_schema import (
    WRITE_TIMEOUT,
    Upserts,
    describe_error,
    latest_version,
    migrate,
    refused_value,
    sqlite_begin,
    sqlite_connect,
    stored_version,
)
from .call.journal import CallUpdate
from .dbtls import StoreTlsError, engine_options

__all__ = [
    "CallSchemaVersionError",
    "CallStore",
    "CallStoreError",
    "CallStoreUnavailableError",
    "StoreConfig",
    "StoreHealth",
]

log = logging.getLogger("bridge.store")

# aiosqlite logs every statement with its parameters at DEBUG; its records stop at INFO.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

_SCHEMA_ATTEMPTS = 3


class CallStoreError(Exception):
    """Base class of the CDR store's errors (see the module docstring)."""


class CallStoreUnavailableError(CallStoreError):
    """The database cannot be opened, read or written (the message has no SQL values)."""


class CallSchemaVersionError(CallStoreError):
    """The database holds a newer CDR schema than this pstn-bridge knows."""


class _RowRefusedError(CallStoreUnavailableError):
    """The database refused a row's values: writing the same rows again cannot help."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """How the CDR store buffers, retries and spills (built from ``[store]``)."""

    spill_file: Path
    """Where updates the database could not take are kept (JSON lines, mode 0600)."""
    queue_size: int = 1000
    """Updates waiting for the writer; one more is spilled at once."""
    max_retries: int = 5
    """Retries of a failing batch before it is spilled."""
    retry_initial: float = 0.5
    """Seconds before the first retry; doubled for each further one."""
    retry_max: float = 30.0
    """Longest wait between retries, and between attempts while the store is down."""
    batch_size: int = 200
    """Most updates written in one transaction."""
    close_timeout: float = 5.0
    """Seconds :meth:`CallStore.aclose` waits for the writer, and for its last write."""
    warn_interval: float = 10.0
    """Seconds between two log lines about the same trouble (the rest are counted)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreHealth:
    """The store's state for health checks and metrics.

    Attributes:
        state: ``ok``; ``degraded`` (writes failing and being retried, or spilled updates
            waiting to be replayed); ``down`` (retries exhausted: updates go to the spill
            file until the database takes writes again).
        queue_depth: updates waiting for the writer.
        queue_capacity: the queue's bound (``queue_size``).
        dropped: updates lost because neither the database nor the spill file took them.
        spilled: updates written to the spill file since the store opened.
        last_error: the most recent database or spill-file error (kept after recovery).
        rejected: updates whose rows the database refused (a value it cannot hold); kept
            in ``<spill_file>.rejected`` for a person to look at, never retried.
    """

    state: Literal["ok", "degraded", "down"]
    queue_depth: int
    queue_capacity: int
    dropped: int
    spilled: int
    last_error: str | None
    rejected: int = 0


class CallStore:
    """The CDR store; create with :meth:`open`, then :meth:`start`; :meth:`aclose` at the end."""

    def __init__(
        self,
        engine: AsyncEngine,
        config: StoreConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wrap an engine with the schema in place; prefer :meth:`open`."""
        self._engine = engine
        self._config = config
        self._clock = clock
        self._upserts = Upserts(engine.dialect.name)
        self._queue: asyncio.Queue[CallUpdate] = asyncio.Queue(config.queue_size)
        self._spill_file = SpillFile(config.spill_file)
        self._rejected_file = SpillFile(
            config.spill_file.with_name(config.spill_file.name + ".rejected")
        )
        self._spill_pending = self._spill_file.size() > 0
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[dict[str, Any]] = []
        self._closed = False
        self._failing = False
        self._down = False
        self._probe_at = 0.0
        self._probe_delay = config.retry_initial
        self._dropped = 0
        self._spilled = 0
        self._rejected = 0
        self._last_error: str | None = None
        self._warned: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"CallStore({url!r}, state={self.health().state!r})"

    @classmethod
    async def open(
        cls, url: str, config: StoreConfig, *, tls: TlsClientConfig | None = None
    ) -> CallStore:
        """Connect to the database at ``url`` and bring its CDR schema up to date.

        A SQLite file's directory is created when missing. A damaged last line of a
        leftover spill file is ended so that new lines stay readable.

        Raises:
            CallStoreUnavailableError: the URL is not usable or the database cannot be used.
            CallSchemaVersionError: the database has a newer CDR schema.
        """
        try:
            parsed = make_url(url)
            engine = create_async_engine(
                parsed, hide_parameters=True, **engine_options(parsed, tls)
            )
        except StoreTlsError as exc:
            raise CallStoreUnavailableError(str(exc)) from None
        except TlsPolicyError as exc:
            raise CallStoreUnavailableError(f"store.ca_file: {exc}") from None
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise CallStoreUnavailableError(
                f"store URL is not usable ({type(exc).__name__}); expected "
                "sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/database"
            ) from None
        if engine.dialect.name not in ("sqlite", "postgresql"):
            await engine.dispose()
            raise CallStoreUnavailableError(
                f"the CDR store supports SQLite and PostgreSQL, not {engine.dialect.name}"
            )
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", sqlite_connect)
            event.listen(engine.sync_engine, "begin", sqlite_begin)
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        store = cls(engine, config)
        try:
            store._spill_file.repair()
            await store._migrate()
        except OSError as exc:
            await engine.dispose()
            raise CallStoreUnavailableError(
                f"spill file {config.spill_file}: {exc.strerror or exc}"
            ) from None
        except BaseException:
            await engine.dispose()
            raise
        return store

    def start(self) -> None:
        """Start the writer task (it first replays a leftover spill file)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cdr writer")

    def call_update(self, update: CallUpdate) -> None:
        """Queue one update for the writer; never blocks (see the module docstring)."""
        if self._closed:
            self._spill([stored_form(update)], "the CDR store is closed")
            return
        try:
            self._queue.put_nowait(update)
        except asyncio.QueueFull:
            self._spill([stored_form(update)], "the CDR write queue is full")

    def health(self) -> StoreHealth:
        """The store's current state (see :class:`StoreHealth`)."""
        state: Literal["ok", "degraded", "down"] = "ok"
        if self._down:
            state = "down"
        elif self._failing or self._spill_pending:
            state = "degraded"
        return StoreHealth(
            state=state,
            queue_depth=self._queue.qsize(),
            queue_capacity=self._config.queue_size,
            dropped=self._dropped,
            spilled=self._spilled,
            last_error=self._last_error,
            rejected=self._rejected,
        )

    async def drain(self) -> None:
        """Wait until every queued update was written or spilled (the writer must run)."""
        await self._queue.join()

    async def aclose(self) -> None:
        """Stop the writer, write what is left once, spill the rest, close the database."""
        if self._closed:
            return
        self._closed = True
        limit = self._config.close_timeout
        if self._task is not None:
            if not self._down:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(limit):
                        await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        rest = self._inflight + [stored_form(update) for update in self._take_queued()]
        self._inflight = []
        try:
            async with asyncio.timeout(limit):
                if rest:
                    await self._write_sorting(rest)
                    rest = []
                if self._spill_pending:
                    await self._replay()
        except (CallStoreUnavailableError, TimeoutError) as exc:
            self._note_failure(str(exc) or "timed out")
        if rest:
            self._spill(rest, "the CDR store is closing and the database did not take them")
        await self._engine.dispose()

    # -- reads -------------------------------------------------------------------------

    async def list_calls(
        self, *, active: bool | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Call records (DESIGN section 4), newest start first.

        Args:
            active: True for calls without an end, False for ended ones, None for both.
            since: only calls that started at or after this time (naive means UTC).
            limit: at most this many (1 or more).

        Raises:
            ValueError: ``limit`` is below 1.
            CallStoreUnavailableError: the database cannot be read.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        async with self._transaction() as conn:
            return await reads.list_calls(conn, active=active, since=since, limit=limit)

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The latest record of ``call_id``, or None when the store has no such call.

        Raises:
            CallStoreUnavailableError: the database cannot be read.
        """
        async with self._transaction() as conn:
            return await reads.get_call(conn, call_id)

    async def call_events(self, call_id: str) -> list[dict[str, Any]]:
        """The call's updates (``CallUpdate.as_dict()`` form) in ``seq`` order.

        Raises:
            CallStoreUnavailableError: the database cannot be read.
        """
        async with self._transaction() as conn:
            return await reads.call_events(conn, call_id)

    async def call_legs(self, call_id: str) -> list[dict[str, Any]]:
        """The ``legs`` rows of a call (webrtc, gateway, pstn), column name to value.

        Raises:
            CallStoreUnavailableError: the database cannot be read.
        """
        async with self._transaction() as conn:
            return await reads.call_legs(conn, call_id)

    async def refusal_counts(self) -> dict[str, int]:
        """How many policy refusals the store holds, by reason.

        Raises:
            CallStoreUnavailableError: the database cannot be read.
        """
        async with self._transaction() as conn:
            return await reads.refusal_counts(conn)

    # -- the writer --------------------------------------------------------------------

    async def _run(self) -> None:
        updates: list[CallUpdate] = []  # the first round replays a leftover spill file
        while True:
            try:
                if updates:
                    await self._store(updates)
                elif self._spill_pending:
                    await self._replay()
            except Exception:
                log.exception("CDR writer: unexpected error; the batch goes to the spill file")
                self._spill(self._inflight, "the CDR writer failed")
                self._inflight = []
                self._probe_at = self._clock() + self._config.retry_max
            finally:
                for _ in updates:
                    self._queue.task_done()
            updates = await self._take()

    async def _take(self) -> list[CallUpdate]:
        """The next batch; empty when a spill replay is due before anything arrives."""
        timeout = None
        if self._spill_pending:
            timeout = max(0.0, self._probe_at - self._clock())
        try:
            async with asyncio.timeout(timeout):
                first = await self._queue.get()
        except TimeoutError:
            return []
        return [first, *self._take_queued(self._config.batch_size - 1)]

    def _take_queued(self, most: int | None = None) -> list[CallUpdate]:
        taken: list[CallUpdate] = []
        while most is None or len(taken) < most:
            try:
                taken.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return taken

    async def _store(self, updates: list[CallUpdate]) -> None:
        """Write one batch with retries; spill it when the database does not take it."""
        stored = [stored_form(update) for update in updates]
        self._inflight = stored
        if self._down and self._clock() < self._probe_at:
            self._spill(stored, "the CDR database is down")
        elif await self._write_retrying(stored):
            if self._spill_pending:
                await self._replay()
        else:
            self._spill(stored, f"the CDR database failed {self._config.max_retries + 1} times")
        self._inflight = []

    async def _write_retrying(self, stored: list[dict[str, Any]]) -> bool:
        attempts = 1 if self._down else 1 + self._config.max_retries
        delay = self._config.retry_initial
        for attempt in range(attempts):
            try:
                await self._write_sorting(stored)
            except CallStoreUnavailableError as exc:
                self._note_failure(str(exc))
                if attempt + 1 < attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._config.retry_max)
                continue
            self._note_success()
            return True
        self._go_down()
        return False

    async def _write(self, stored: list[dict[str, Any]]) -> None:
        """Write a batch of stored updates in one transaction.

        Raises:
            CallStoreUnavailableError: the database did not take it (nothing was written).
        """
        rows = batch_rows(stored)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT), self._engine.begin() as conn:
                await self._upserts.write(conn, rows)
        except (SQLAlchemyError, OSError, OverflowError, ValueError, TypeError) as exc:
            error = _RowRefusedError if refused_value(exc) else CallStoreUnavailableError
            raise error(f"CDR database: {describe_error(exc)}") from None

    async def _write_sorting(self, stored: list[dict[str, Any]]) -> None:
        """Write a batch; when a row is refused, write its updates one by one and set aside
        (:meth:`_reject`) those refused, so that one bad value cannot hold up the rest.

        Raises:
            CallStoreUnavailableError: the database cannot be written at all.
        """
        try:
            await self._write(stored)
        except _RowRefusedError as exc:
            if len(stored) == 1:
                self._reject(stored, str(exc))
                return
            for update in stored:
                try:
                    await self._write([update])
                except _RowRefusedError as refused:
                    self._reject([update], str(refused))

    async def _replay(self) -> None:
        """Write the spill file's updates into the database, then empty it."""
        end = self._spill_file.size()
        if end == 0:
            self._spill_pending = False
            return
        replayed = 0
        try:
            for chunk in self._spill_file.read(end, self._config.batch_size):
                await self._write_sorting(chunk)
                replayed += len(chunk)
            self._spill_file.discard_through(end)
        except CallStoreUnavailableError as exc:
            self._note_failure(str(exc))
            self._go_down()
            return
        except OSError as exc:
            self._note_failure(f"spill file {self._spill_file.path}: {exc.strerror or exc}")
            self._probe_at = self._clock() + self._config.retry_max
            return
        self._spill_pending = self._spill_file.size() > 0
        self._note_success()
        if replayed:
            log.info("CDR: replayed %d call updates from %s", replayed, self._spill_file.path)

    def _spill(self, stored: list[dict[str, Any]], why: str) -> None:
        if stored and self._keep(self._spill_file, stored, why):
            self._spilled += len(stored)
            self._spill_pending = True
            path = self._spill_file.path
            self._warn("spilled", "CDR: %d call updates spilled to %s (%s)", len(stored), path, why)

    def _reject(self, stored: list[dict[str, Any]], error: str) -> None:
        self._last_error = error
        if self._keep(self._rejected_file, stored, error):
            self._rejected += len(stored)
            path, level = self._rejected_file.path, logging.ERROR
            message = "CDR: the database refused %d call updates (%s); kept in %s"
            self._warn("rejected", message, len(stored), error, path, level=level)

    def _keep(self, spill: SpillFile, stored: list[dict[str, Any]], why: str) -> bool:
        """Append to a spill file; when it cannot be written the updates are lost: counted."""
        try:
            spill.append([stored_line(update) for update in stored])
        except OSError as exc:
            self._dropped += len(stored)
            self._last_error = f"spill file {spill.path}: {exc.strerror or exc}"
            message = "CDR: %d call updates LOST (%s; %s)"
            self._warn("dropped", message, len(stored), why, self._last_error, level=logging.ERROR)
            return False
        return True

    def _note_failure(self, error: str) -> None:
        self._failing = True
        self._last_error = error
        self._warn("failed", "CDR write failed, buffering and retrying: %s", error)

    def _note_success(self) -> None:
        if self._failing or self._down:
            log.info("CDR database writable again")
        self._failing = False
        self._down = False
        self._probe_delay = self._config.retry_initial

    def _go_down(self) -> None:
        self._down = True
        self._probe_at = self._clock() + self._probe_delay
        self._probe_delay = min(self._probe_delay * 2, self._config.retry_max)

    def _warn(self, key: str, message: str, *args: object, level: int = logging.WARNING) -> None:
        """Log at most one line per ``warn_interval`` for each kind of trouble."""
        now = self._clock()
        last = self._warned.get(key)
        if last is not None and now - last < self._config.warn_interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._warned[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        log.log(level, message, *args)

    # -- schema and connections --------------------------------------------------------

    async def _migrate(self) -> None:
        """Apply missing migrations in one transaction; retried when a concurrent start won."""
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                async with self._transaction() as conn:
                    current = await conn.run_sync(stored_version)
                    if current > latest_version():
                        raise CallSchemaVersionError(
                            f"the CDR tables have schema version {current}, newer than this "
                            f"pstn-bridge, which knows up to {latest_version()}; use a newer "
                            "pstn-bridge or another database"
                        )
                    applied = await conn.run_sync(migrate, current)
            except CallStoreUnavailableError:
                if attempt == _SCHEMA_ATTEMPTS - 1:
                    raise
                continue
            if applied:
                log.info("CDR schema migrated to version %d", applied[-1])
            return

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; database errors become :class:`CallStoreUnavailableError`."""
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise CallStoreUnavailableError(f"CDR database: {describe_error(exc)}") from None
