"""Browser users: names, digest HA1s and the DIDs they answer, in a SQL database.

Theory of operation: :class:`UserStore` keeps three tables through SQLAlchemy 2 Core
(async; SQLite through aiosqlite by default, any SQLAlchemy async URL such as
``postgresql+asyncpg://`` later, so only portable Core constructs are used):

* ``users``: ``name`` (primary key), ``realm``, ``ha1_md5``, ``ha1_sha256``,
  ``created_at`` (UTC), ``disabled``. The password itself is never stored, logged or kept:
  only HA1 = H(name:realm:password) for MD5 and SHA-256 (RFC 8760), which is all a digest
  server needs. An HA1 is password-equivalent for its realm, so the database must be
  protected like a password file; changing the realm invalidates every HA1.
* ``dids``: ``did`` (primary key, E.164 ``+digits``) and ``user_name`` (foreign key to
  ``users.name``; not ``user``, a reserved word in PostgreSQL and the SQL standard).
* ``schema_version``: one row. :meth:`UserStore.open` creates missing tables, inserts the
  version into a new database and refuses (:class:`SchemaVersionError`) a database written
  by another schema version instead of guessing.

The digest server's :data:`~sip_gateway.sip.auth.Ha1Lookup` is synchronous, so the bridge
answers from :class:`Ha1Cache`, an in-memory snapshot refreshed from the store
(:meth:`Ha1Cache.refresh`, and :meth:`Ha1Cache.run_refresh` as a background task) so that
``pstn-bridge user add`` in another process takes effect on a running bridge within one
refresh interval. Disabled users are left out of the snapshot.

Errors (messages name users and DIDs, never a password or HA1; the engine is created with
``hide_parameters`` so SQLAlchemy's own messages do not carry bound values either)::

    UserStoreError
    +-- StoreUnavailableError  the database cannot be opened or used
    +-- SchemaVersionError     the database was written by another schema version
    +-- InvalidUserError       a name, password or DID is not acceptable
    +-- UserExistsError        add_user: the name is taken
    +-- UnknownUserError       remove_user, set_password, set_disabled: no such user
    +-- DidTakenError          add_user: a DID already belongs to someone
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sip_gateway.sip.auth import DigestAlgorithm, compute_ha1
from sip_gateway.tls import TlsClientConfig, TlsPolicyError
from sip_gateway.trunk import normalize_e164
from sip_gateway.trunk.errors import InvalidNumberError

from .dbtls import engine_options

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "SCHEMA_VERSION",
    "DidTakenError",
    "Ha1Cache",
    "InvalidUserError",
    "SchemaVersionError",
    "StoreUnavailableError",
    "UnknownUserError",
    "UserExistsError",
    "UserHa1",
    "UserInfo",
    "UserStore",
    "UserStoreError",
    "ensure_demo_user",
    "generate_password",
    "sqlite_url",
]

log = logging.getLogger("bridge.users")

# aiosqlite logs every statement WITH its parameters at DEBUG: HA1 values would reach the
# log of a bridge run with log.level = DEBUG. Its records stop at INFO whatever the level.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

SCHEMA_VERSION = 1
"""The schema this code reads and writes."""
MIN_PASSWORD_LENGTH = 8
"""Shortest password accepted: a browser account can place PSTN calls (toll fraud)."""
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SCHEMA_ATTEMPTS = 3

_METADATA = MetaData()
_USERS = Table(
    "users",
    _METADATA,
    Column("name", String(64), primary_key=True),
    Column("realm", String(128), nullable=False),
    Column("ha1_md5", String(32), nullable=False),
    Column("ha1_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled", Boolean, nullable=False),
)
_DIDS = Table(
    "dids",
    _METADATA,
    Column("did", String(16), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name"), nullable=False, index=True),
)
_SCHEMA_VERSION = Table(
    "schema_version",
    _METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one row
    Column("version", Integer, nullable=False),
)


class UserStoreError(Exception):
    """Base class of the user store's errors (see the module docstring)."""


class StoreUnavailableError(UserStoreError):
    """The database cannot be opened or used (bad URL, unreadable file, lost connection)."""


class SchemaVersionError(UserStoreError):
    """The database was written by a schema version this code does not know."""


class InvalidUserError(UserStoreError):
    """A user name, password or DID is not acceptable."""


class UserExistsError(UserStoreError):
    """A user of that name already exists."""


class UnknownUserError(UserStoreError):
    """There is no user of that name."""


class DidTakenError(UserStoreError):
    """A DID already belongs to a user.

    Attributes:
        did: the DID (E.164).
        owner: the user it belongs to.
    """

    def __init__(self, did: str, owner: str) -> None:
        super().__init__(f"DID {did} already belongs to user {owner!r}")
        self.did = did
        self.owner = owner


class _ConflictError(UserStoreError):
    """A unique constraint refused a write (a concurrent writer won a race)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInfo:
    """What may be shown about a user (no HA1)."""

    name: str
    realm: str
    created_at: datetime
    disabled: bool
    dids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UserHa1:
    """The stored HA1s of one user, for its realm. The HA1s are never shown."""

    realm: str
    md5: str = field(repr=False)
    sha256: str = field(repr=False)

    def for_algorithm(self, algorithm: DigestAlgorithm) -> str | None:
        """The HA1 of ``algorithm``'s base (MD5 or SHA-256), None for any other."""
        base = algorithm.base
        if base is DigestAlgorithm.MD5:
            return self.md5
        if base is DigestAlgorithm.SHA_256:
            return self.sha256
        return None


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file ``path`` (the default: ``<var_dir>/bridge.db``)."""
    return f"sqlite+aiosqlite:///{path}"


def generate_password() -> str:
    """A random password for a new user (128 bits, URL-safe text)."""
    return secrets.token_urlsafe(16)


class UserStore:
    """The user database. Create with :meth:`open`, close with :meth:`aclose`."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Wrap an engine; prefer :meth:`open`, which also checks the schema."""
        self._engine = engine

    def __repr__(self) -> str:
        return f"UserStore({self._engine.url.render_as_string(hide_password=True)!r})"

    @classmethod
    async def open(cls, url: str, *, tls: TlsClientConfig | None = None) -> UserStore:
        """Connect to the database at ``url``, creating the schema in a new database.

        A SQLite file's directory is created when missing.

        Raises:
            StoreUnavailableError: the URL is invalid or the database cannot be used.
            SchemaVersionError: the database has another schema version.
        """
        try:
            parsed = make_url(url)
            engine = create_async_engine(
                parsed, hide_parameters=True, **engine_options(parsed, tls)
            )
        except TlsPolicyError as exc:
            raise StoreUnavailableError(f"store.ca_file: {exc}") from None
        except (ArgumentError, ImportError, ValueError) as exc:
            raise StoreUnavailableError(f"store URL is not usable: {exc}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_foreign_keys)
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        store = cls(engine)
        try:
            await store.create_schema()
        except BaseException:
            await store.aclose()
            raise
        return store

    async def aclose(self) -> None:
        """Close every connection."""
        await self._engine.dispose()

    async def create_schema(self) -> None:
        """Create missing tables and record or check the schema version (idempotent).

        Processes starting together (the bridge and ``pstn-bridge user add`` on a new
        database) may race to create the tables; the loser's DDL fails once the winner has
        committed, so a failed attempt is retried and then finds the schema in place.

        Raises:
            SchemaVersionError: the database was written by another schema version;
                nothing is created in it.
            StoreUnavailableError: the database cannot be used.
        """
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                await self._create_schema_once()
            except (StoreUnavailableError, _ConflictError):
                if attempt == _SCHEMA_ATTEMPTS - 1:
                    raise
            else:
                return

    async def _create_schema_once(self) -> None:
        async with self._transaction() as conn:
            version = await conn.run_sync(_stored_version)
            if version is not None and version != SCHEMA_VERSION:
                newer = "newer" if version > SCHEMA_VERSION else "older"
                raise SchemaVersionError(
                    f"the user database has schema version {version} ({newer} than this "
                    f"pstn-bridge, which uses {SCHEMA_VERSION}); use a matching pstn-bridge"
                )
            await conn.run_sync(_METADATA.create_all)
            if version is None:
                await conn.execute(insert(_SCHEMA_VERSION).values(id=1, version=SCHEMA_VERSION))

    async def add_user(
        self,
        name: str,
        password: str,
        realm: str,
        dids: Iterable[str] = (),
        *,
        now: datetime | None = None,
    ) -> UserInfo:
        """Create a user with the HA1s of ``password`` and give it ``dids``.

        Args:
            name: the user name (1 to 64 of ``A-Z a-z 0-9 . _ -``).
            password: at least :data:`MIN_PASSWORD_LENGTH` characters; only hashed.
            realm: the digest realm (the bridge's ``sip.realm``).
            dids: numbers that reach this user, E.164 (``+...`` or ``00...``).
            now: the creation time (default: the current UTC time).

        Raises:
            InvalidUserError: the name, password or a DID is not acceptable.
            UserExistsError: the name is taken.
            DidTakenError: a DID belongs to another user.
            StoreUnavailableError: the database cannot be used.
        """
        _check_name(name)
        numbers = tuple(dict.fromkeys(_e164(did) for did in dids))
        created = now or datetime.now(UTC)
        row = {
            "name": name,
            "realm": realm,
            "created_at": created,
            "disabled": False,
            **_ha1_columns(name, realm, password),
        }
        try:
            async with self._transaction() as conn:
                await _check_free(conn, name, numbers)
                await conn.execute(insert(_USERS).values(row))
                if numbers:
                    rows = [{"did": did, "user_name": name} for did in numbers]
                    await conn.execute(insert(_DIDS), rows)
        except _ConflictError:
            async with self._transaction() as conn:  # a concurrent writer: say who won
                await _check_free(conn, name, numbers)
            raise UserExistsError(f"user {name!r} or one of its DIDs was just taken") from None
        return UserInfo(name=name, realm=realm, created_at=created, disabled=False, dids=numbers)

    async def remove_user(self, name: str) -> None:
        """Delete a user and release its DIDs.

        Raises:
            UnknownUserError: there is no such user.
            StoreUnavailableError: the database cannot be used.
        """
        async with self._transaction() as conn:
            await conn.execute(delete(_DIDS).where(_DIDS.c.user_name == name))
            result = await conn.execute(delete(_USERS).where(_USERS.c.name == name))
            if result.rowcount == 0:
                raise UnknownUserError(f"no user {name!r}")

    async def set_password(self, name: str, password: str, realm: str | None = None) -> None:
        """Replace a user's HA1s (and realm, when given).

        Raises:
            InvalidUserError: the password is too short.
            UnknownUserError: there is no such user.
            StoreUnavailableError: the database cannot be used.
        """
        async with self._transaction() as conn:
            stored = await conn.scalar(select(_USERS.c.realm).where(_USERS.c.name == name))
            if stored is None:
                raise UnknownUserError(f"no user {name!r}")
            new_realm = realm or stored
            values = {"realm": new_realm, **_ha1_columns(name, new_realm, password)}
            await conn.execute(update(_USERS).where(_USERS.c.name == name).values(values))

    async def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (or enable again) a user: a disabled user cannot authenticate.

        Raises:
            UnknownUserError: there is no such user.
            StoreUnavailableError: the database cannot be used.
        """
        async with self._transaction() as conn:
            statement = update(_USERS).where(_USERS.c.name == name).values(disabled=disabled)
            if (await conn.execute(statement)).rowcount == 0:
                raise UnknownUserError(f"no user {name!r}")

    async def list_users(self) -> list[UserInfo]:
        """Every user with its DIDs, by name.

        Raises:
            StoreUnavailableError: the database cannot be used.
        """
        async with self._transaction() as conn:
            dids: dict[str, list[str]] = {}
            for did, owner in await conn.execute(select(_DIDS).order_by(_DIDS.c.did)):
                dids.setdefault(owner, []).append(did)
            columns = (_USERS.c.name, _USERS.c.realm, _USERS.c.created_at, _USERS.c.disabled)
            rows = (await conn.execute(select(*columns).order_by(_USERS.c.name))).all()
        return [
            UserInfo(
                name=name,
                realm=realm,
                created_at=_utc(created_at),
                disabled=bool(disabled),
                dids=tuple(dids.get(name, ())),
            )
            for name, realm, created_at, disabled in rows
        ]

    async def count_users(self) -> int:
        """How many users there are (disabled ones included).

        Raises:
            StoreUnavailableError: the database cannot be used.
        """
        async with self._transaction() as conn:
            return int(await conn.scalar(select(func.count()).select_from(_USERS)) or 0)

    async def owner_of_did(self, did: str) -> str | None:
        """The user a DID belongs to, or None (also for text that is not a number).

        Raises:
            StoreUnavailableError: the database cannot be used.
        """
        try:
            number = normalize_e164(did)
        except InvalidNumberError:
            return None
        async with self._transaction() as conn:
            owner = await conn.scalar(select(_DIDS.c.user_name).where(_DIDS.c.did == number))
        return None if owner is None else str(owner)

    async def load_ha1(self) -> dict[str, UserHa1]:
        """The HA1s of every enabled user, by name.

        Raises:
            StoreUnavailableError: the database cannot be used.
        """
        columns = (_USERS.c.name, _USERS.c.realm, _USERS.c.ha1_md5, _USERS.c.ha1_sha256)
        async with self._transaction() as conn:
            rows = await conn.execute(select(*columns).where(_USERS.c.disabled.is_(False)))
            return {
                name: UserHa1(realm=realm, md5=md5, sha256=sha) for name, realm, md5, sha in rows
            }

    async def load_dids(self) -> dict[str, str]:
        """Every DID with its owner (disabled owners included: the call layer decides).

        Raises:
            StoreUnavailableError: the database cannot be used.
        """
        async with self._transaction() as conn:
            return {did: owner for did, owner in await conn.execute(select(_DIDS))}

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; database errors become :class:`StoreUnavailableError`."""
        try:
            async with self._engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise _ConflictError("a unique constraint refused the write") from None
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailableError(f"user database: {_describe(exc)}") from None


class Ha1Cache:
    """A synchronous snapshot of the store for the digest server and DID routing.

    :meth:`lookup` has the signature of :data:`~sip_gateway.sip.auth.Ha1Lookup`. The
    snapshot is replaced whole by :meth:`refresh`; until the first refresh it is empty.
    """

    def __init__(self) -> None:
        self._ha1: Mapping[str, UserHa1] = {}
        self._dids: Mapping[str, str] = {}

    def __repr__(self) -> str:
        return f"Ha1Cache(users={len(self._ha1)}, dids={len(self._dids)})"

    def lookup(self, username: str, realm: str, algorithm: DigestAlgorithm) -> str | None:
        """The HA1 of an enabled user for ``realm`` and ``algorithm``, or None."""
        entry = self._ha1.get(username)
        if entry is None or entry.realm != realm:
            return None
        return entry.for_algorithm(algorithm)

    def has_user(self, username: str) -> bool:
        """Whether ``username`` is an enabled user."""
        return username in self._ha1

    def did_of(self, username: str) -> str | None:
        """The first DID (sorted) ``username`` owns: their caller ID on outbound calls."""
        owned = sorted(did for did, owner in self._dids.items() if owner == username)
        return owned[0] if owned else None

    def owner_of_did(self, did: str) -> str | None:
        """The user a DID belongs to, or None (also for text that is not a number)."""
        try:
            return self._dids.get(normalize_e164(did))
        except InvalidNumberError:
            return None

    async def refresh(self, store: UserStore) -> None:
        """Replace the snapshot with the store's current content.

        Raises:
            StoreUnavailableError: the database cannot be used (the old snapshot stays).
        """
        ha1 = await store.load_ha1()
        dids = await store.load_dids()
        self._ha1, self._dids = ha1, dids

    async def run_refresh(self, store: UserStore, interval: float) -> None:
        """Refresh every ``interval`` seconds until cancelled (run it as a task).

        The first refresh is the caller's (``await cache.refresh(store)`` at start-up, so
        that a broken database stops the start). A failed refresh is logged and the old
        snapshot kept; the loop only ends by cancellation.
        """
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh(store)
            except UserStoreError as exc:
                log.warning("user cache refresh failed, keeping the old snapshot: %s", exc)
            except Exception:
                log.exception("user cache refresh failed, keeping the old snapshot")


async def ensure_demo_user(store: UserStore, name: str, did: str, realm: str) -> str | None:
    """Create the demo user with a generated password when the store has no users.

    Returns:
        The generated password (to show once), or None when users already exist.

    Raises:
        UserStoreError: the user cannot be created (invalid name or DID, database).
    """
    if await store.count_users() > 0:
        return None
    password = generate_password()
    try:
        await store.add_user(name, password, realm, [did])
    except UserExistsError:
        return None  # another process created a user meanwhile
    return password


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    """SQLite enforces foreign keys only when asked, per connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _stored_version(conn: Any) -> int | None:
    """The recorded schema version (run on a sync connection), None in a new database.

    An empty ``schema_version`` table is a new database too: SQLite (pysqlite) commits DDL
    on its own, so a concurrent creator may have made the table but not yet its row.
    """
    if not inspect(conn).has_table(_SCHEMA_VERSION.name):
        return None
    versions = conn.execute(select(_SCHEMA_VERSION.c.version)).scalars().all()
    if len(versions) > 1:
        raise SchemaVersionError(f"schema_version must hold one row, found {len(versions)}")
    return int(versions[0]) if versions else None


async def _check_free(conn: AsyncConnection, name: str, dids: tuple[str, ...]) -> None:
    if await conn.scalar(select(_USERS.c.name).where(_USERS.c.name == name)) is not None:
        raise UserExistsError(f"user {name!r} already exists")
    if dids:
        taken = await conn.execute(select(_DIDS).where(_DIDS.c.did.in_(dids)))
        for did, owner in taken:
            raise DidTakenError(did, owner)


def _ha1_columns(name: str, realm: str, password: str) -> dict[str, str]:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidUserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return {
        "ha1_md5": compute_ha1(name, realm, password, DigestAlgorithm.MD5),
        "ha1_sha256": compute_ha1(name, realm, password, DigestAlgorithm.SHA_256),
    }


def _check_name(name: str) -> None:
    if _NAME.fullmatch(name) is None:
        raise InvalidUserError(
            f"user name {name[:64]!r} must be 1 to 64 letters, digits, '.', '_' or '-'"
        )


def _e164(did: str) -> str:
    try:
        return normalize_e164(did)
    except InvalidNumberError as exc:
        raise InvalidUserError(f"DID: {exc}") from None


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _describe(exc: BaseException) -> str:
    """A driver error's own message (never SQL parameters), or the error type."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__
