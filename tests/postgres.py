"""A real PostgreSQL server for tests: Debian's binaries, a throwaway cluster on loopback.

:class:`PostgresServer` runs ``initdb`` into a new temporary directory and ``pg_ctl start``
with the server listening on 127.0.0.1 on a free port and its unix socket in that
directory (trust authentication, no fsync: it is thrown away). ``initdb`` refuses to run
as root, so under uid 0 the cluster belongs to Debian's ``postgres`` user and every
server command runs through ``runuser -u postgres --``; otherwise it runs as the current
user. :meth:`PostgresServer.stop` and :meth:`PostgresServer.start` let a test take the
database away and bring it back (same port, same data). :meth:`PostgresServer.new_database`
gives each test its own empty database. The ``postgres_server`` fixture (session scope,
imported by ``tests/conftest.py``) starts one cluster for the run and deletes it at the end.

A machine without PostgreSQL makes the fixture fail (:class:`PostgresUnavailableError`),
never skip: the store's tests are meant to run on it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.interop.peers import free_port

__all__ = ["PG_BIN", "PostgresServer", "PostgresUnavailableError", "postgres_server"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
"""Debian's PostgreSQL 15 server binaries (package ``postgresql-15``)."""
SUPERUSER = "bridge"
_COMMAND_TIMEOUT = 60.0


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL is not installed or the test cluster could not be started."""


class PostgresServer:
    """One throwaway PostgreSQL cluster (see the module docstring)."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (PG_BIN / tool).is_file():
                raise PostgresUnavailableError(
                    f"{PG_BIN / tool} is missing: install Debian's postgresql package"
                )
        self.root = Path(tempfile.mkdtemp(prefix="pstn-bridge-pg-"))
        self.data = self.root / "data"
        self.log_file = self.root / "server.log"
        self.port = free_port()
        self._databases = 0
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run(
            PG_BIN / "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (asyncpg driver, TCP on loopback)."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        """Whether the server answers ``pg_ctl status``."""
        status = self._run(PG_BIN / "pg_ctl", "-D", str(self.data), "status", check=False)
        return status.returncode == 0

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            PG_BIN / "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self) -> None:
        """Stop the server now (``-m fast``: open connections are cut off)."""
        self._run(PG_BIN / "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    async def new_database(self) -> str:
        """Create an empty database; returns its SQLAlchemy URL."""
        self._databases += 1
        name = f"t{self._databases}"
        conn = await asyncpg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, database="postgres", timeout=10
        )
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        return self.url(name)

    def cleanup(self) -> None:
        """Stop the server when it runs and delete the cluster."""
        try:
            if self.data.exists() and self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(arg) for arg in argv]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            check=False,
            cwd=self.root,
        )
        if check and result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise PostgresUnavailableError(
                f"{' '.join(command)} failed ({result.returncode}): "
                f"{result.stderr.strip()} {result.stdout.strip()} {log[-2000:]}"
            )
        return result


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One running PostgreSQL cluster for the session; fails (never skips) without one."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
