"""The user store on real SQLite files, and the HA1 cache the digest server reads."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bridge.users import (
    SCHEMA_VERSION,
    DidTakenError,
    Ha1Cache,
    InvalidUserError,
    SchemaVersionError,
    StoreUnavailableError,
    UnknownUserError,
    UserExistsError,
    UserStore,
    ensure_demo_user,
    sqlite_url,
)
from sip_gateway.sip.auth import (
    AuthAccepted,
    AuthRejected,
    DigestAlgorithm,
    DigestChallenge,
    DigestCredentials,
    DigestServer,
    DigestServerConfig,
    parse_challenge,
)

REALM = "pstn-bridge"
PASSWORD = "tr0ub4dor&3-horse"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "bridge.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[UserStore]:
    opened = await UserStore.open(sqlite_url(db_path))
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_add_list_remove(store: UserStore, db_path: Path) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    added = await store.add_user("alice", PASSWORD, REALM, ["+15005550100", "0044 20 7946 0000"])
    await store.add_user("bob", PASSWORD, REALM, now=when)
    assert db_path.is_file()  # noqa: ASYNC240 - the missing var directory was created
    assert added.dids == ("+15005550100", "+442079460000")
    users = await store.list_users()
    assert [(u.name, u.dids, u.disabled) for u in users] == [
        ("alice", ("+15005550100", "+442079460000"), False),
        ("bob", (), False),
    ]
    assert users[1].created_at == when and users[1].realm == REALM
    assert await store.owner_of_did("+442079460000") == "alice"
    assert await store.owner_of_did("not a number") is None
    await store.remove_user("alice")
    assert [u.name for u in await store.list_users()] == ["bob"]
    assert await store.owner_of_did("+15005550100") is None
    with pytest.raises(UnknownUserError):
        await store.remove_user("alice")
    await store.add_user("carol", PASSWORD, REALM, ["+15005550100"])  # the DID was released
    assert await store.owner_of_did("+15005550100") == "carol"


async def test_duplicate_user_and_did_are_refused_and_change_nothing(store: UserStore) -> None:
    await store.add_user("alice", PASSWORD, REALM, ["+15005550100"])
    with pytest.raises(UserExistsError):
        await store.add_user("alice", "another-password", REALM)
    with pytest.raises(DidTakenError) as taken:
        await store.add_user("bob", PASSWORD, REALM, ["+15005550199", "+1 500 555 0100"])
    assert (taken.value.did, taken.value.owner) == ("+15005550100", "alice")
    assert [u.name for u in await store.list_users()] == ["alice"]
    assert await store.owner_of_did("+15005550199") is None  # no half-added user


@pytest.mark.parametrize(
    ("name", "password", "dids"),
    [
        ("al ice", PASSWORD, ()),
        ("", PASSWORD, ()),
        ("x" * 65, PASSWORD, ()),
        ("alice", "short", ()),
        ("alice", PASSWORD, ("12345",)),
        ("alice", PASSWORD, ("+0123",)),
    ],
)
async def test_invalid_users_are_refused(
    store: UserStore, name: str, password: str, dids: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidUserError) as refused:
        await store.add_user(name, password, REALM, dids)
    assert password not in str(refused.value)
    assert await store.list_users() == []


def _expected_response(algorithm: str, password: str, nonce: str, cnonce: str) -> str:
    """RFC 7616 3.4.1, computed here without the package's digest code."""

    def h(text: str) -> str:
        return hashlib.new(algorithm, text.encode()).hexdigest()

    ha1 = h(f"alice:{REALM}:{password}")
    ha2 = h("REGISTER:sip:127.0.0.1")
    return h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")


@pytest.mark.parametrize(
    ("algorithm", "hash_name"),
    [(DigestAlgorithm.MD5, "md5"), (DigestAlgorithm.SHA_256, "sha256")],
)
async def test_stored_ha1_verifies_with_the_digest_server(
    store: UserStore, algorithm: DigestAlgorithm, hash_name: str
) -> None:
    await store.add_user("alice", PASSWORD, REALM)
    cache = Ha1Cache()
    await cache.refresh(store)
    server = DigestServer(
        DigestServerConfig(realm=REALM, secret=b"k" * 32, algorithms=(algorithm,)),
        ha1_lookup=cache.lookup,
        random_bytes=lambda n: b"\x01" * n,
    )
    [(_, value)] = server.challenge(now=100.0)
    challenge = parse_challenge(value)
    assert isinstance(challenge, DigestChallenge)

    def attempt(password: str) -> object:
        credentials = DigestCredentials(
            username="alice",
            realm=REALM,
            nonce=challenge.nonce,
            uri="sip:127.0.0.1",
            response=_expected_response(hash_name, password, challenge.nonce, "c1"),
            algorithm=algorithm.value,
            cnonce="c1",
            qop="auth",
            nc="00000001",
        )
        return server.verify([str(credentials)], method="REGISTER", uri="sip:127.0.0.1", now=101.0)

    wrong = attempt("not the password")
    assert isinstance(wrong, AuthRejected)
    accepted = attempt(PASSWORD)
    assert isinstance(accepted, AuthAccepted) and accepted.username == "alice"


async def test_password_never_reaches_the_database_file(store: UserStore, db_path: Path) -> None:
    await store.add_user("alice", PASSWORD, REALM, ["+15005550100"])
    await store.set_password("alice", PASSWORD + "-new")
    raw = db_path.read_bytes()  # noqa: ASYNC240 - a small file, read once
    assert PASSWORD.encode() not in raw
    assert hashlib.sha256(f"alice:{REALM}:{PASSWORD}-new".encode()).hexdigest().encode() in raw
    new_ha1 = hashlib.md5(f"alice:{REALM}:{PASSWORD}-new".encode()).hexdigest()
    assert new_ha1.encode() in raw
    assert new_ha1 not in repr(await store.load_ha1())  # HA1s are not shown


async def test_set_password_and_disable(store: UserStore) -> None:
    await store.add_user("alice", PASSWORD, REALM)
    cache = Ha1Cache()
    await cache.refresh(store)
    old = cache.lookup("alice", REALM, DigestAlgorithm.MD5)
    await store.set_password("alice", "a brand new password", realm="other-realm")
    await cache.refresh(store)
    assert cache.lookup("alice", REALM, DigestAlgorithm.MD5) is None  # realm moved
    new = cache.lookup("alice", "other-realm", DigestAlgorithm.MD5)
    assert new is not None and new != old
    assert cache.lookup("alice", "other-realm", DigestAlgorithm.SHA_512_256) is None
    await store.set_disabled("alice", True)
    await cache.refresh(store)
    assert not cache.has_user("alice")
    assert cache.lookup("alice", "other-realm", DigestAlgorithm.MD5) is None
    with pytest.raises(UnknownUserError):
        await store.set_password("nobody", PASSWORD)
    with pytest.raises(UnknownUserError):
        await store.set_disabled("nobody", True)


async def test_cache_refresh_sees_a_user_added_by_another_store(
    store: UserStore, db_path: Path
) -> None:
    cache = Ha1Cache()
    await cache.refresh(store)
    assert cache.lookup("bob", REALM, DigestAlgorithm.SHA_256) is None
    task = asyncio.create_task(cache.run_refresh(store, 0.05))
    try:
        other = await UserStore.open(sqlite_url(db_path))  # as `pstn-bridge user add` would
        try:
            await other.add_user("bob", PASSWORD, REALM, ["+15005550123"])
        finally:
            await other.aclose()
        async with asyncio.timeout(5):
            while cache.lookup("bob", REALM, DigestAlgorithm.SHA_256) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    expected = hashlib.sha256(f"bob:{REALM}:{PASSWORD}".encode()).hexdigest()
    assert cache.lookup("bob", REALM, DigestAlgorithm.SHA_256) == expected
    assert cache.owner_of_did("+1 (500) 555-0123") == "bob"
    assert cache.owner_of_did("garbage") is None


async def _set_version(db_path: Path, version: int) -> None:
    engine = create_async_engine(sqlite_url(db_path))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE schema_version SET version = :v"), {"v": version})
    finally:
        await engine.dispose()


async def test_a_newer_schema_is_refused(store: UserStore, db_path: Path) -> None:
    await store.add_user("alice", PASSWORD, REALM)
    await _set_version(db_path, SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError, match=r"schema version 2 \(newer"):
        await UserStore.open(sqlite_url(db_path))
    with pytest.raises(SchemaVersionError):
        await store.create_schema()
    await _set_version(db_path, SCHEMA_VERSION)
    reopened = await UserStore.open(sqlite_url(db_path))  # and the data is still there
    try:
        assert [u.name for u in await reopened.list_users()] == ["alice"]
    finally:
        await reopened.aclose()


async def test_unusable_store_urls(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="store URL"):
        await UserStore.open("nosuchdialect://x")
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not a sqlite database file at all" * 100)
    with pytest.raises(StoreUnavailableError, match="user database"):
        await UserStore.open(sqlite_url(not_a_db))


async def test_demo_user_only_in_an_empty_store(store: UserStore) -> None:
    password = await ensure_demo_user(store, "demo", "+15005550100", REALM)
    assert password is not None and len(password) >= 16
    cache = Ha1Cache()
    await cache.refresh(store)
    expected = hashlib.md5(f"demo:{REALM}:{password}".encode()).hexdigest()
    assert cache.lookup("demo", REALM, DigestAlgorithm.MD5) == expected
    assert cache.owner_of_did("+15005550100") == "demo"
    assert await ensure_demo_user(store, "demo", "+15005550100", REALM) is None
    await store.remove_user("demo")
    await store.add_user("alice", PASSWORD, REALM)
    assert await ensure_demo_user(store, "demo", "+15005550100", REALM) is None


async def test_stores_opening_a_new_database_together_all_succeed(tmp_path: Path) -> None:
    """The bridge and `pstn-bridge user add` may create the schema at the same moment."""
    for round_ in range(5):
        url = sqlite_url(tmp_path / f"new-{round_}.db")
        opened = await asyncio.gather(*(UserStore.open(url) for _ in range(4)))
        try:
            await opened[0].add_user("alice", PASSWORD, REALM)
            assert [u.name for u in await opened[3].list_users()] == ["alice"]
        finally:
            for store in opened:
                await store.aclose()


async def test_a_failed_refresh_keeps_the_snapshot_and_the_loop(
    store: UserStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await store.add_user("alice", PASSWORD, REALM)
    cache = Ha1Cache()
    await cache.refresh(store)
    db_path.unlink()  # noqa: ASYNC240 - the database vanishes under the running bridge
    await store.aclose()  # drop pooled connections: the next one finds an empty file
    task = asyncio.create_task(cache.run_refresh(store, 0.01))
    try:
        async with asyncio.timeout(5):
            while "user cache refresh failed" not in caplog.text:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert "no such table" in caplog.text
    assert cache.has_user("alice")


async def test_cache_knows_each_users_caller_id_did(store: UserStore) -> None:
    await store.add_user("alice", PASSWORD, REALM, dids=("+442079460001", "+442079460000"))
    await store.add_user("bob", PASSWORD, REALM)
    cache = Ha1Cache()
    await cache.refresh(store)
    assert cache.did_of("alice") == "+442079460000"  # the lowest, stable across refreshes
    assert cache.did_of("bob") is None
    assert cache.owner_of_did("+442079460001") == "alice"
