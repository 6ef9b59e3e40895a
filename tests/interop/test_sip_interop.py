"""Interop of OUR SIP core (sip_gateway.sip, .sdp, .aio) against real peers on loopback.

The code under test is the product trunk (:class:`sip_gateway.trunk.TrunkGateway`) through
:class:`tests.interop.ua.TestUserAgent`, a thin wrapper that records every core event and the
final responses to our requests: a SIP-TLS listener (UAS) and verifying connectors (UAC). The
peers:

* SIPp (no TLS of its own) behind stunnel: in client mode stunnel verifies OUR certificate
  chain and IP SAN before SIPp's UAC scenarios reach our UAS; in server mode stunnel
  presents the PKI server certificate that OUR connector verifies (CA + IP SAN 127.0.0.1).
* baresip with mandatory SDES-SRTP, calling our UAS and being called by our UAC.

SIPp runs are judged by their statistics and message logs; every wait is bounded; a
missing peer fails the test (the fixtures raise), it never skips.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from sip_gateway.aio import SipConnectError
from sip_gateway.sdp import CryptoAttribute, SdesCrypto, parse_sdp
from sip_gateway.sip.auth import DigestAccount, DigestCredentials, parse_credentials
from sip_gateway.sip.events import RequestReceived, TransactionTerminated
from sip_gateway.sip.uri import SipUri
from sip_gateway.tls import ClientAuth

from .peers import free_port, free_port_block, wait_log
from .ua import CallFailedError, TestUserAgent

pytestmark = pytest.mark.interop

LIMIT = 20.0
"""Upper bound of every test body (asyncio.timeout)."""
GATEWAY = "+15551230001"
SIPP_OFFER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"  # uac_invite_*_tls.xml
SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
CLIENT_NAME = "pstn-bridge-dev-client"  # tests.pki's client leaf (DNS SAN)
BURST = 3000


@pytest.fixture
async def ua(pki):
    """Our UA listening on a free port: the PKI server certificate, a client context that
    trusts only the PKI CA (the name checked is the dialled IP, 127.0.0.1)."""
    agent = TestUserAgent(
        server_context=pki.server_context(),
        client_context=pki.client_context(),
        media_port=free_port_block(2, tcp=False),
    )
    await agent.listen(free_port())
    yield agent
    await agent.aclose()


def sent_requests(messages: str, method: str) -> list[str]:
    """Request lines of ``method`` in a SIPp ``-trace_msg`` log (sent or received)."""
    return re.findall(rf"^\s*({method} \S+ SIP/2\.0)\s*$", messages, re.M)


def statuses(messages: str) -> list[int]:
    """Status codes of every response in a SIPp ``-trace_msg`` log, in order."""
    return [int(code) for code in re.findall(r"^\s*SIP/2\.0 (\d{3}) ", messages, re.M)]


# --------------------------------------------------------------------------------------------
# SIPp UAC -> stunnel (verifies us) -> our UAS


async def test_sipp_options_to_our_uas(ua, sipp_tls_uac):
    run = sipp_tls_uac("uac_options_tls", ua.port, calls=3)
    async with asyncio.timeout(LIMIT):
        result = await run.sipp.wait_async(15)

    assert result.stats.successful == 3, result.describe()
    assert result.stats.failed == 0, result.describe()
    assert statuses(result.messages()) == [200, 200, 200]
    assert ua.methods() == ["OPTIONS"] * 3
    assert ua.rejected == []
    # stunnel's checks: chain to the PKI CA, and the IP SAN (checkIP = 127.0.0.1)
    conf = run.stunnel.conf.read_text()
    assert "verifyChain = yes" in conf and "checkIP = 127.0.0.1" in conf
    wait_log(run.stunnel.log, 'CERT: IP address "127.0.0.1" matched', timeout=2)
    wait_log(run.stunnel.log, "Certificate accepted at depth=0: CN=localhost", timeout=2)


@pytest.mark.parametrize("client_cert", ["client", None])
async def test_mutual_tls_listener_behind_stunnel_client(pki, sipp_tls_uac, client_cert, caplog):
    """A carrier-facing listener that requires a client certificate from the PKI CA."""
    agent = TestUserAgent(
        server_context=pki.server_context(client_auth=ClientAuth.REQUIRED),
        media_port=free_port_block(2, tcp=False),
    )
    await agent.listen(free_port())
    try:
        run = sipp_tls_uac("uac_options_tls", agent.port, client_cert=client_cert, timeout_s=3)
        async with asyncio.timeout(LIMIT):
            result = await run.sipp.wait_async(15)
    finally:
        await agent.aclose()

    if client_cert is None:  # TLS 1.3: stunnel's handshake "succeeds", then we reset it
        assert result.stats.successful == 0, result.describe()
        assert agent.received == [] and agent.endpoints == []
        assert "client certificate required but none was sent" in caplog.text
        return
    assert result.stats.successful == 1, result.describe()
    assert agent.methods() == ["OPTIONS"]
    (inbound,) = agent.endpoints
    assert inbound.peer_certificate_names == {CLIENT_NAME}
    assert inbound.tls is not None and inbound.tls.peer_certificate_verified


async def test_sipp_options_burst_on_one_connection(ua, sipp_tls_uac):
    """Many requests per TLS record and per read: the framer must split them all."""
    run = sipp_tls_uac("uac_options_tls", ua.port, calls=BURST, rate=10000, limit=BURST)
    async with asyncio.timeout(LIMIT):
        result = await run.sipp.wait_async(15)

    assert result.stats.successful == BURST, result.describe()
    assert result.stats.failed == 0, result.describe()
    assert ua.methods() == ["OPTIONS"] * BURST
    assert len({r.call_id for r in ua.received}) == BURST
    assert ua.rejected == []
    assert run.stunnel.log_text().count("connected remote server from") == 1


async def test_sipp_invite_to_our_uas(ua, sipp_tls_uac):
    run = sipp_tls_uac("uac_invite_hangup_tls", ua.port, service=GATEWAY)
    async with asyncio.timeout(LIMIT):
        result = await run.sipp.wait_async(15)
        await ua.wait_for("BYE")

    assert result.stats.successful == 1, result.describe()
    assert result.stats.failed == 0, result.describe()
    assert ua.methods() == ["INVITE", "ACK", "BYE"]
    assert statuses(result.messages()) == [100, 180, 200, 200]
    (answer,) = ua.answers
    (audio,) = answer.media
    assert audio.proto == "RTP/SAVP"
    (crypto,) = audio.crypto
    assert (crypto.tag, crypto.suite) == (1, SHA1_80)
    offered = CryptoAttribute.parse(f"1 {SHA1_80} inline:{SIPP_OFFER_KEY}")
    assert crypto.key_params[0].key_salt != offered.key_params[0].key_salt  # our own key
    assert ua.open_calls == []  # the BYE ended the dialog
    # what SIPp received is the answer we built
    ok = result.messages().split("SIP/2.0 200 OK", 1)[1]
    assert f"a=crypto:1 {SHA1_80} inline:" in ok


async def test_sipp_plain_rtp_offer_gets_488(ua, sipp_tls_uac):
    """SRTP is mandatory: RTP/AVP is refused, and the ACK is absorbed by the transaction."""
    run = sipp_tls_uac("uac_invite_plain_rtp_tls", ua.port, service=GATEWAY)
    async with asyncio.timeout(LIMIT):
        result = await run.sipp.wait_async(15)
        (inbound,) = ua.endpoints
        await inbound.wait_closed()  # SIPp is gone: every transaction has ended

    assert result.stats.successful == 1, result.describe()
    # the ACK matched the INVITE server transaction: Completed -> Confirmed -> Terminated;
    # an unmatched one would have left it to die with the connection (TransactionTimedOut)
    (invite,) = [e for e in ua.events if isinstance(e, RequestReceived)]
    ended = [e for e in ua.events if getattr(e, "transaction_id", None) == invite.transaction_id]
    assert [type(e) for e in ended] == [RequestReceived, TransactionTerminated], ended
    messages = result.messages()
    assert statuses(messages) == [100, 488]
    branches = re.findall(r"^Via: SIP/2\.0/TLS \S+;branch=(\S+?);", messages, re.M)
    assert len(set(branches)) == 1, branches  # the ACK is in the INVITE transaction
    assert ua.methods() == ["INVITE"]  # a non-2xx ACK never reaches the TU
    assert ua.answers == [] and ua.open_calls == []


# --------------------------------------------------------------------------------------------
# our UAC -> stunnel (we verify it) -> SIPp UAS


def target(port: int) -> str:
    return f"sip:{GATEWAY}@127.0.0.1:{port};transport=tls"


async def test_our_uac_calls_sipp_uas(ua, sipp_tls_uas):
    uas = sipp_tls_uas("uas_tls_answer")
    async with asyncio.timeout(LIMIT):
        call = await ua.call(target(uas.port))
        tls = call.endpoint.tls
        assert tls is not None and tls.peer_certificate_verified
        assert "127.0.0.1" in call.endpoint.peer_certificate_names
        assert call.provisional == [100]
        bye = await ua.hangup(call)
        result = await uas.sipp.stop_async()

    assert bye.status_code == 200
    assert result.stats.successful == 1, result.describe()
    assert result.stats.failed == 0, result.describe()
    assert isinstance(call.media.crypto, SdesCrypto)
    assert call.media.crypto.suite == SHA1_80
    assert call.media.remote_address[0] == "127.0.0.1"
    messages = result.messages()
    assert len(sent_requests(messages, "INVITE")) == 1
    assert len(sent_requests(messages, "ACK")) == 1
    assert len(sent_requests(messages, "BYE")) == 1


@pytest.mark.parametrize(
    ("cert", "reason"),
    [("wrong-ip", "IP address mismatch"), ("rogue", "peer certificate not trusted")],
)
async def test_our_uac_refuses_an_unverifiable_peer(ua, sipp_tls_uas, cert, reason):
    uas = sipp_tls_uas("uas_tls_answer", cert=cert)
    async with asyncio.timeout(LIMIT):
        with pytest.raises(SipConnectError, match=reason):
            await ua.call(target(uas.port))
        result = await uas.sipp.stop_async()
    assert result.stats.created == 0, result.describe()


async def test_our_uac_answers_the_digest_challenge(ua, sipp_tls_uas):
    uas = sipp_tls_uas("uas_digest_401", keys={"auth_user": "bridge", "auth_pass": "s3cret"})
    account = DigestAccount(username="bridge", password="s3cret", realm="sipp.test")
    async with asyncio.timeout(LIMIT):
        call = await ua.call(target(uas.port), account=account)
        bye = await ua.hangup(call)
        result = await uas.sipp.stop_async()

    assert bye.status_code == 200
    assert result.stats.successful == 1, result.describe()
    assert result.stats.failed == 0, result.describe()
    assert call.invites_sent == 2 and call.invite.cseq.seq == 2
    credentials = parse_credentials(call.invite.headers.get_lines("Authorization")[0])
    assert isinstance(credentials, DigestCredentials)
    assert (credentials.algorithm, credentials.qop, credentials.nc) == ("MD5", "auth", "00000001")
    assert credentials.uri == str(call.invite.uri)
    messages = result.messages()
    assert len(sent_requests(messages, "INVITE")) == 2
    assert statuses(messages) == [401, 200, 200]


async def test_our_uac_with_a_wrong_password_fails_once(ua, sipp_tls_uas):
    uas = sipp_tls_uas("uas_digest_401", keys={"auth_user": "bridge", "auth_pass": "s3cret"})
    account = DigestAccount(username="bridge", password="wrong", realm="sipp.test")
    async with asyncio.timeout(LIMIT):
        with pytest.raises(CallFailedError) as failure:
            await ua.call(target(uas.port), account=account)
        await asyncio.sleep(0.3)  # room for a (wrong) third INVITE to show up
        result = await uas.sipp.stop_async()

    assert failure.value.status_code == 403
    assert failure.value.invites_sent == 2
    assert "after digest authentication: 403 Forbidden" in str(failure.value)
    assert "wrong" not in str(failure.value)
    messages = result.messages()
    assert len(sent_requests(messages, "INVITE")) == 2, messages  # no third INVITE
    assert len(sent_requests(messages, "ACK")) == 2  # the core ACKs 401 and 403
    assert result.stats.failed == 1, result.describe()
    assert result.stats.successful == 0, result.describe()
    assert ua.open_calls == []


# --------------------------------------------------------------------------------------------
# baresip (TLS, srtp-mand) <-> our UA


async def test_baresip_calls_our_uas(ua, baresip):
    carrier = baresip("carrier", "bridge")
    async with asyncio.timeout(LIMIT):
        ctrl = await carrier.ctrl()
        reply = await ctrl.command("dial", target(ua.port))
        assert reply["ok"] is True, reply
        established = await ctrl.wait_event("CALL_ESTABLISHED", timeout=10)
        menc = await ctrl.wait_event("CALL_MENC", timeout=5)
        await ctrl.command("hangup")
        await ua.wait_for("BYE", timeout=5)
        await ctrl.wait_event("CALL_CLOSED", timeout=5)

    assert established["peeruri"].startswith(f"sip:{GATEWAY}@127.0.0.1")
    assert SHA1_80 in menc["param"], menc
    assert ua.methods() == ["INVITE", "ACK", "BYE"]
    offer = parse_sdp(ua.received[0].body)
    assert offer.media[0].proto == "RTP/SAVP"
    (answer,) = ua.answers
    (crypto,) = answer.media[0].crypto
    assert crypto.suite in {c.suite for c in offer.media[0].crypto}
    assert ua.open_calls == []
    wait_log(carrier.log, f"SRTP is Enabled (cryptosuite={crypto.suite})", timeout=2)


async def test_our_uas_hangs_up_on_baresip(ua, baresip):
    """The UAS side of a dialog sends BYE: to baresip's Contact, over a verified connection."""
    carrier = baresip("carrier", "bridge")
    async with asyncio.timeout(LIMIT):
        ctrl = await carrier.ctrl()
        await ctrl.command("dial", target(ua.port))
        await ctrl.wait_event("CALL_ESTABLISHED", timeout=10)
        await ua.wait_for("ACK")
        bye = await ua.hangup_inbound()
        await ctrl.wait_event("CALL_CLOSED", timeout=5)

    assert bye.status_code == 200
    dialog = ua.inbound[0].dialog
    assert bye.cseq.seq == 1 and bye.cseq.method == "BYE"  # the UAS's first request
    assert isinstance(dialog.remote_target, SipUri)
    assert dialog.remote_target.port == carrier.tls_port
    (outbound,) = ua.connector.endpoints  # dialled to baresip's Contact, verified
    assert outbound.peer == ("127.0.0.1", carrier.tls_port)
    assert outbound.tls is not None and outbound.tls.peer_certificate_verified
    assert ua.open_calls == []


async def test_our_uac_calls_baresip_gateway(ua, baresip):
    gw = baresip("gw", GATEWAY)
    async with asyncio.timeout(LIMIT):
        ctrl = await gw.ctrl()
        call = await ua.call(gw.uri())
        established = await ctrl.wait_event("CALL_ESTABLISHED", timeout=10)
        bye = await ua.hangup(call)
        closed = await ctrl.wait_event("CALL_CLOSED", timeout=5)

    assert bye.status_code == 200
    assert established["peeruri"].startswith("sip:bridge@127.0.0.1")
    assert closed["type"] == "CALL_CLOSED"
    tls = call.endpoint.tls
    assert tls is not None and tls.peer_certificate_verified
    assert isinstance(call.media.crypto, SdesCrypto)
    # baresip takes the first suite it supports in offer order: our first, AES-256-GCM
    assert call.media.crypto.suite == ua.profile.crypto_suites[0] == "AEAD_AES_256_GCM"
    assert call.provisional == [180], call.provisional  # baresip sends no 100 over TLS
    wait_log(gw.log, "SRTP is Enabled (cryptosuite=AEAD_AES_256_GCM)", timeout=2)


# --------------------------------------------------------------------------------------------
# negative: a malformed request costs only itself


async def test_malformed_request_gets_400_and_the_connection_survives(ua, sipp_tls_uac):
    run = sipp_tls_uac("uac_malformed_then_options_tls", ua.port)
    async with asyncio.timeout(LIMIT):
        result = await run.sipp.wait_async(15)

    assert result.stats.successful == 1, result.describe()
    assert result.stats.failed == 0, result.describe()
    messages = result.messages()
    assert statuses(messages) == [400, 200]
    refusal = messages[messages.index("SIP/2.0 400 ") :].split("\n\n", 1)[0]
    assert re.search(r"^CSeq: 1 OPTIONS$", refusal, re.M), refusal
    assert re.search(r"^Via: SIP/2\.0/TLS .*;branch=z9hG4bK-\d+-1-0;rport", refusal, re.M), refusal
    assert ua.methods() == ["OPTIONS"]  # only the good one reached the UA
    assert ua.received[0].cseq.seq == 2
    (rejected,) = ua.rejected
    assert (rejected.status_code, rejected.response_sent, rejected.fatal) == (400, True, False)
    assert "Connection" not in result.errors()
