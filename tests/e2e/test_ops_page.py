"""The ops page (``/ops``) in headless Chromium, against a real bridge and its real ops API.

* Live table: the ops page signs in with the bearer token and follows ``/api/stream``. The
  dialer page (a second tab of the same Chromium) calls through the bridge: the call's row
  appears without a reload, with the badges the record justifies (the browser leg's DTLS
  version, SRTP profile and fingerprint check; the gateway leg's TLSv1.3, cipher, SDES suite
  and verified certificate; the PSTN leg's carrier-dependent caveat), and the badges carry
  the same values as the record the dialer received over SIP INFO, a path that does not go
  through the ops API. The detail view, opened while the call is up, shows its events; hanging
  up turns the row into ``ended`` with the end reason and the open detail view takes the end
  from the stream, then shows every field of the final record. A call to a blocked premium
  number (+1900...) shows its refusal. Screenshots are kept as test artifacts in
  :data:`ARTIFACT_DIR` (``ops-page-live.png``: the answered call; ``ops-page.png``: the whole
  page at the end, detail view included), checked to be real pictures of the page, and the
  table is checked to fit the 1440 px viewport (no badge cut off).
* Token and feed faults: a wrong token gets the 401 message and the form again (the token is
  forgotten, never shown); with the right one the feed goes live; when the bridge stops, the
  page says the feed is down and retries with growing delays. The page's SSE framing is fed
  a stream split at awkward places (inside CRLF, inside a field, comments between).

The ops page runs under a strict Content-Security-Policy; every test checks that nothing on
the page violated it.
"""

# ruff: noqa: ASYNC109 - helpers take their bound as a parameter, like browser.py

from __future__ import annotations

import asyncio
import json
import os
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, ViewportSize

from bridge.app import RunningBridge, start
from bridge.security import PSTN_CAVEAT_TEXT
from bridge.settings import Settings
from tests.interop.peers import free_port

from .browser import dial, hang_up, open_and_register, wait_call_state, wait_state
from .conftest import USERS, BridgeFactory

TOKEN = "ops-page-test-token-7f3a9e21c4d5b6a7"
"""The ops API token of the test bridges (``[ops] api_token``)."""
NUMBER = "+441632960123"
BLOCKED = "+19005550100"
ARTIFACT_DIR = Path(
    os.environ.get(
        "PSTN_BRIDGE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
    )
)
"""Where the screenshot is kept (``var/test-artifacts`` of the checkout unless the
environment variable ``PSTN_BRIDGE_TEST_ARTIFACTS`` says otherwise)."""
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
_S = 1000


# --------------------------------------------------------------------------------------------
# Helpers


async def open_ops(context: BrowserContext, base_url: str) -> Page:
    """Open ``/ops``; check its CSP header. Returns the page, showing the token form."""
    page = await context.new_page()
    await page.set_viewport_size(VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = await page.goto(base_url + "ops", timeout=15 * _S)
    assert response is not None and response.ok, response and response.status
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert "strict-transport-security" in response.headers
    assert await page.evaluate("!!window.pstnOps && !!window.PstnOpsFeed"), errors
    assert await page.is_visible("#token-form")
    return page


async def sign_in(page: Page, token: str) -> None:
    """Type the token and press Connect."""
    await page.fill("#token", token)
    await page.click("#connect")


async def wait_ops(page: Page, condition: str, *, timeout: float = 10.0, what: str = "") -> None:
    """Wait until the JS expression ``condition`` (``s`` is window.pstnOps) is true.

    Polled with ``page.evaluate`` (the DevTools protocol): ``wait_for_function`` compiles its
    predicate with ``new Function`` inside the page, which the ops page's CSP forbids.
    """
    check = f"(() => {{ const s = window.pstnOps; return !!s && !!({condition}); }})()"
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(check):
        if asyncio.get_running_loop().time() > deadline:
            state = await page.evaluate("JSON.stringify(window.pstnOps)")
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {state}")
        await asyncio.sleep(0.05)


async def row_text(page: Page, call_id: str, column: str) -> str:
    text: str = await page.inner_text(f'tr[data-call-id="{call_id}"] td[data-col="{column}"]')
    return text


async def badge(page: Page, call_id: str, leg: str) -> tuple[str, str]:
    """(data-encrypted, text) of one leg's badge in a call's row."""
    locator = page.locator(f'tr[data-call-id="{call_id}"] .leg-badge[data-leg="{leg}"]')
    assert await locator.count() == 1, f"{call_id}: {await locator.count()} {leg} badges"
    return (await locator.get_attribute("data-encrypted") or "", await locator.inner_text())


def png_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct scanlines) of a PNG, from its IHDR and decompressed IDATs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = len(raw) // height
    rows = {raw[i * stride : (i + 1) * stride] for i in range(height)}
    return width, height, len(rows)


def assert_picture(data: bytes, *, min_height: int) -> None:
    """A screenshot of the page as laid out: viewport wide, tall enough, not blank."""
    width, height, distinct_rows = png_size(data)
    assert width == VIEWPORT["width"] and height >= min_height, (width, height)
    assert len(data) > 40_000 and distinct_rows > 150, (len(data), distinct_rows)


async def assert_table_fits(page: Page) -> None:
    """Nothing of the calls table is cut off or scrolled out of the card at this width."""
    hidden = await page.evaluate(
        """() => {
        const wrap = document.querySelector('.table-wrap');
        const box = wrap.getBoundingClientRect();
        const out = [...document.querySelectorAll('#call-rows .leg-badge')].filter((b) => {
          const r = b.getBoundingClientRect();
          return r.right > box.right + 0.5 || r.left < box.left - 0.5;
        }).map((b) => `${b.closest('tr').dataset.callId} ${b.dataset.leg}`);
        if (wrap.scrollWidth > wrap.clientWidth) out.push(`table ${wrap.scrollWidth} px wide`);
        return out;
    }"""
    )
    assert hidden == [], f"cut off at {VIEWPORT['width']} px: {hidden}"


async def event_names(page: Page) -> list[str]:
    """The event column of the detail view, in order."""
    names: list[str] = await page.eval_on_selector_all(
        "#event-rows tr", "rows => rows.map(r => r.dataset.event)"
    )
    return names


def _leg(record: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(leg for leg in record["legs"] if leg["leg"] == name)
    return found


async def assert_no_csp_violation(page: Page) -> None:
    violations = await page.evaluate("window.pstnOps.cspViolations")
    assert violations == [], violations


# --------------------------------------------------------------------------------------------
# Tests


@pytest.fixture
def artifact_dir() -> Path:
    """:data:`ARTIFACT_DIR`, created."""
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACT_DIR


async def test_ops_page_follows_calls_live(
    bridge_factory: BridgeFactory, chromium: BrowserContext, artifact_dir: Path
) -> None:
    bridge = await bridge_factory(ops={"api_token": TOKEN})
    ops = await open_ops(chromium, bridge.base_url)
    await sign_in(ops, TOKEN)
    await wait_ops(ops, "s.feed === 'live'", what="the live feed")
    assert await ops.is_visible("#board") and not await ops.is_visible("#token-form")
    await ops.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # a call through the bridge from the dialer page (second tab)
    dialer = await open_and_register(chromium, bridge.base_url, "alice", USERS["alice"])
    await dial(dialer, NUMBER)
    await wait_call_state(dialer, "answered", timeout=15)
    await wait_state(
        dialer,
        "s.record !== null && s.record.legs.length >= 3 && s.record.legs[1].encrypted === true"
        " && s.record.legs[0].encrypted === true",
        what="the dialer's complete record",
    )
    record: dict[str, Any] = await dialer.evaluate("window.pstnBridge.record")
    call_id = record["call_id"]
    row = f'tr[data-call-id="{call_id}"]'
    await wait_ops(
        ops,
        f'!!document.querySelector(\'{row}[data-phase="answered"] '
        f'.leg-badge[data-leg="gateway"][data-encrypted="true"]\') && '
        f'!!document.querySelector(\'{row} .leg-badge[data-leg="webrtc"][data-encrypted="true"]\')',
        what="the answered call's row with both legs encrypted",
    )
    assert await row_text(ops, call_id, "parties") == f"alice → {NUMBER}"
    assert "outbound" in await row_text(ops, call_id, "direction")
    webrtc, gateway = _leg(record, "webrtc"), _leg(record, "gateway")
    lock, text = await badge(ops, call_id, "webrtc")
    assert lock == "true" and "ENCRYPTED" in text.upper()
    assert webrtc["media"]["srtp_profile"] in text and webrtc["media"]["dtls_version"] in text
    assert "DTLS-SRTP" in text and "fingerprint ✓" in text
    lock, text = await badge(ops, call_id, "gateway")
    assert lock == "true"
    assert gateway["signaling"]["tls_version"] == "TLSv1.3" and "TLSv1.3" in text
    assert gateway["signaling"]["cipher"] in text and gateway["media"]["crypto_suite"] in text
    assert "cert verified ✓" in text
    lock, text = await badge(ops, call_id, "pstn")
    assert lock == "null" and "CARRIER-DEPENDENT" in text.upper() and "ENCRYPTED" not in text
    assert PSTN_CAVEAT_TEXT in await ops.inner_text("#pstn-caveat")
    await assert_table_fits(ops)
    live_shot = await ops.screenshot(path=str(artifact_dir / "ops-page-live.png"))
    assert_picture(live_shot, min_height=VIEWPORT["height"])

    # the detail view of the call while it is up: the record so far and its events
    await ops.click(f"{row} td[data-col='call-id']")
    await wait_ops(
        ops,
        f"s.detail && s.detail.callId === '{call_id}' && !s.detail.loading",
        what="the detail view",
    )
    assert await ops.is_visible("#detail")
    assert "in progress" in await ops.inner_text("#detail-summary")
    events = await event_names(ops)
    assert events[0] == "started" and "answered" in events and "ended" not in events, events

    # hang up: the row turns into an ended call with its end reason, the open detail view
    # takes the end from the stream (its events were loaded once, while the call was up)
    await hang_up(dialer)
    await wait_ops(
        ops, f"!!document.querySelector('{row}[data-phase=\"ended\"]')", what="the ended row"
    )
    assert "ended · caller-hangup" in await row_text(ops, call_id, "state")
    assert "talk" in await row_text(ops, call_id, "duration")
    await wait_ops(ops, "s.detail.events.some(e => e.final)", what="the end in the detail view")
    events = await event_names(ops)
    assert events[0] == "started" and events[-1] == "ended", events
    assert "answered" in events and "leg-up" in events, events
    assert "ended (final)" in await ops.inner_text("#event-rows tr:last-child")
    assert "ended: caller-hangup" in await ops.inner_text("#detail-summary")
    shown = await ops.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#detail-fields dd')]"
        ".map(dd => [dd.dataset.field, dd.textContent]))"
    )
    final_record = await ops.evaluate(f"window.pstnOps.calls['{call_id}'].record")
    for key, value in final_record.items():
        if key in ("legs", "policy_refusals"):
            continue
        expected = "null (not observed)" if value is None else value
        if isinstance(value, bool):
            expected = json.dumps(value)
        elif isinstance(value, list):
            expected = ", ".join(value) if value else "[]"
        assert shown.get(key) == str(expected), (key, shown.get(key), value)
    assert shown["end_reason"] == "caller-hangup" and shown["call_id"] == call_id
    assert shown["ended_at"].startswith("20"), shown
    legs = await ops.eval_on_selector_all("#detail-legs .leg", "els => els.map(e => e.dataset.leg)")
    assert legs == ["webrtc", "gateway", "pstn"]

    # a premium-rate number: refused by policy, visible as such
    await dial(dialer, BLOCKED)
    refused_call = await wait_call_state(dialer, "ended")
    assert refused_call["code"] == 403, refused_call
    find = f'Object.values(window.pstnOps.calls).find(c => c.record.to === "{BLOCKED}")'
    await wait_ops(ops, f"!!({find}) && ({find}).final", what="the refused call")
    refused_id = await ops.evaluate(f"({find}).record.call_id")
    refused_text = await ops.inner_text(f'tr[data-call-id="{refused_id}"][data-phase="ended"]')
    assert "refused: destination-blocked" in refused_text, refused_text
    assert "ended · policy-refused (403)" in refused_text, refused_text
    assert "ENCRYPTED" not in refused_text.replace("NOT ENCRYPTED", ""), refused_text

    # all of it arrived live: same document, one connection, updates taken from the stream
    assert await ops.evaluate("window.__sameDocument === true")
    counters = await ops.evaluate("window.pstnOps.counters")
    assert counters["attempts"] == 1 and counters["messages"] >= 6, counters
    assert await ops.locator("#call-rows tr").count() == 2
    await assert_no_csp_violation(ops)
    assert TOKEN not in await ops.content()

    await assert_table_fits(ops)
    final_shot = await ops.screenshot(path=str(artifact_dir / "ops-page.png"), full_page=True)
    assert_picture(final_shot, min_height=VIEWPORT["height"] + 200)  # the detail view below


@pytest.fixture
async def lone_bridge(tmp_path: Path) -> AsyncIterator[list[RunningBridge]]:
    """A bridge the test may stop itself (``list.pop()`` it); stopped at teardown if not."""
    sim_port = free_port()
    settings = Settings.model_validate(
        {
            "node": {"var_dir": tmp_path / "var"},
            "sip": {"listen_port": 0},
            "http": {"listen_port": 0},
            "trunks": [
                {
                    "name": "sim",
                    "host": "127.0.0.1",
                    "port": sim_port,
                    "allowed_sources": ["127.0.0.1/32"],
                }
            ],
            "carrier_sim": {"listen_port": sim_port, "record_dir": tmp_path / "rec"},
            "ops": {"api_token": TOKEN},
        }
    )
    running = [await start(settings)]
    try:
        yield running
    finally:
        for bridge in running:
            await bridge.close()


async def test_ops_page_token_and_feed_faults(
    lone_bridge: list[RunningBridge], chromium: BrowserContext
) -> None:
    base_url = f"https://127.0.0.1:{lone_bridge[0].https_port}/"
    ops = await open_ops(chromium, base_url)

    # a wrong token: 401, said plainly; the form again; the token kept nowhere
    wrong = "not-the-ops-token-0123456789abcdef"
    await sign_in(ops, wrong)
    await wait_ops(ops, "s.auth === 'unauthorized'", what="the 401")
    assert "401" in await ops.inner_text("#auth-status")
    assert "token" in (await ops.inner_text("#auth-status")).lower()
    assert await ops.is_visible("#token-form") and not await ops.is_visible("#board")
    assert await ops.inner_text("#feed-badge") == "token refused"
    assert await ops.evaluate("Object.keys(sessionStorage).length") == 0
    assert wrong not in await ops.content()

    # the right token: live; kept in this tab's sessionStorage only
    await sign_in(ops, TOKEN)
    await wait_ops(ops, "s.feed === 'live' && s.auth === 'ok'", what="the live feed")
    assert await ops.evaluate("sessionStorage.getItem('pstn-bridge.ops-token')") == TOKEN
    assert await ops.evaluate("localStorage.length") == 0
    assert "No calls yet" in await ops.inner_text("#no-calls")

    # the bridge stops: the page says the feed is down and backs off (1 s, 2 s, 4 s, ...)
    attempts = await ops.evaluate("window.pstnOps.counters.attempts")
    await lone_bridge.pop().close()
    await wait_ops(ops, "s.feed === 'down'", what="feed down")
    banner = await ops.inner_text("#feed-banner")
    assert await ops.is_visible("#feed-banner") and "Live feed down" in banner, banner
    assert await ops.inner_text("#feed-badge") == "feed down"
    await wait_ops(
        ops,
        f"s.counters.attempts >= {attempts + 2} && s.feed === 'down'",
        timeout=8,
        what="two retries",
    )
    assert await ops.evaluate("window.pstnOps.retryInMs") == 4000

    # a badge follows `encrypted` alone: facts present but not confirmed never read "encrypted"
    badges = await ops.evaluate(
        """() => [true, false, null, undefined].map((encrypted) => {
        const leg = { leg: 'gateway', encrypted, signaling: { tls_version: 'TLSv1.3',
          cipher: 'TLS_AES_256_GCM_SHA384', peer_certificate_verified: true },
          media: { protocol: 'SRTP', crypto_suite: 'AEAD_AES_128_GCM' } };
        const badge = window.PstnOpsRender.legBadge(leg);
        return [badge.className, badge.dataset.encrypted, badge.querySelector('.lock').textContent];
    })"""
    )
    assert badges == [
        ["leg-badge lock-true", "true", "encrypted"],
        ["leg-badge lock-false", "false", "⚠ not encrypted"],
        ["leg-badge lock-null", "null", "unknown"],
        ["leg-badge lock-null", "null", "unknown"],
    ], badges

    # SSE framing: the same messages whatever the chunking
    parsed = await ops.evaluate(
        """() => {
        const text = ': connected\\r\\n\\r\\nevent: call\\r\\ndata: {"a":\\r\\ndata: 1}\\r\\n\\r\\n'
          + ': keep-alive\\n\\nevent: call\\ndata:{"b":2}\\n\\n' + 'data: plain\\r\\r\\n';
        const runs = [];
        for (const size of [1, 2, 3, 7, text.length]) {
          const got = [];
          let comments = 0;
          const parser = window.PstnOpsFeed.createSseParser(
            (type, data) => got.push([type, data]), () => { comments += 1; });
          for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
          runs.push({ got, comments });
        }
        return runs;
    }"""
    )
    expected = [["call", '{"a":\n1}'], ["call", '{"b":2}'], ["message", "plain"]]
    for run in parsed:
        assert run == {"got": expected, "comments": 2}, run
    await assert_no_csp_violation(ops)
