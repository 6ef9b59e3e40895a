"""A real bridge for the ops API tests, and an HTTPS client of its API.

Each ``ops_bridge(...)`` starts ``bridge.app.start`` on free loopback ports with the
embedded carrier simulator as its trunk (OPTIONS keep-alive on, so the trunk comes up)
and a real user database, like ``tests/bridge/test_calls.py``; :class:`OpsClient` speaks
HTTPS to it with the development CA, as an operator's tool would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import start
from bridge.settings import Settings
from sip_gateway.devcerts import ensure_dev_pki
from sip_gateway.tls import TlsClientConfig, client_context
from tests.bridge.test_calls import DID, PASSWORD, USER, Harness
from tests.interop.peers import free_port
from tests.userdb import add_users

TOKEN = "ops-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class OpsClient:
    """GETs on the bridge's HTTPS site (JSON or text), with or without the token."""

    session: aiohttp.ClientSession
    base: str
    token: str | None

    def headers(self, token: str | None = None) -> dict[str, str]:
        token = token or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def get(
        self, path: str, *, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.get(
            self.base + path, headers=headers if headers is not None else self.headers(token)
        ) as response:
            raw = await response.read()
            kind = response.headers.get("Content-Type", "")
            body: Any = raw.decode()
            if kind.startswith("application/json"):
                body = await response.json()
            return response.status, body, response


@dataclass
class OpsHarness(Harness):
    api: OpsClient | None = None
    closed: bool = False

    @property
    def ops(self) -> OpsClient:
        assert self.api is not None
        return self.api


@pytest.fixture
async def ops_bridge(
    tmp_path: Path, pki: Any
) -> AsyncIterator[Callable[..., Awaitable[OpsHarness]]]:
    """A factory: ``await ops_bridge(ops={...})`` starts a bridge with those ops settings."""
    started: list[tuple[OpsHarness, aiohttp.ClientSession]] = []

    async def factory(
        *,
        ops: dict[str, Any] | None = None,
        events: dict[str, Any] | None = None,
        var_dir: Path | None = None,
        **sim: Any,
    ) -> OpsHarness:
        sim_port = free_port()
        settings = Settings.model_validate(
            {
                "node": {"var_dir": var_dir or tmp_path / f"var{len(started)}"},
                "tls": {
                    "cert_file": pki.server_certificate,
                    "key_file": pki.server_key,
                    "ca_file": pki.ca_certificate,
                },
                "sip": {"listen_port": 0},
                "http": {"listen_port": 0},
                "users": {"demo_user": ""},
                "trunks": [
                    {
                        "name": "sim",
                        "host": "127.0.0.1",
                        "port": sim_port,
                        "ca_file": pki.ca_certificate,
                        "allowed_sources": ["127.0.0.1/32"],
                        "options_interval": 30,
                    }
                ],
                "carrier_sim": {"listen_port": sim_port, "ring_time": 0.05} | sim,
                "ops": {"api_token": TOKEN} | (ops or {}),
                "events": events or {},
            }
        )
        if var_dir is None:
            await add_users(settings, [(USER, PASSWORD, (DID,))])
        running = await start(settings)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=client_context(TlsClientConfig(ca_file=pki.ca_certificate))
            )
        )
        token = settings.ops.api_token.get_secret_value() if settings.ops.api_token else None
        harness = OpsHarness(running, settings, pki.ca_certificate)
        harness.api = OpsClient(session, f"https://127.0.0.1:{running.https_port}", token)
        started.append((harness, session))
        return harness

    yield factory
    for harness, session in started:
        await session.close()
        for client in harness.clients:
            await client.close(hangup=not harness.closed)
        if harness.closed:
            continue
        with contextlib.suppress(TimeoutError):
            await harness.idle()
        await harness.running.close()
    await asyncio.sleep(0.05)


async def trunk_up(harness: Harness, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a bound
    """Wait for the first OPTIONS keep-alive to bring the trunk up."""
    async with asyncio.timeout(timeout):
        while str(harness.running.gateway.trunks["sim"].status) != "up":  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.02)
