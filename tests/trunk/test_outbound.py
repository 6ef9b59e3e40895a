"""Outbound calls against a scripted peer: provisional responses, early media, digest,
CANCEL races, refused answers, retransmitted and forked 2xx, session timer expiry."""

from __future__ import annotations

import asyncio

import pytest

from sip_gateway.aio import SipEndpointConfig
from sip_gateway.sdp import MediaProfile, SdesCrypto
from sip_gateway.sip import TimerSettings
from sip_gateway.trunk import (
    CallAnswered,
    CallEnded,
    CallFailedError,
    CallFailure,
    CallRinging,
    EarlyMediaStarted,
    EndReason,
    MediaUpdated,
    TrunkGateway,
)

from .helpers import CALLER, GATEWAY, Events, FakeMedia, gateway_to, trunk_config
from .raw_peer import RawPeer, sdp_of

LIMIT = 8.0


async def dial(gw, **kwargs):
    events = Events()
    media = FakeMedia()
    call = gw.call("carrier", GATEWAY, media=media, caller=CALLER, on_event=events, **kwargs)
    return call, media, events


async def test_invite_carries_offer_timer_and_caller_id(pki, peer):
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, media, events = await dial(gw)
        invite = await peer.receive("INVITE")
        offer = sdp_of(invite)
        (audio,) = offer.media
        assert audio.proto == "RTP/SAVP"
        assert [c.suite for c in audio.crypto] == [
            "AEAD_AES_256_GCM",
            "AEAD_AES_128_GCM",
            "AES_CM_128_HMAC_SHA1_80",
        ]
        assert str(invite.uri) == f"sip:{GATEWAY}@127.0.0.1:{peer.port};transport=tls"
        assert invite.from_addr.uri.user == CALLER
        assert invite.headers.get("Session-Expires") == "1800"
        assert invite.headers.get("Min-SE") == "90"
        assert "timer" in invite.headers.get_all("Supported")
        peer.respond(invite, 180)
        await events.wait_for(CallRinging)
        peer.ok_with_answer(invite)
        config = await call.wait_answered()
        ack = await peer.receive("ACK")
        assert ack.cseq.seq == invite.cseq.seq
        assert isinstance(config.crypto, SdesCrypto) and media.applied == [config]
        assert events.types() == ["CallRinging", "CallAnswered"]  # the raw peer sends no 100
        hangup = asyncio.create_task(call.hangup())
        bye = await peer.receive("BYE")
        peer.respond(bye, 200)
        await hangup
        assert call.end.reason is EndReason.LOCAL_HANGUP and media.closed == 1
        assert gw.calls == frozenset()


async def test_183_with_sdp_starts_early_media_and_200_without_sdp_keeps_it(pki, peer):
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, media, events = await dial(gw)
        invite = await peer.receive("INVITE")
        answer, _ = peer.answer_sdp(invite.body)
        peer.respond(
            invite, 183, headers=[("Content-Type", "application/sdp")], body=answer.to_bytes()
        )
        early = await events.wait_for(EarlyMediaStarted)
        assert media.applied == [early.media]
        ringing = await events.wait_for(CallRinging)
        assert ringing.early_media and ringing.status_code == 183
        peer.respond(invite, 200)  # no SDP: the early answer stands
        config = await call.wait_answered()
        assert config == early.media and media.applied == [config]  # not applied twice
        await peer.receive("ACK")


async def test_early_media_without_acceptable_crypto_cancels(pki, peer):
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, media, _events = await dial(gw)
        invite = await peer.receive("INVITE")
        weak = MediaProfile(crypto_suites=("AES_CM_128_HMAC_SHA1_80",))
        answer, _ = peer.answer_sdp(invite.body, weak)
        body = answer.to_bytes().replace(b"AES_CM_128_HMAC_SHA1_80", b"AES_CM_128_HMAC_SHA1_32")
        peer.respond(invite, 183, headers=[("Content-Type", "application/sdp")], body=body)
        cancel = await peer.receive("CANCEL")
        peer.respond(cancel, 200)
        peer.respond(invite, 487)
        await peer.receive("ACK")
        with pytest.raises(CallFailedError) as failure:
            await call.wait_answered()
        assert failure.value.failure is CallFailure.ENCRYPTION_REFUSED
        end = await call.wait_ended()
        assert end.reason is EndReason.ENCRYPTION_REFUSED and media.applied == []


async def test_answer_without_acceptable_crypto_is_acked_then_hung_up(pki, peer):
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, media, _events = await dial(gw)
        invite = await peer.receive("INVITE")
        answer, _ = peer.answer_sdp(invite.body)
        plain = answer.to_bytes().replace(b"RTP/SAVP", b"RTP/AVP")
        peer.ok_with_answer(invite, body=plain)
        with pytest.raises(CallFailedError) as failure:
            await call.wait_answered()
        assert failure.value.failure is CallFailure.ENCRYPTION_REFUSED
        assert failure.value.status_code == 488
        await peer.receive("ACK")
        bye = await peer.receive("BYE")
        peer.respond(bye, 200)
        end = await call.wait_ended()
        assert (end.reason, end.failure) == (
            EndReason.ENCRYPTION_REFUSED,
            CallFailure.ENCRYPTION_REFUSED,
        )
        assert media.applied == [] and media.closed == 1


async def test_cancel_before_any_provisional_waits_for_one(pki, peer):
    """RFC 3261 9.1: no CANCEL until a provisional response arrived."""
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, _media, _events = await dial(gw)
        invite = await peer.receive("INVITE")
        call.cancel()
        with pytest.raises(CallFailedError) as failure:
            await call.wait_answered()  # the caller knows at once
        assert failure.value.failure is CallFailure.CANCELLED
        await peer.silence(0.2)
        peer.respond(invite, 180)
        cancel = await peer.receive("CANCEL")
        assert cancel.top_via.branch == invite.top_via.branch
        peer.respond(cancel, 200, to_tag=None)
        peer.respond(invite, 487)
        await peer.receive("ACK")  # the transaction ACKs the 487
        end = await call.wait_ended()
        assert (end.reason, end.status_code) == (EndReason.CANCELLED, 487)


async def test_cancel_crossing_a_200_acks_and_hangs_up(pki, peer):
    """The 200-CANCEL/2xx race: the 2xx wins, so we ACK it and send BYE."""
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, _media, events = await dial(gw)
        invite = await peer.receive("INVITE")
        peer.respond(invite, 180)
        await events.wait_for(CallRinging)
        call.cancel()
        cancel = await peer.receive("CANCEL")
        peer.ok_with_answer(invite)  # answered before the CANCEL was processed
        peer.respond(cancel, 200, to_tag=None)
        await peer.receive("ACK")
        bye = await peer.receive("BYE")
        peer.respond(bye, 200)
        end = await call.wait_ended()
        assert (end.reason, end.failure) == (EndReason.CANCELLED, CallFailure.CANCELLED)
        with pytest.raises(CallFailedError):
            await call.wait_answered()
        assert "CallAnswered" not in events.types()


async def test_ring_timeout_cancels_with_no_answer(pki, peer):
    async with gateway_to(pki, peer.port, ring_timeout=0.3) as gw, asyncio.timeout(LIMIT):
        call, _media, _events = await dial(gw)
        invite = await peer.receive("INVITE")
        peer.respond(invite, 180)
        cancel = await peer.receive("CANCEL")
        peer.respond(cancel, 200, to_tag=None)
        peer.respond(invite, 487)
        with pytest.raises(CallFailedError) as failure:
            await call.wait_answered()
        assert failure.value.failure is CallFailure.NO_ANSWER
        end = await call.wait_ended()
        assert end.failure is CallFailure.NO_ANSWER and end.reason is EndReason.FAILED


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (486, CallFailure.BUSY),
        (404, CallFailure.NOT_FOUND),
        (603, CallFailure.REJECTED),
        (503, CallFailure.UNREACHABLE),
    ],
)
async def test_final_failures(pki, peer, status, failure):
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, media, _events = await dial(gw)
        invite = await peer.receive("INVITE")
        peer.respond(invite, status)
        await peer.receive("ACK")
        with pytest.raises(CallFailedError) as error:
            await call.wait_answered()
        assert (error.value.failure, error.value.status_code) == (failure, status)
        end = await call.wait_ended()
        assert (end.reason, end.failure, end.status_code) == (EndReason.FAILED, failure, status)
        assert media.closed == 1


async def test_digest_retry_once_then_stop(pki, peer):
    challenge = 'Digest realm="carrier.test", nonce="n1", qop="auth", algorithm=SHA-256'
    async with (
        gateway_to(pki, peer.port, username="acct", password="pw") as gw,
        asyncio.timeout(LIMIT),
    ):
        call, _media, _events = await dial(gw)
        first = await peer.receive("INVITE")
        peer.respond(first, 407, headers=[("Proxy-Authenticate", challenge)])
        await peer.receive("ACK")
        second = await peer.receive("INVITE")
        assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
        assert second.from_addr.tag == first.from_addr.tag
        assert second.body == first.body  # the same offer, the same keys
        assert "algorithm=SHA-256" in second.headers.get("Proxy-Authorization")
        # stale: answered again without asking anyone
        stale = challenge.replace("n1", "n2") + ", stale=true"
        peer.respond(second, 407, headers=[("Proxy-Authenticate", stale)])
        await peer.receive("ACK")
        third = await peer.receive("INVITE")
        assert 'nonce="n2"' in third.headers.get("Proxy-Authorization")
        # refused again: no fourth INVITE
        peer.respond(third, 407, headers=[("Proxy-Authenticate", challenge.replace("n1", "n3"))])
        await peer.receive("ACK")
        with pytest.raises(CallFailedError) as failure:
            await call.wait_answered()
        assert (failure.value.failure, failure.value.status_code) == (CallFailure.REJECTED, 407)
        assert "pw" not in str(failure.value)
        await peer.silence(0.2)
        assert call.invites_sent == 3


async def test_retransmitted_2xx_is_acked_again_and_a_fork_is_hung_up(pki, peer):
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, _media, _events = await dial(gw)
        invite = await peer.receive("INVITE")
        ok = peer.ok_with_answer(invite)
        await call.wait_answered()
        await peer.receive("ACK")
        peer.send(ok)
        again = await peer.receive("ACK")
        assert again.cseq.seq == invite.cseq.seq
        peer.ok_with_answer(invite, to_tag="fork2")
        ack = await peer.receive("ACK")
        assert ack.to_addr.tag == "fork2"
        bye = await peer.receive("BYE")
        assert bye.to_addr.tag == "fork2"
        peer.respond(bye, 200)
        assert call.state == "confirmed"


async def test_non_refresher_hangs_up_when_the_session_expires(pki, peer):
    """The peer takes the refresher role and never refreshes: we BYE at 90 - 30 s (scaled)."""
    async with gateway_to(pki, peer.port, scale=0.01) as gw, asyncio.timeout(LIMIT):
        call, _media, _events = await dial(gw)
        invite = await peer.receive("INVITE")
        peer.ok_with_answer(invite, ("Session-Expires", "90;refresher=uas"), ("Require", "timer"))
        await call.wait_answered()
        await peer.receive("ACK")
        started = asyncio.get_running_loop().time()
        bye = await peer.receive("BYE", timeout=3)
        elapsed = asyncio.get_running_loop().time() - started
        assert 0.4 < elapsed < 1.5, elapsed  # 60 s scaled by 0.01
        peer.respond(bye, 200)
        end = await call.wait_ended()
        assert end.reason is EndReason.SESSION_EXPIRED


async def test_reinvite_from_the_carrier_keeps_our_keys_when_crypto_is_unchanged(pki, peer):
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, media, events = await dial(gw)
        invite = await peer.receive("INVITE")
        answer, _ = peer.answer_sdp(invite.body)
        peer.ok_with_answer(invite, body=answer.to_bytes())
        config = await call.wait_answered()
        await peer.receive("ACK")
        # the peer re-offers its own answer: same crypto line
        reinvite = peer.request(invite, "INVITE", body=answer.to_bytes())
        await peer.receive(100)
        ok = await peer.receive(200)
        assert ok.cseq.seq == reinvite.cseq.seq
        (line,) = sdp_of(ok).media[0].crypto
        assert line.tag == config.crypto.tag and line == config.crypto.local_attribute
        assert "MediaUpdated" not in events.types() and len(media.applied) == 1
        # a new key from the peer: a new config with the new remote key, ours stays fresh
        rekeyed = peer.answer_sdp(invite.body)[0].to_bytes()
        peer.request(invite, "INVITE", body=rekeyed)
        await peer.receive(100)
        ok2 = await peer.receive(200)
        assert len(media.applied) == 2 and "MediaUpdated" in events.types()
        assert media.applied[1].crypto.remote_key != config.crypto.remote_key
        assert sdp_of(ok2).origin.session_version == sdp_of(ok).origin.session_version + 1
        # BYE from the carrier
        peer.request(invite, "BYE")
        await peer.receive(200)
        end = await call.wait_ended()
        assert end.reason is EndReason.REMOTE_HANGUP and media.closed == 1


async def test_unreachable_trunk(pki):
    from tests.interop.peers import free_port

    gw = TrunkGateway([trunk_config(pki, "carrier", free_port())])
    try:
        async with asyncio.timeout(LIMIT):
            call, _media, events = await dial(gw)
            with pytest.raises(CallFailedError) as failure:
                await call.wait_answered()
            assert (failure.value.failure, failure.value.status_code) == (
                CallFailure.UNREACHABLE,
                503,
            )
            end = await call.wait_ended()
            assert isinstance(end, CallEnded) and end.failure is CallFailure.UNREACHABLE
            assert "CallAnswered" not in events.types() and CallAnswered
    finally:
        await gw.aclose()


async def test_no_response_at_all_is_unreachable(pki, peer):
    """Timer B (64*T1; T1 shortened here) fires without any response."""
    quick = SipEndpointConfig(timers=TimerSettings(t1=0.01))
    async with gateway_to(pki, peer.port, endpoint_config=quick) as gw, asyncio.timeout(LIMIT):
        call, _media, _events = await dial(gw)
        await peer.receive("INVITE")
        with pytest.raises(CallFailedError) as failure:
            await call.wait_answered()
        assert (failure.value.failure, failure.value.status_code) == (CallFailure.UNREACHABLE, 408)
        assert "Timer B" in str(failure.value)


async def test_untrusted_certificate_is_unreachable(pki):
    rogue = await RawPeer.start(pki, cert="rogue")
    try:
        async with gateway_to(pki, rogue.port) as gw, asyncio.timeout(LIMIT):
            call, _media, _events = await dial(gw)
            with pytest.raises(CallFailedError) as failure:
                await call.wait_answered()
            assert failure.value.failure is CallFailure.UNREACHABLE
            assert "not trusted" in str(failure.value)
            assert rogue.log == []
    finally:
        await rogue.aclose()


async def test_offerless_reinvite_gets_our_sdp_and_the_answer_comes_in_the_ack(pki, peer):
    async with gateway_to(pki, peer.port) as gw, asyncio.timeout(LIMIT):
        call, media, events = await dial(gw)
        invite = await peer.receive("INVITE")
        peer.ok_with_answer(invite)
        await call.wait_answered()
        await peer.receive("ACK")
        reinvite = peer.request(invite, "INVITE")  # no SDP: we must offer
        await peer.receive(100)
        ok = await peer.receive(200)
        offer = sdp_of(ok)
        assert offer.to_bytes() == call.local_sdp.to_bytes()  # our current SDP, unchanged
        hold, _ = peer.answer_sdp(ok.body)
        held = hold.to_bytes().replace(b"a=sendrecv", b"a=sendonly")
        peer.request(invite, "ACK", body=held, cseq=reinvite.cseq.seq)
        await events.wait_for(MediaUpdated)
        assert media.applied[-1].direction == "recvonly"
