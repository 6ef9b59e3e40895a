"""Our trunks against real peers on loopback: SIPp (behind stunnel) and baresip.

SIPp plays carriers that answer, challenge, refuse (486, 488), give early media (183 with
SDP) and demand a larger session interval (422); SIPp also calls in. baresip (mandatory
SDES-SRTP) is called and calls in. Every wait is bounded; a missing peer fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import pytest

from sip_gateway.aio import SipEndpointConfig
from sip_gateway.sdp import SdesCrypto
from sip_gateway.trunk import (
    Answer,
    CallFailedError,
    CallFailure,
    EarlyMediaStarted,
    EndReason,
    TrunkGateway,
)
from tests.interop.peers import free_port, wait_log

from .helpers import CALLER, GATEWAY, Events, FakeMedia, trunk_config

pytestmark = pytest.mark.interop

LIMIT = 15.0
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SHA1_80 = "AES_CM_128_HMAC_SHA1_80"


@contextlib.asynccontextmanager
async def trunk_to(pki, port: int, *, route=None, listen: bool = False, **trunk):
    quick = SipEndpointConfig(close_timeout=0.5)  # baresip ignores close_notify
    gw = TrunkGateway(
        [trunk_config(pki, "carrier", port, **trunk)], route=route, endpoint_config=quick
    )
    if listen:
        await gw.listen("127.0.0.1", free_port(), pki.server_context())
    try:
        yield gw
    finally:
        async with asyncio.timeout(5):
            await gw.aclose()


def requests(messages: str, method: str) -> list[str]:
    return re.findall(rf"^\s*({method} \S+ SIP/2\.0)\s*$", messages, re.M)


async def call_and_wait(gw, *, expect_failure: bool = False):
    events, media = Events(), FakeMedia()
    call = gw.call("carrier", GATEWAY, media=media, caller=CALLER, on_event=events)
    if expect_failure:
        with pytest.raises(CallFailedError) as failure:
            await call.wait_answered()
        return call, failure.value, events
    return call, await call.wait_answered(), events


async def test_sipp_answers_and_we_hang_up(pki, sipp_tls_uas):
    uas = sipp_tls_uas("uas_tls_answer")
    async with trunk_to(pki, uas.port) as gw, asyncio.timeout(LIMIT):
        call, config, events = await call_and_wait(gw)
        assert isinstance(config.crypto, SdesCrypto) and config.crypto.suite == SHA1_80
        assert config.codec.name == "PCMU"
        assert events.types() == ["CallProceeding", "CallAnswered"]
        assert call.endpoint.tls is not None and call.endpoint.tls.peer_certificate_verified
        await call.hangup()
        result = await uas.sipp.stop_async()
    assert call.end.reason is EndReason.LOCAL_HANGUP
    assert result.stats.successful == 1, result.describe()
    messages = result.messages()
    assert [len(requests(messages, m)) for m in ("INVITE", "ACK", "BYE")] == [1, 1, 1]


async def test_sipp_digest_challenge(pki, sipp_tls_uas):
    uas = sipp_tls_uas("uas_digest_401", keys={"auth_user": "acct", "auth_pass": "s3cret"})
    credentials = {"username": "acct", "password": "s3cret", "auth_realm": "sipp.test"}
    async with trunk_to(pki, uas.port, **credentials) as gw, asyncio.timeout(LIMIT):
        call, _config, _events = await call_and_wait(gw)
        assert call.invites_sent == 2
        await call.hangup()
        result = await uas.sipp.stop_async()
    assert result.stats.successful == 1, result.describe()


@pytest.mark.parametrize(
    ("scenario", "failure", "status"),
    [("uas_busy_486", CallFailure.BUSY, 486), ("uas_488", CallFailure.ENCRYPTION_REFUSED, 488)],
)
async def test_sipp_refusals(pki, sipp_tls_uas, scenario, failure, status):
    uas = sipp_tls_uas(SCENARIOS / f"{scenario}.xml")
    async with trunk_to(pki, uas.port) as gw, asyncio.timeout(LIMIT):
        call, error, _events = await call_and_wait(gw, expect_failure=True)
        assert (error.failure, error.status_code) == (failure, status)
        end = await call.wait_ended()
        result = await uas.sipp.stop_async()
    assert end.failure is failure
    assert result.stats.successful == 1, result.describe()  # our transaction ACKed it


async def test_sipp_early_media_then_answer(pki, sipp_tls_uas):
    uas = sipp_tls_uas(SCENARIOS / "uas_183_then_200.xml")
    async with trunk_to(pki, uas.port) as gw, asyncio.timeout(LIMIT):
        call, config, events = await call_and_wait(gw)
        early = await events.wait_for(EarlyMediaStarted)
        assert early.media == config and config.codec.name == "PCMA"
        assert events.types() == [
            "CallProceeding",
            "EarlyMediaStarted",
            "CallRinging",
            "CallAnswered",
        ]
        assert call.media.applied == [config]
        await call.hangup()
        result = await uas.sipp.stop_async()
    assert result.stats.successful == 1, result.describe()


async def test_sipp_session_interval_too_small(pki, sipp_tls_uas):
    uas = sipp_tls_uas(SCENARIOS / "uas_422_timer.xml")
    async with trunk_to(pki, uas.port, session_expires=300) as gw, asyncio.timeout(LIMIT):
        call, _config, _events = await call_and_wait(gw)
        assert call.invites_sent == 2 and call.timer.interval == 600
        await call.hangup()
        result = await uas.sipp.stop_async()
    assert result.stats.successful == 1, result.describe()


async def test_sipp_calls_in_and_hangs_up(pki, sipp_tls_uac):
    calls, media = [], FakeMedia()

    async def route(call):
        calls.append(call)
        return Answer(media=media)

    async with trunk_to(pki, 5061, route=route, listen=True) as gw, asyncio.timeout(LIMIT):
        port = gw._server.port
        run = sipp_tls_uac("uac_invite_hangup_tls", port, service=GATEWAY)
        result = await run.sipp.wait_async(10)
        (inbound,) = calls
        end = await inbound.wait_ended()
    assert result.stats.successful == 1, result.describe()
    assert (inbound.did, inbound.caller) == (GATEWAY, "+15550001111")
    assert end.reason is EndReason.REMOTE_HANGUP and media.closed == 1
    assert media.applied[0].crypto.suite == SHA1_80


async def test_sipp_plain_rtp_offer_gets_488_inbound(pki, sipp_tls_uac):
    calls = []

    async def route(call):
        calls.append(call)
        return Answer(media=FakeMedia())

    async with trunk_to(pki, 5061, route=route, listen=True) as gw, asyncio.timeout(LIMIT):
        run = sipp_tls_uac("uac_invite_plain_rtp_tls", gw._server.port, service=GATEWAY)
        result = await run.sipp.wait_async(10)
    assert result.stats.successful == 1, result.describe()
    assert re.findall(r"^\s*SIP/2\.0 (\d{3}) ", result.messages(), re.M) == ["100", "488"]
    assert calls == []


async def test_we_call_baresip(pki, baresip):
    gw_peer = baresip("gw", GATEWAY)
    async with trunk_to(pki, gw_peer.tls_port) as gw, asyncio.timeout(LIMIT):
        ctrl = await gw_peer.ctrl()
        call, config, _events = await call_and_wait(gw)
        await ctrl.wait_event("CALL_ESTABLISHED", timeout=10)
        assert config.crypto.suite == "AEAD_AES_256_GCM"  # our first suite, baresip's choice
        await call.hangup()
        await ctrl.wait_event("CALL_CLOSED", timeout=5)
    wait_log(gw_peer.log, "SRTP is Enabled (cryptosuite=AEAD_AES_256_GCM)", timeout=2)


async def test_baresip_calls_in_and_we_hang_up(pki, baresip):
    carrier = baresip("carrier", "carrier")
    calls, media = [], FakeMedia()

    async def route(call):
        calls.append(call)
        return Answer(media=media)

    async with (
        trunk_to(pki, carrier.tls_port, route=route, listen=True) as gw,
        asyncio.timeout(LIMIT),
    ):
        ctrl = await carrier.ctrl()
        target = f"sip:{GATEWAY}@127.0.0.1:{gw._server.port};transport=tls"
        reply = await ctrl.command("dial", target)
        assert reply["ok"] is True, reply
        await ctrl.wait_event("CALL_ESTABLISHED", timeout=10)
        (inbound,) = calls
        assert inbound.did == GATEWAY
        await inbound.hangup()  # BYE to baresip's Contact, over a verified connection
        await ctrl.wait_event("CALL_CLOSED", timeout=5)
    assert inbound.end.reason is EndReason.LOCAL_HANGUP
    assert media.applied[0].crypto.suite in {"AEAD_AES_256_GCM", "AEAD_AES_128_GCM", SHA1_80}
