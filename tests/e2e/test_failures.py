"""Calls from the dialer page that fail, and a browser that vanishes mid-call.

The right SIP status reaches the page (a blocked prefix 403 from the bridge's dial plan,
busy 486 and no answer 480 from the carrier), and after each the bridge holds no call,
call task or UDP socket. A page closed during an answered call (no BYE: its WebSocket just
goes away) is hung up on the carrier side at once. A wrong password is test_register's.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import BrowserContext

from .browser import dial, open_and_register, wait_call_state
from .calls import wait_bridge_idle
from .conftest import USERS, BridgeFactory, E2EBridge

NUMBER = "+15551230001"
BLOCKED = "+19005550123"  # +1900: premium rate, blocked by the default dial plan


async def test_blocked_prefix_is_403_and_busy_is_486(
    chromium: BrowserContext, bridge_factory: BridgeFactory
) -> None:
    bridge = await bridge_factory(carrier_sim={"mode": "busy"})
    orchestrator = bridge.running.orchestrator
    page = await open_and_register(chromium, bridge.base_url, "alice", USERS["alice"])

    await dial(page, BLOCKED)
    ended = await wait_call_state(page, "ended", timeout=10)
    assert ended["code"] == 403 and ended["answeredAt"] is None, ended
    assert not bridge.carrier_sim.calls  # refused before any trunk was dialled
    assert orchestrator.refused == {"destination-blocked": 1}
    await wait_bridge_idle(bridge)

    await dial(page, NUMBER)
    ended = await wait_call_state(page, "ended", timeout=10)
    assert ended["code"] == 486 and ended["answeredAt"] is None, ended
    (sim,) = bridge.carrier_sim.calls
    assert sim.number == NUMBER and not sim.answered
    assert orchestrator.ended == {"busy": 1}
    await wait_bridge_idle(bridge)


async def test_no_answer_is_480_after_ringing(
    chromium: BrowserContext, bridge_factory: BridgeFactory
) -> None:
    bridge = await bridge_factory(carrier_sim={"mode": "no-answer", "no_answer_timeout": 1.0})
    page = await open_and_register(chromium, bridge.base_url, "alice", USERS["alice"])
    await dial(page, NUMBER)
    ringing = await wait_call_state(page, "ringing", timeout=10)
    assert ringing["code"] == 180, ringing
    ended = await wait_call_state(page, "ended", timeout=10)
    assert ended["code"] == 480 and ended["answeredAt"] is None, ended
    assert bridge.running.orchestrator.ended == {"no-answer": 1}
    await wait_bridge_idle(bridge)


async def test_page_closed_mid_call_hangs_up_the_carrier(
    chromium: BrowserContext, bridge: E2EBridge
) -> None:
    page = await open_and_register(chromium, bridge.base_url, "alice", USERS["alice"])
    await dial(page, NUMBER)
    await wait_call_state(page, "answered", timeout=15)
    (sim,) = bridge.carrier_sim.calls
    await asyncio.sleep(0.5)  # media flowing
    assert sim.media_stats().packets_received > 0

    await page.close()  # beforeunload does not run: no BYE, the WebSocket is simply gone
    async with asyncio.timeout(3):
        await sim.wait_ended()
    assert sim.end_reason == "remote-hangup", sim.end_reason
    await wait_bridge_idle(bridge)
    assert bridge.running.orchestrator.ended == {"browser-connection-lost": 1}
