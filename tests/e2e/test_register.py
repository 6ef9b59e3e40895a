"""The dialer page served by the bridge registers over WSS with digest; a wrong password is refused.

JsSIP 3.13.8 keeps only the LAST WWW-Authenticate/Proxy-Authenticate header of a challenge
(its Parser stores them with setHeader, which replaces) and answers only MD5. A bridge that
listed MD5 first and SHA-256 second would lock every JsSIP user out, so the bridge lists
SHA-256 first and MD5 last (also RFC 8760's preferred-first order); these tests prove it.
"""

from __future__ import annotations

from playwright.async_api import BrowserContext

from .browser import open_dialer, read_state, register
from .conftest import USERS, E2EBridge


async def test_page_is_served_with_hsts(chromium: BrowserContext, bridge: E2EBridge) -> None:
    page = await chromium.new_page()
    response = await page.goto(bridge.base_url, timeout=15000)
    assert response is not None and response.status == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert await page.title() == "pstn-bridge dialer"
    assert await page.evaluate("typeof window.JsSIP") == "object"  # the bundle is served
    assert await page.input_value("#ws-url") == bridge.ws_url  # default: this host's /sip
    state = await read_state(page)
    assert state["registered"] is False and state["call"]["state"] == "idle"


async def test_registers_with_the_right_password(
    chromium: BrowserContext, bridge: E2EBridge
) -> None:
    page = await open_dialer(chromium, bridge.base_url)
    registration = await register(page, "alice", USERS["alice"], timeout=10)
    assert registration == {"state": "registered", "code": 200, "reason": "OK"}
    state = await read_state(page)
    assert state["registered"] is True
    assert await page.text_content("#reg-badge") == "registered"
    assert await page.is_enabled("#unregister")


async def test_wrong_password_shows_403(chromium: BrowserContext, bridge: E2EBridge) -> None:
    page = await open_dialer(chromium, bridge.base_url)
    registration = await register(page, "alice", "not the password", timeout=10)
    assert registration["state"] == "failed"
    assert registration["code"] == 403, registration
    assert "403" in (await page.text_content("#reg-status") or "")
    state = await read_state(page)
    assert state["registered"] is False
    assert "not the password" not in " ".join(state["log"])
