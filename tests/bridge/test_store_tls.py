"""The stores' PostgreSQL connections over TLS, against a real PostgreSQL that requires it.

The module's cluster (``TlsPostgres``) serves the test PKI's server certificate and its
``pg_hba.conf`` has only ``hostssl`` lines: a connection without TLS is refused, which is
the control that proves the TLS test can fail. The context comes from
``sip_gateway.tls.client_context`` through ``bridge.dbtls``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.dbtls import StoreTlsError, engine_options, store_tls_config
from bridge.store import CallStore, CallStoreUnavailableError
from bridge.users import StoreUnavailableError, UserStore
from tests.bridge.store_support import store_config
from tests.pki import Pki
from tests.postgres import PostgresServer


class TlsPostgres(PostgresServer):
    """A cluster that accepts TLS connections only, with the test PKI's server certificate."""

    def require_tls(self, pki: Pki) -> None:
        for name, source in (("server.crt", pki.crt("server")), ("server.key", pki.key("server"))):
            target = self.data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if self._as_postgres:
                shutil.chown(target, "postgres", "postgres")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
            conf.write("ssl_min_protocol_version = 'TLSv1.2'\n")
        hba = self.data / "pg_hba.conf"
        lines = [line for line in hba.read_text().splitlines() if not line.startswith("host")]
        hba.write_text("\n".join([*lines, "hostssl all all 127.0.0.1/32 trust", ""]))


@pytest.fixture(scope="module")
def tls_postgres(tls_pki: Pki) -> Iterator[TlsPostgres]:
    server = TlsPostgres()
    try:
        server.require_tls(tls_pki)
        server.start()
        yield server
    finally:
        server.cleanup()


async def test_call_store_over_verified_tls(
    tls_postgres: TlsPostgres, tls_pki: Pki, tmp_path: Path
) -> None:
    url = await tls_postgres_database(tls_postgres, tls_pki)
    tls = store_tls_config(True, tls_pki.ca)
    store = await CallStore.open(url, store_config(tmp_path), tls=tls)
    try:
        async with store._engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                    )
                )
            ).one()
    finally:
        await store.aclose()
    assert row.ssl is True and row.version in ("TLSv1.2", "TLSv1.3")
    assert row.cipher.startswith(("TLS_AES", "TLS_CHACHA20", "ECDHE-"))


async def test_user_store_over_verified_tls(tls_postgres: TlsPostgres, tls_pki: Pki) -> None:
    url = await tls_postgres_database(tls_postgres, tls_pki)
    store = await UserStore.open(url, tls=store_tls_config(True, tls_pki.ca))
    try:
        assert await store.list_users() == []
    finally:
        await store.aclose()


async def test_without_tls_the_server_refuses(
    tls_postgres: TlsPostgres, tls_pki: Pki, tmp_path: Path
) -> None:
    """The control: a plain connection is refused (asyncpg's default, ``prefer``, would quietly
    negotiate unverified TLS; ``ssl=disable`` shows the server really insists)."""
    url = await tls_postgres_database(tls_postgres, tls_pki) + "?ssl=disable"
    with pytest.raises(CallStoreUnavailableError):
        await CallStore.open(url, store_config(tmp_path))
    with pytest.raises(StoreUnavailableError):
        await UserStore.open(url)


async def test_a_server_from_another_ca_is_refused(
    tls_postgres: TlsPostgres, tls_pki: Pki, tmp_path: Path
) -> None:
    url = await tls_postgres_database(tls_postgres, tls_pki)
    with pytest.raises(CallStoreUnavailableError):
        await CallStore.open(
            url, store_config(tmp_path), tls=store_tls_config(True, tls_pki.rogue_ca)
        )


async def test_tls_for_sqlite_and_a_missing_ca_are_configuration_errors(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    with pytest.raises(StoreTlsError, match="applies to PostgreSQL"):
        engine_options(
            make_url(f"sqlite+aiosqlite:///{tmp_path}/x.db"), store_tls_config(True, None)
        )
    assert engine_options(make_url("postgresql+asyncpg://u@h/d"), None) == {}
    with pytest.raises(CallStoreUnavailableError, match=r"store\.ca_file"):
        await CallStore.open(
            "postgresql+asyncpg://u@127.0.0.1:1/d",
            store_config(tmp_path),
            tls=store_tls_config(True, tmp_path / "absent-ca.crt"),
        )


async def tls_postgres_database(server: TlsPostgres, pki: Pki) -> str:
    """A new database, created over TLS (the server takes nothing else)."""
    import asyncpg

    from sip_gateway.tls import client_context

    server._databases += 1
    name = f"t{server._databases}"
    ctx = client_context(store_tls_config(True, pki.ca))  # type: ignore[arg-type]
    conn = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user="bridge", database="postgres", ssl=ctx, timeout=10
    )
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return server.url(name)


assert os.sep == "/"  # the cluster paths above are POSIX
