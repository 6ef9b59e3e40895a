"""Faults under load: 50 concurrent calls through a real bridge, with faults injected.

A bridge (``bridge.app.start``, the embedded carrier simulator, SQLite, ``[sip]
media_timeout`` of 3 s) carries 50 answered calls from packet-level browsers
(:class:`tests.webrtc_client.WebRtcClient`: one client for most calls, one client per
call whose browser vanishes), G.711 relayed for most, a few Opus transcoded. After a few
seconds of talk the faults are injected on the carrier side through the simulator's own
call objects (a real peer's behaviour, no mock): a BYE mid-call, the media stopped (its
RTP port closed), the simulator's TLS connection dropped (the calls it carried go silent
too, as when a carrier's node dies); on the browser side a WebSocket closed without BYE.
The remaining calls are hung up by their browsers.

Afterwards every call has a CDR in the store with the end reason its fault maps to, a
frozen record with its three legs; and ``/metrics`` (read over HTTPS with the bearer
token) shows no active call or dialog, and no more open transactions, media UDP sockets,
SRTP sessions or asyncio tasks than before the calls (those counts are process-wide, so the
baseline is taken once the bridge and the test's clients are connected and idle).
"""

from __future__ import annotations

import asyncio
import gc
import re
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import RunningBridge, start
from sip_gateway.carrier_sim import SimCall
from sip_gateway.devcerts import ensure_dev_pki
from sip_gateway.tls import TlsClientConfig, client_context
from tests.bridge.fault_support import DID, NUMBER, PASSWORD, USER, bridge_settings, client_config
from tests.userdb import add_users
from tests.webrtc_audio import opus_packets, pcmu_payloads, speech_8k, speech_48k
from tests.webrtc_client import ClientCall, PacketSource, WebRtcClient

TOKEN = "faults-test-token-0123456789abcdef"
MEDIA_TIMEOUT = 3.0
TALK = 4.0
PLAN: dict[str, tuple[int, str]] = {
    # fault: (calls, expected end reason)
    "none": (24, "caller-hangup"),
    "carrier-bye": (8, "callee-hangup"),
    "carrier-media-stops": (6, "media-timeout"),
    "carrier-connection-drops": (6, "media-timeout"),
    "browser-vanishes": (6, "browser-connection-lost"),
}
OPUS_EVERY = 10  # every tenth call of the main client is Opus (transcoded)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"))


async def _metrics(running: RunningBridge, ca: Path) -> dict[str, float]:
    """``/metrics`` over HTTPS with the bearer token: ``name{labels}`` -> value."""
    ssl = client_context(TlsClientConfig(ca_file=ca))
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl)) as session,
        session.get(
            f"https://127.0.0.1:{running.https_port}/metrics",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        assert response.status == 200
        text = await response.text()
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(pstn_bridge_\w+(?:\{[^}]*\})?) (\S+)", line)
        if match:
            values[match[1]] = float(match[2])
    return values


HELD = (
    "pstn_bridge_active_calls",
    'pstn_bridge_sip_dialogs{side="browser"}',
    'pstn_bridge_sip_dialogs{side="gateway"}',
    'pstn_bridge_sip_transactions{state="open"}',
    'pstn_bridge_udp_sockets{kind="rtp"}',
    'pstn_bridge_udp_sockets{kind="ice"}',
    'pstn_bridge_srtp_sessions{leg="gateway"}',
    'pstn_bridge_srtp_sessions{leg="webrtc"}',
)
"""What a call holds. The process-wide counts also hold what other code in this process
made (another test module's objects built at collection): compared with a baseline."""


async def _settled(
    running: RunningBridge, ca: Path, baseline: dict[str, float], *, tasks: bool = True
) -> dict[str, float]:
    """The metrics once nothing more is held than in ``baseline`` (bounded: 10 s)."""
    values: dict[str, float] = {}
    names = [*HELD, "pstn_bridge_asyncio_tasks"] if tasks else list(HELD)
    for _ in range(50):
        gc.collect()
        values = await _metrics(running, ca)
        if all(values[name] <= baseline[name] for name in names):
            break
        await asyncio.sleep(0.2)
    return values


async def _dial(client: WebRtcClient, opus: bool) -> ClientCall:
    codecs = ("opus",) if opus else ("PCMU",)
    call = await client.dial(NUMBER, codecs=codecs)
    await call.wait_answered(20)
    if opus:
        call.play(PacketSource("opus", opus_packets(speech_48k(1.0))))
    else:
        call.play(PacketSource("PCMU", pcmu_payloads(speech_8k(1.0))))
    return call


@pytest.mark.timeout(120)
async def test_fifty_calls_with_faults_end_right_and_leave_nothing(
    tmp_path: Path, pki: Any
) -> None:
    settings = bridge_settings(
        tmp_path,
        pki,
        sip={"media_timeout": MEDIA_TIMEOUT},
        ops={"api_token": TOKEN},
    )
    await add_users(settings, [(USER, PASSWORD, (DID,))])
    running = await start(settings)
    ca = pki.ca_certificate
    main = WebRtcClient(client_config(running, settings, ca))
    vanishing = [
        WebRtcClient(client_config(running, settings, ca))
        for _ in range(PLAN["browser-vanishes"][0])
    ]
    clients = [main, *vanishing]
    try:
        initial = await _metrics(running, ca)
        assert initial["pstn_bridge_active_calls"] == 0
        for client in clients:
            await client.connect()
        # a first call opens the trunk connection: the baseline holds every connection
        warm_up = await _dial(main, opus=False)
        assert await warm_up.hangup() == 200
        async with asyncio.timeout(5):
            while running.orchestrator.active:  # noqa: ASYNC110 - bounded poll
                await asyncio.sleep(0.05)
        await warm_up.aclose()
        before = await _settled(running, ca, initial, tasks=False)
        faults = [f for f, (n, _) in PLAN.items() if f != "browser-vanishes" for _ in range(n)]
        limit = asyncio.Semaphore(10)

        async def dial(client: WebRtcClient, index: int) -> ClientCall:
            async with limit:
                return await _dial(client, opus=index % OPUS_EVERY == 0)

        main_calls = await asyncio.gather(*(dial(main, i) for i in range(len(faults))))
        gone_calls = await asyncio.gather(*(dial(c, 1) for c in vanishing))
        calls = list(zip(faults, main_calls, strict=True)) + [
            ("browser-vanishes", call) for call in gone_calls
        ]
        assert running.orchestrator.active == 50
        for _, call in calls:
            await call.wait_media()
        during = await _metrics(running, ca)  # the counts see every call (and its peers)
        assert during['pstn_bridge_sip_dialogs{side="browser"}'] == 50
        assert during['pstn_bridge_sip_dialogs{side="gateway"}'] == 50
        for name in HELD[4:]:  # sockets and SRTP: the bridge's and the test's peers'
            assert during[name] >= before[name] + 100, (name, during[name])
        await asyncio.sleep(TALK / 2)

        # the bridge's call and the carrier's call of each browser call
        assert running.carrier_sim is not None
        sim_by_id: dict[str, SimCall] = {c.call_id: c for c in running.carrier_sim.calls}
        bridge_ids: dict[ClientCall, str] = {}
        sim_of: dict[ClientCall, SimCall] = {}
        for bridge_call in running.orchestrator.calls.values():
            assert bridge_call.browser is not None and bridge_call.gateway is not None
            for _, call in calls:
                assert call.request is not None
                if call.request.call_id == bridge_call.browser.call_id:
                    bridge_ids[call] = bridge_call.call_id
                    sim_of[call] = sim_by_id[bridge_call.gateway.call_id]
        assert len(bridge_ids) == 50

        # inject
        dropped = set()
        for fault, call in calls:
            sim_call = sim_of[call]
            if fault == "carrier-bye":
                await sim_call.hangup()
            elif fault in ("carrier-media-stops", "carrier-connection-drops"):
                assert sim_call.media is not None
                sim_call.media.close()
            if fault == "carrier-connection-drops":
                assert sim_call.leg is not None and sim_call.leg.endpoint is not None
                dropped.add(sim_call.leg.endpoint)
        for endpoint in dropped:
            endpoint.close()
        for client in vanishing:
            await client.drop()
        await asyncio.sleep(TALK / 2)
        for fault, call in calls:
            if fault == "none":
                assert not call.ended, call.ended_by
                # loosely: the carrier's echo came back (at least half the talk time's frames)
                assert call.reception.count >= TALK / 2 * 50, call.reception.count
                assert await call.hangup() == 200
        async with asyncio.timeout(MEDIA_TIMEOUT + 10):
            while running.orchestrator.active:  # noqa: ASYNC110 - bounded poll
                await asyncio.sleep(0.1)
        for call in gone_calls:  # the vanished tabs' own media (counted process-wide too)
            await call.aclose()

        # the carrier's BYEs and the bridge's BYEs reached the browsers
        for fault, call in calls:
            if fault in ("carrier-bye", "carrier-media-stops", "carrier-connection-drops"):
                await call.wait_ended(5)
                assert call.ended_by == "remote BYE", (fault, call.ended_by)

        # every call's CDR, with the end reason of its fault
        store = running.call_store
        assert store is not None
        await store.drain()
        reasons: Counter[tuple[str, str]] = Counter()
        for fault, call in calls:
            record = await store.get_call(bridge_ids[call])
            assert record is not None
            reasons[fault, record["end_reason"]] += 1
            assert record["ended_at"] is not None
            legs = {leg["leg"]: leg for leg in record["legs"]}
            assert set(legs) == {"webrtc", "gateway", "pstn"}
            assert legs["webrtc"]["encrypted"] is True
            assert legs["gateway"]["encrypted"] is True
            events = await store.call_events(bridge_ids[call])
            assert events[-1]["event"] == "ended" and events[-1]["final"] is True
        assert reasons == Counter({(f, reason): n for f, (n, reason) in PLAN.items()})

        after = await _settled(running, ca, before)
        assert after["pstn_bridge_active_calls"] == 0
        assert after['pstn_bridge_sip_dialogs{side="browser"}'] == 0
        assert after['pstn_bridge_sip_dialogs{side="gateway"}'] == 0
        for name in HELD:
            assert after[name] <= before[name], (name, after[name], before[name])
        left = "\n".join(sorted(t.get_name() for t in asyncio.all_tasks()))
        assert after["pstn_bridge_asyncio_tasks"] <= before["pstn_bridge_asyncio_tasks"], left
        assert after['pstn_bridge_calls_ended_total{reason="media-timeout"}'] == 12
    finally:
        for client in clients:
            await client.close(hangup=True)
        await running.close()
