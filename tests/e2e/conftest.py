"""Fixtures for browser tests: the bridge (with its embedded carrier simulator) and Chromium.

Everything runs on 127.0.0.1. ``bridge`` starts one bridge on free ports whose only trunk is
the in-process carrier simulator (echo mode, recordings in ``tmp_path/"rec"``);
``bridge_factory(**sections)`` starts one with settings sections merged over those defaults
(``await bridge_factory(carrier_sim={"mode": "busy"})``). ``chromium`` is a Playwright browser
context (self-signed dev CA accepted) on a headless Chromium with the fake microphone
``mic_wav``; its teardown closes the browser and fails the test if a Chromium process
survived. Browser users and their passwords are :data:`USERS` (seeded in the bridge's user
database before it starts), their numbers :data:`DIDS`.

Typical test::

    page = await open_and_register(chromium, bridge.base_url, "alice", USERS["alice"])
    await dial(page, "+15551230001")
    await wait_call_state(page, "answered")
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, async_playwright

from bridge.app import RunningBridge, start
from bridge.settings import Settings
from bridge.users import UserStore, sqlite_url
from sip_gateway.carrier_sim import CarrierSimulator
from tests.interop.peers import free_port

from .browser import chromium_pids, launch_chromium, make_mic_wav, wait_gone

USERS: Mapping[str, str] = {"alice": "correct horse battery staple", "bob": "tr0ub4dor&3"}
"""Browser users of the test bridge and their passwords."""
DIDS: Mapping[str, str] = {"alice": "+15005550101", "bob": "+15005550102"}
"""The number that reaches each user (inbound calls from the carrier simulator)."""


@dataclass(frozen=True, slots=True)
class E2EBridge:
    """A running bridge as the browser sees it."""

    running: RunningBridge
    record_dir: Path

    @property
    def base_url(self) -> str:
        """The dialer page."""
        return f"https://127.0.0.1:{self.running.https_port}/"

    @property
    def ws_url(self) -> str:
        """SIP over secure WebSocket (the page's default)."""
        return f"wss://127.0.0.1:{self.running.https_port}/sip"

    @property
    def carrier_sim(self) -> CarrierSimulator:
        """The embedded PSTN gateway simulator (its ``calls`` list what it received)."""
        assert self.running.carrier_sim is not None
        return self.running.carrier_sim


async def seed_users(settings: Settings, users: Mapping[str, str] = USERS) -> None:
    """Create ``users`` (name -> password, DIDs from :data:`DIDS`) in the bridge's database."""
    settings.node.var_dir.mkdir(parents=True, exist_ok=True)
    url = settings.store.url or sqlite_url(settings.node.var_dir / "bridge.db")
    store = await UserStore.open(url)
    try:
        await store.create_schema()
        for name, password in users.items():
            dids = [DIDS[name]] if name in DIDS else []
            await store.add_user(name, password, settings.sip.realm, dids)
    finally:
        await store.aclose()


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


BridgeFactory = Callable[..., Awaitable[E2EBridge]]


@pytest.fixture
async def bridge_factory(tmp_path: Path) -> AsyncIterator[BridgeFactory]:
    """Start bridges with settings sections merged over the e2e defaults; stopped at teardown."""
    started: list[RunningBridge] = []

    async def factory(**sections: Any) -> E2EBridge:
        home = tmp_path / f"bridge{len(started)}"
        sim_port = free_port()
        base = {
            "node": {"var_dir": home / "var"},
            "sip": {"listen_port": 0},
            "http": {"listen_port": 0},
            "trunks": [
                {
                    "name": "carrier-sim",
                    "host": "127.0.0.1",
                    "port": sim_port,
                    "allowed_sources": ["127.0.0.1/32"],
                }
            ],
            "carrier_sim": {"listen_port": sim_port, "record_dir": home / "rec", "ring_time": 0.2},
        }
        settings = Settings.model_validate(_merge(base, sections))
        await seed_users(settings)
        running = await start(settings)
        started.append(running)
        return E2EBridge(running, settings.carrier_sim.record_dir or home / "rec")

    try:
        yield factory
    finally:
        for running in reversed(started):
            await running.close()


@pytest.fixture
async def bridge(bridge_factory: BridgeFactory) -> E2EBridge:
    """One bridge with the default e2e settings."""
    return await bridge_factory()


@pytest.fixture(scope="session")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone: espeak-ng speech at 48 kHz mono s16, made once per session."""
    return make_mic_wav(tmp_path_factory.mktemp("mic"))


@pytest.fixture
async def chromium(mic_wav: Path) -> AsyncIterator[BrowserContext]:
    """A browser context on a fresh headless Chromium; no Chromium process outlives the test."""
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, mic_wav)
        pids: set[int] = set()
        try:
            context = await browser.new_context(ignore_https_errors=True)
            yield context
        finally:
            pids = chromium_pids()
            await browser.close()
    leaked = await wait_gone(pids | chromium_pids())
    for pid in leaked:
        os.kill(pid, signal.SIGKILL)
    assert not leaked, f"Chromium processes survived the test: {sorted(leaked)}"
