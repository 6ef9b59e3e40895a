"""Downgrade attempts are refused, recorded with their policy, and never called encrypted.

Each test starts a real bridge (``bridge.app.start``) whose one trunk is a scripted SIP-over-TLS
carrier (:class:`tests.trunk.raw_peer.RawPeer`: it answers exactly what the test tells it to,
which the carrier simulator cannot: the simulator never answers plain RTP), with a
:class:`~tests.call_records.RecordingSink` on the bridge's call journal. The three attempts:

* the browser (:class:`tests.webrtc_client.WebRtcClient`, SIP over WSS) offers DTLS-SRTP
  without ``a=fingerprint``: 488, nothing reaches the carrier, the record names the policy
  ``no-fingerprint``;
* the carrier answers the bridge's ``RTP/SAVP`` INVITE with a 200 whose SDP is plain
  ``RTP/AVP``: the bridge ACKs and hangs up with BYE, the browser gets 488, the record names
  ``plain-rtp`` on a call whose gateway leg is not called encrypted;
* the carrier sends an INVITE offering only ``RTP/AVP`` to the bridge's SIP-TLS listener:
  488, and the refused attempt is a record (``orchestrator.inbound_refused``) naming
  ``plain-rtp``.

In every case no leg of any update's record says ``encrypted: true`` for the media that
was refused, the final update carries the refusal, and ``/metrics`` (scraped over HTTPS with
the ops bearer token, as Prometheus would) counts it under its policy name and counts no
leg ``encrypted="true"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import RunningBridge, start
from bridge.settings import Settings
from sip_gateway.sip.headers import Headers
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.parser import KeepAlive, StreamFramer
from sip_gateway.sip.uri import parse_uri
from tests.call_records import RecordingSink, legs_of
from tests.interop.peers import free_port
from tests.pki import Pki, make_pki
from tests.trunk.raw_peer import RawPeer, sdp_of
from tests.userdb import add_users
from tests.webrtc_client import ClientConfig, DialFailedError, WebRtcClient

PASSWORD = "correct horse battery staple"
USER, DID = "alice", "+15005550199"
NUMBER = "+441632960123"
LIMIT = 15.0
TOKEN = "downgrade-ops-token-0123456789"


@dataclass
class Downgrade:
    """A running bridge, its scripted carrier, and what its journal reported."""

    running: RunningBridge
    settings: Settings
    pki: Pki
    carrier: RawPeer
    sink: RecordingSink

    async def browser(self) -> WebRtcClient:
        """A registered packet-level browser (closed at teardown by the fixture)."""
        client = WebRtcClient(
            ClientConfig(
                url=f"wss://127.0.0.1:{self.running.https_port}/sip",
                ssl=self.pki.client_context(),
                user=USER,
                password=PASSWORD,
                domain=self.settings.sip.realm,
            )
        )
        await client.connect()
        assert (await client.register()).status_code == 200
        return client

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """``/metrics`` as (sample name, labels) -> value."""
        url = f"https://127.0.0.1:{self.running.https_port}/metrics"
        connector = aiohttp.TCPConnector(ssl=self.pki.client_context())
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response,
        ):
            assert response.status == 200
            text = await response.text()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    async def assert_counted(self, reason: str) -> None:
        """The refusal is counted once by its policy name; no leg was counted encrypted."""
        samples = await self.metrics()
        refusals = {
            dict(labels)["reason"]: value
            for (name, labels), value in samples.items()
            if name == "pstn_bridge_policy_refusals_total"
        }
        assert refusals == {reason: 1.0}, refusals
        encrypted = [
            (dict(labels), value)
            for (name, labels), value in samples.items()
            if name == "pstn_bridge_call_legs_total" and dict(labels)["encrypted"] == "true"
        ]
        assert not [e for e in encrypted if e[1] > 0], encrypted


@pytest.fixture
async def downgrade(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Downgrade]]]:
    """Factory: ``await downgrade()`` starts the bridge and the scripted carrier."""
    pki = make_pki(tmp_path / "pki")
    carrier = await RawPeer.start(pki)
    started: list[Downgrade] = []

    async def factory() -> Downgrade:
        settings = Settings.model_validate(
            {
                "node": {"var_dir": tmp_path / "var"},
                "tls": {
                    "cert_file": pki.crt("server"),
                    "key_file": pki.key("server"),
                    "ca_file": pki.ca,
                },
                "sip": {"listen_port": 0},
                "http": {"listen_port": 0},
                "users": {"demo_user": ""},
                "ops": {"api_token": TOKEN},
                "trunks": [
                    {
                        "name": "carrier",
                        "host": "127.0.0.1",
                        "port": carrier.port,
                        "ca_file": pki.ca,
                        "allowed_sources": ["127.0.0.1/32"],
                        "options_interval": 0,
                    }
                ],
                "carrier_sim": {"enabled": False, "listen_port": free_port()},
            }
        )
        await add_users(settings, [(USER, PASSWORD, (DID,))])
        running = await start(settings)
        sink = RecordingSink()
        running.orchestrator.journal.add_sink(sink)
        harness = Downgrade(running, settings, pki, carrier, sink)
        started.append(harness)
        return harness

    try:
        yield factory
    finally:
        for harness in started:
            await harness.running.close()
        await carrier.aclose()


def assert_never_encrypted(sink: RecordingSink, call_id: str, *legs: str) -> None:
    """No update of the call says ``encrypted: true`` for any of ``legs``."""
    for update in sink.updates:
        if update.call_id != call_id:
            continue
        for name, leg in legs_of(update.record).items():
            if name in legs:
                assert leg["encrypted"] is not True, (update.event, leg)
        assert update.record["end_to_end_encrypted"] is False


def only_final(sink: RecordingSink) -> dict[str, Any]:
    (final,) = sink.finals()
    record = dict(final.record)
    assert record["ended_at"] is not None and record["end_reason"], record
    return record


async def test_browser_offer_without_fingerprint_is_refused_488_and_recorded(downgrade) -> None:
    harness = await downgrade()
    client = await harness.browser()
    try:

        def strip_fingerprints(offer: Any) -> None:
            offer.attributes = [a for a in offer.attributes if a.name != "fingerprint"]
            for media in offer.media:
                media.attributes = [a for a in media.attributes if a.name != "fingerprint"]

        async with asyncio.timeout(LIMIT):
            call = await client.dial(NUMBER, offer_hook=strip_fingerprints)
            with pytest.raises(DialFailedError) as failed:
                await call.wait_answered()
            assert failed.value.status == 488
            (final,) = await harness.sink.wait_final()
        await harness.carrier.silence(0.2)  # nothing reached the carrier
    finally:
        await client.close(hangup=True)

    record = only_final(harness.sink)
    assert [r["reason"] for r in record["policy_refusals"]] == ["no-fingerprint"]
    assert record["sip_status"] == 488 and record["end_reason"] == "encryption-refused"
    assert record["user"] == USER and record["direction"] == "outbound"
    assert harness.sink.events(final.call_id) == ["started", "refused", "ended"]
    refused = next(u for u in harness.sink.updates if u.event == "refused")
    assert refused.detail["reason"] == "no-fingerprint"
    assert_never_encrypted(harness.sink, final.call_id, "webrtc", "gateway")
    webrtc = legs_of(record)["webrtc"]
    # the WSS session was real; no DTLS happened, so no DTLS fact is claimed
    assert webrtc["signaling"]["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert webrtc["media"]["srtp_profile"] is None
    assert webrtc["media"]["remote_fingerprint"] is None
    assert harness.running.orchestrator.refused.total() == 1
    await harness.assert_counted("no-fingerprint")


async def test_carrier_answering_plain_rtp_is_hung_up_and_recorded(downgrade) -> None:
    harness = await downgrade()
    carrier = harness.carrier
    client = await harness.browser()
    try:
        async with asyncio.timeout(LIMIT):
            call = await client.dial(NUMBER)
            invite = await carrier.receive("INVITE")
            (audio,) = sdp_of(invite).media
            assert audio.proto == "RTP/SAVP"  # the bridge offered SRTP only
            answer, _config = carrier.answer_sdp(invite.body)
            plain = answer.to_bytes().replace(b"RTP/SAVP", b"RTP/AVP")
            assert b"RTP/AVP " in plain
            carrier.ok_with_answer(invite, body=plain)
            ack = await carrier.receive("ACK")
            bye = await carrier.receive("BYE")
            assert ack.call_id == bye.call_id == invite.call_id
            carrier.respond(bye, 200)
            with pytest.raises(DialFailedError) as failed:
                await call.wait_answered()
            assert failed.value.status == 488
            (final,) = await harness.sink.wait_final()
    finally:
        await client.close(hangup=True)

    record = only_final(harness.sink)
    assert "plain-rtp" in [r["reason"] for r in record["policy_refusals"]], record
    assert record["end_reason"] == "encryption-refused", record
    assert record["answered_at"] is None
    refused = [u for u in harness.sink.updates if u.event == "refused"]
    assert [u.detail["reason"] for u in refused] == ["plain-rtp"]
    legs = legs_of(record)
    gateway = legs["gateway"]
    assert gateway["encrypted"] is not True
    assert gateway["media"]["crypto_suite"] is None  # no SDES suite was ever in force
    assert gateway["media"]["keys_fresh"] is None
    assert legs["pstn"]["encrypted"] is None
    assert_never_encrypted(harness.sink, final.call_id, "webrtc", "gateway")
    assert harness.running.orchestrator.ended == {"encryption-refused": 1}
    await harness.assert_counted("plain-rtp")


async def test_carrier_invite_offering_only_plain_rtp_is_refused_488_and_recorded(
    downgrade,
) -> None:
    harness = await downgrade()
    async with asyncio.timeout(LIMIT):
        response, call_id = await plain_rtp_invite(harness.running.sip_port, harness.pki)
        (final,) = await harness.sink.wait_final()
    assert response.status_code == 488

    record = only_final(harness.sink)
    safe = re.sub(r"[^A-Za-z0-9._-]", "", call_id)[:12]
    assert re.fullmatch(rf"c-\d{{14}}-{re.escape(safe)}-[0-9a-f]{{6}}", record["call_id"])
    assert record["direction"] == "inbound" and record["to"] == DID
    assert [r["reason"] for r in record["policy_refusals"]] == ["plain-rtp"]
    assert record["sip_status"] == 488 and record["end_reason"] == "encryption-refused"
    assert record["trunk"] == "carrier"
    assert harness.sink.events(final.call_id) == ["started", "refused", "ended"]
    assert_never_encrypted(harness.sink, final.call_id, "webrtc", "gateway")
    legs = legs_of(record)
    # the carrier's TLS session was real (and facts of it are recorded); its media never was
    assert legs["gateway"]["signaling"]["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert legs["gateway"]["media"]["crypto_suite"] is None
    assert legs["webrtc"]["encrypted"] is None
    assert harness.running.orchestrator.refused == {"plain-rtp": 1}
    assert harness.running.orchestrator.calls == {}
    await harness.assert_counted("plain-rtp")


_PLAIN_SDP = (
    "v=0\r\n"
    "o=carrier 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 47000 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n"
)


async def plain_rtp_invite(port: int, pki: Pki) -> tuple[SipResponse, str]:
    """A carrier's INVITE to ``DID`` over TLS with a plain RTP offer; returns the final response.

    The carrier ACKs the final response (RFC 3261 17.1.1.3) and closes its connection.
    """
    context: ssl.SSLContext = pki.client_context()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    local_port = writer.get_extra_info("sockname")[1]
    call_id = secrets.token_hex(12)
    branch = f"z9hG4bK{secrets.token_hex(8)}"
    headers = Headers()
    headers.add("Via", f"SIP/2.0/TLS 127.0.0.1:{local_port};branch={branch}")
    headers.add("Max-Forwards", "70")
    headers.add("From", f"<sip:+15551112222@127.0.0.1>;tag={secrets.token_hex(4)}")
    headers.add("To", f"<sip:{DID}@127.0.0.1>")
    headers.add("Call-ID", call_id)
    headers.add("CSeq", "1 INVITE")
    headers.add("Contact", f"<sip:carrier@127.0.0.1:{local_port};transport=tls>")
    headers.add("Content-Type", "application/sdp")
    uri = parse_uri(f"sip:{DID}@127.0.0.1:{port};transport=tls")
    invite = SipRequest(method="INVITE", uri=uri, headers=headers, body=_PLAIN_SDP.encode())
    framer = StreamFramer()
    try:
        writer.write(invite.to_bytes())
        final: SipResponse | None = None
        while final is None:
            data = await reader.read(65536)
            assert data, "the bridge closed the connection without a final response"
            framer.receive_data(data)
            while (item := framer.next_message()) is not None:
                if isinstance(item, SipResponse) and item.status_code >= 200:
                    final = item
                else:
                    assert isinstance(item, KeepAlive | SipResponse), item
        ack_headers = Headers()
        for name in ("Via", "Max-Forwards", "From", "Call-ID"):
            ack_headers.add(name, invite.headers.get(name) or "")
        ack_headers.add("To", final.headers.get("To") or "")
        ack_headers.add("CSeq", "1 ACK")
        writer.write(SipRequest(method="ACK", uri=uri, headers=ack_headers).to_bytes())
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2):
                await writer.wait_closed()
    return final, call_id
