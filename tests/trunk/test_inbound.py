"""Our gateway calling our gateway on loopback: inbound acceptance (address allow-list,
client certificates), screening (488, 484), routing decisions, CANCEL and BYE from the
carrier, and RFC 4028 session refreshes as refresher and as responder."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest

from sip_gateway.tls import ClientAuth
from sip_gateway.trunk import (
    Answer,
    CallAnswered,
    CallFailedError,
    CallFailure,
    CallRinging,
    EarlyMediaStarted,
    EndReason,
    OutboundCall,
    Refresher,
    Reject,
    SessionRefreshed,
)

from .helpers import CALLER, GATEWAY, Events, FakeMedia, eventually, gateway_pair

LIMIT = 8.0
CLIENT_NAME = "pstn-bridge-dev-client"  # tests.pki's client certificate (DNS SAN)


class Carrier:
    """A routing callback that answers (or rejects) and keeps what it saw."""

    def __init__(self, decision=None, *, wait: float = 0.0) -> None:
        self.calls = []
        self.media = FakeMedia()
        self.events = Events()
        self.decision = decision
        self.wait = wait

    async def __call__(self, call):
        self.calls.append(call)
        call.on_event = self.events
        if self.wait:
            call.ring()
            await asyncio.sleep(self.wait)
        return self.decision or Answer(media=self.media)


async def place(pair, number: str = GATEWAY):
    events, media = Events(), FakeMedia()
    call = pair.bridge.call("carrier", number, media=media, caller=CALLER, on_event=events)
    return call, media, events


async def test_inbound_call_is_routed_answered_and_hung_up_by_the_carrier(pki):
    carrier = Carrier()
    async with gateway_pair(pki, carrier_route=carrier) as pair, asyncio.timeout(LIMIT):
        call, media, events = await place(pair)
        config = await call.wait_answered()
        (inbound,) = carrier.calls
        assert (inbound.did, inbound.caller, inbound.trunk.name) == (GATEWAY, CALLER, "bridge")
        assert inbound.endpoint.peer[0] == "127.0.0.1"
        assert carrier.events.types() == ["CallRinging", "CallAnswered"]
        assert carrier.media.applied[0].crypto.local_key == config.crypto.remote_key
        assert config.crypto.local_key == carrier.media.applied[0].crypto.remote_key
        ringing = await events.wait_for(CallRinging)
        assert ringing.status_code == 180
        # the carrier's 2xx: RFC 4028 answer to a supporting UAC
        assert call.response.headers.get("Require") == "timer"
        assert call.response.headers.get("Session-Expires") == "1800;refresher=uac"
        assert (
            call.timer.refresher is Refresher.LOCAL and inbound.timer.refresher is Refresher.REMOTE
        )
        await eventually(lambda: inbound._acked)
        await inbound.hangup()  # BYE to the bridge's Contact (its listener)
        end = await call.wait_ended()
        assert end.reason is EndReason.REMOTE_HANGUP
        assert inbound.end.reason is EndReason.LOCAL_HANGUP
        assert media.closed == 1 and carrier.media.closed == 1
        assert pair.bridge.calls == frozenset() and pair.carrier.calls == frozenset()


@pytest.mark.parametrize(
    ("status", "failure"),
    [(486, CallFailure.BUSY), (404, CallFailure.NOT_FOUND), (480, CallFailure.NO_ANSWER)],
)
async def test_routing_rejection(pki, status, failure):
    carrier = Carrier(Reject(status_code=status))
    async with gateway_pair(pki, carrier_route=carrier) as pair, asyncio.timeout(LIMIT):
        call, _media, _events = await place(pair)
        with pytest.raises(CallFailedError) as error:
            await call.wait_answered()
        assert (error.value.failure, error.value.status_code) == (failure, status)
        (inbound,) = carrier.calls
        end = await inbound.wait_ended()
        assert (end.reason, end.status_code) == (EndReason.REJECTED, status)


async def test_source_outside_the_allow_list_gets_403_and_a_log_line(pki, caplog):
    carrier = Carrier()
    refused = {"allowed_sources": ("192.0.2.0/24",)}
    with caplog.at_level(logging.WARNING, "sip_gateway.trunk"):
        async with gateway_pair(pki, carrier_route=carrier, carrier_trunk=refused) as pair:
            async with asyncio.timeout(LIMIT):
                call, _media, _events = await place(pair)
                with pytest.raises(CallFailedError) as error:
                    await call.wait_answered()
    assert (error.value.failure, error.value.status_code) == (CallFailure.REJECTED, 403)
    assert carrier.calls == []
    assert "refused INVITE from 127.0.0.1:" in caplog.text
    assert "no trunk accepts this address (no client certificate)" in caplog.text


@pytest.mark.parametrize("with_certificate", [True, False])
async def test_trunk_identified_by_client_certificate(pki, caplog, with_certificate):
    carrier = Carrier()
    by_cert = {"allowed_sources": (), "client_certificate_names": (CLIENT_NAME,)}
    mtls = {"client_certificate": pki.crt("client"), "client_private_key": pki.key("client")}
    async with (
        gateway_pair(
            pki,
            carrier_route=carrier,
            carrier_trunk=by_cert,
            bridge_trunk=mtls if with_certificate else {},
            carrier_client_auth=ClientAuth.OPTIONAL,
        ) as pair,
        asyncio.timeout(LIMIT),
    ):
        call, _media, _events = await place(pair)
        if with_certificate:
            await call.wait_answered()
            (inbound,) = carrier.calls
            assert CLIENT_NAME in inbound.endpoint.peer_certificate_names
            await call.hangup()
            return
        with pytest.raises(CallFailedError) as error:
            await call.wait_answered()
        assert error.value.status_code == 403 and carrier.calls == []
    assert "refused INVITE" in caplog.text


async def test_offer_without_acceptable_crypto_gets_488_before_routing(pki):
    carrier = Carrier()
    weak = {"crypto_suites": ("AES_CM_128_HMAC_SHA1_32",)}
    async with (
        gateway_pair(pki, carrier_route=carrier, bridge_trunk=weak) as pair,
        asyncio.timeout(LIMIT),
    ):
        call, _media, _events = await place(pair)
        with pytest.raises(CallFailedError) as error:
            await call.wait_answered()
        assert (error.value.failure, error.value.status_code) == (
            CallFailure.ENCRYPTION_REFUSED,
            488,
        )
        assert carrier.calls == []


async def test_called_number_that_is_not_e164_gets_484(pki):
    carrier = Carrier()
    async with gateway_pair(pki, carrier_route=carrier) as pair, asyncio.timeout(LIMIT):
        trunk = pair.bridge.trunk("carrier")
        call = OutboundCall(trunk, number="alice", caller=None, media=FakeMedia())
        pair.bridge.track(call)
        call.start()
        with pytest.raises(CallFailedError) as error:
            await call.wait_answered()
        assert (error.value.failure, error.value.status_code) == (CallFailure.NOT_FOUND, 484)
        assert carrier.calls == []


async def test_cancel_from_the_caller_gets_487_and_stops_routing(pki):
    carrier = Carrier(wait=30.0)
    async with gateway_pair(pki, carrier_route=carrier) as pair, asyncio.timeout(LIMIT):
        call, _media, events = await place(pair)
        await events.wait_for(CallRinging)
        await call.hangup()
        end = await call.wait_ended()
        assert (end.reason, end.status_code) == (EndReason.CANCELLED, 487)
        (inbound,) = carrier.calls
        inbound_end = await inbound.wait_ended()
        assert inbound_end.reason is EndReason.CANCELLED
        assert inbound._route_task.cancelled()
        assert carrier.media.applied == []


async def test_session_refresh_by_reinvite_keeps_keys(pki):
    carrier = Carrier()
    async with (
        gateway_pair(
            pki, carrier_route=carrier, bridge_trunk={"session_expires": 90}, timer_scale=0.01
        ) as pair,
        asyncio.timeout(LIMIT),
    ):
        call, media, events = await place(pair)
        await call.wait_answered()
        assert call.timer.interval == 90
        refreshed = await events.wait_for(SessionRefreshed, timeout=3)  # at 45 s, scaled
        assert refreshed.by_us and refreshed.interval == 90
        theirs = await carrier.events.wait_for(SessionRefreshed, timeout=3)
        assert not theirs.by_us
        assert len(media.applied) == 1 and len(carrier.media.applied) == 1  # keys unchanged
        assert "MediaUpdated" not in events.types() + carrier.events.types()
        assert call.dialog.local_seq == 2  # INVITE 1, re-INVITE 2
        await call.hangup()


async def test_session_refresh_by_update_when_the_peer_allows_it(pki):
    carrier = Carrier()
    async with (
        gateway_pair(
            pki,
            carrier_route=carrier,
            bridge_trunk={"session_expires": 90, "refresh_method": "UPDATE"},
            timer_scale=0.01,
        ) as pair,
        asyncio.timeout(LIMIT),
    ):
        methods = []
        handle = pair.carrier.handle

        def recording(endpoint, event, trunk=None):
            request = getattr(event, "request", None)
            if request is not None:
                methods.append(request.method)
            handle(endpoint, event, trunk)

        pair.carrier.handle = recording
        call, _media, events = await place(pair)
        await call.wait_answered()
        await events.wait_for(SessionRefreshed, timeout=3)
        assert "UPDATE" in methods and methods.count("INVITE") == 1
        await call.hangup()


async def test_422_raises_the_session_interval_and_the_call_goes_through(pki):
    carrier = Carrier()
    async with (
        gateway_pair(
            pki,
            carrier_route=carrier,
            bridge_trunk={"session_expires": 120},
            carrier_trunk={"min_se": 300},
        ) as pair,
        asyncio.timeout(LIMIT),
    ):
        call, _media, events = await place(pair)
        await call.wait_answered()
        assert call.invites_sent == 2
        assert call.invite.headers.get("Session-Expires") == "300"
        assert call.invite.headers.get("Min-SE") == "300"
        assert call.timer.interval == 300
        assert isinstance(events.seen[-1], CallAnswered)
        await call.hangup()


async def test_no_key_material_in_logs_or_reprs(pki, caplog):
    carrier = Carrier()
    with caplog.at_level(logging.DEBUG):
        async with gateway_pair(pki, carrier_route=carrier) as pair, asyncio.timeout(LIMIT):
            call, _media, events = await place(pair)
            config = await call.wait_answered()
            (inbound,) = carrier.calls
            shown = " ".join(
                repr(x) for x in (call, inbound, config, events.seen, carrier.events.seen)
            )
            await call.hangup()
    keys = [config.crypto.local_key, config.crypto.remote_key]
    texts = [base64.b64encode(k).decode() for k in keys] + [k.hex() for k in keys]
    for text in texts:
        assert text not in caplog.text and text not in shown


async def test_bye_in_the_early_dialog_gets_200_and_the_invite_487(pki):
    from sip_gateway.sip.headers import Headers
    from sip_gateway.sip.message import SipRequest

    carrier = Carrier(wait=30.0)
    async with gateway_pair(pki, carrier_route=carrier) as pair, asyncio.timeout(LIMIT):
        call, _media, events = await place(pair)
        await events.wait_for(CallRinging)
        (inbound,) = carrier.calls
        invite, endpoint = call.invite, call.endpoint
        assert invite is not None and endpoint is not None
        headers = Headers()
        headers.add("Via", str(endpoint.make_via()))
        headers.add("Max-Forwards", "70")
        headers.add("From", invite.headers.get("From") or "")
        headers.add("To", f"{invite.headers.get('To')};tag={inbound.local_tag}")
        headers.add("Call-ID", invite.call_id)
        headers.add("CSeq", f"{invite.cseq.seq + 1} BYE")
        bye = SipRequest(method="BYE", uri=invite.uri, headers=headers)
        assert (await endpoint.request(bye, timeout=5)).status_code == 200
        inbound_end = await inbound.wait_ended()
        assert (inbound_end.reason, inbound_end.status_code) == (EndReason.CANCELLED, 487)
        end = await call.wait_ended()
        assert end.status_code == 487
        assert carrier.media.applied == []


class EarlyCarrier(Carrier):
    """Sends 183 with its SDP answer (early media), then answers with the same port."""

    async def __call__(self, call):
        self.calls.append(call)
        call.on_event = self.events
        call.progress(self.media)
        await asyncio.sleep(0.2)
        return Answer(media=self.media, ring=False)


async def test_early_media_183_carries_the_answer_the_200_repeats(pki):
    carrier = EarlyCarrier()
    async with gateway_pair(pki, carrier_route=carrier) as pair, asyncio.timeout(LIMIT):
        call, media, events = await place(pair)
        early = await events.wait_for(EarlyMediaStarted)
        config = await call.wait_answered()
        (inbound,) = carrier.calls
        assert 183 in call.provisional
        # the caller's media ran from the 183; the 200 repeated the same answer and keys
        assert early.media.crypto.remote_key == config.crypto.remote_key
        assert media.applied[0] == early.media
        assert len(carrier.media.applied) == 1  # the carrier applied its answer once
        assert carrier.events.types() == ["CallRinging", "CallAnswered"]
        ringing = [e for e in carrier.events.seen if isinstance(e, CallRinging)]
        assert [(e.status_code, e.early_media) for e in ringing] == [(183, True)]
        await inbound.hangup()
        await call.wait_ended()
