"""Proof of the gateway leg against baresip: our trunk with an RtpMediaPort, both directions.

baresip (``srtp-mand``, PEERS.md section 4) plays a 440 Hz WAV and records what it decrypts;
we send 1 kHz from an :class:`~sip_gateway.aio.RtpMediaPort` and keep what we play out.

* We call baresip through a :class:`TrunkGateway`; baresip calls our trunk listener (a trunk
  allowing 127.0.0.1) and our routing callback answers with an RtpMediaPort.
* Each way: we hear ~440 Hz, loud; baresip's ``-dec.wav`` measures ~1 kHz; RFC 4733 "123#"
  crosses each way and is reported once per digit.
* While we call baresip, a raw ``AF_PACKET`` capture on ``lo`` proves the media is SRTP: RTP
  headers readable (version, our SSRC, payload type, running sequence numbers), payloads
  of 160 B + the suite's tag with ~8 bit/B entropy, and no 16-byte window of the G.711 we
  encoded (or of baresip's WAV encoded the same way) in any datagram between the two ports.
* caplog at DEBUG for every logger: no form of either side's SDES key appears.

The plain-RTP refusals are proven elsewhere and not repeated here: a plain ``RTP/AVP`` offer
gets 488 from our trunk (``tests/trunk/test_interop.py``, SIPp) and from the simulator with
nothing sent to the offered port (``tests/carrier_sim``); a 2xx with plain ``RTP/AVP`` is
ACKed, hung up with BYE and media never applied (``tests/trunk/test_outbound.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct

import pytest

from sip_gateway.aio import SipEndpointConfig
from sip_gateway.media.g711 import G711Codec
from sip_gateway.media.rtp import RtpPacketizer
from sip_gateway.sdp import LocalMedia, MediaProfile, answer_offer, build_offer
from sip_gateway.trunk import Answer, EndReason, TrunkGateway
from tests.trunk.helpers import CALLER, GATEWAY, eventually, trunk_config

from .media_proof import (
    Datagram,
    LoopbackCapture,
    OurMedia,
    Tone,
    assert_no_keys,
    assert_srtp_on_wire,
    assert_tone,
    read_wav,
)
from .peers import free_port

pytestmark = pytest.mark.interop

LIMIT = 15.0
DIGITS = list("123#")
RATE = 8000


@contextlib.asynccontextmanager
async def trunk_to(pki, port: int, *, route=None):
    quick = SipEndpointConfig(close_timeout=0.5)  # baresip ignores close_notify
    gw = TrunkGateway([trunk_config(pki, "carrier", port)], route=route, endpoint_config=quick)
    if route is not None:
        await gw.listen("127.0.0.1", free_port(), pki.server_context())
    try:
        yield gw
    finally:
        async with asyncio.timeout(5):
            await gw.aclose()


async def dtmf_both_ways(ctrl, ours: OurMedia) -> list[str]:
    """Send "123#" each way at once; return the digits baresip reported."""
    ours.send_digits(DIGITS)
    await ctrl.command("sndcode", "".join(DIGITS))
    at_baresip = [(await ctrl.wait_event("CALL_DTMF_START", timeout=3))["param"] for _ in DIGITS]
    await eventually(lambda: len(ours.digits()) == len(DIGITS), timeout=3)
    await asyncio.sleep(0.4)  # room for a duplicate report, which must not come
    return at_baresip


def only_baresip_probe(dropped) -> bool:
    """No authentication or replay failure. baresip sends one plain 16-byte RTCP APP packet
    ("PING" "PONG") to our RTCP port at call start: dropped as malformed SRTCP, counted."""
    return set(dropped) <= {"malformed"} and dropped.get("malformed", 0) <= 1


def dtmf_starts(ctrl) -> int:
    return sum(1 for e in ctrl.events if e.get("type") == "CALL_DTMF_START")


async def test_our_trunk_calls_baresip_srtp_on_the_wire(pki, baresip, caplog):
    caplog.set_level(logging.DEBUG)
    peer = baresip("gw", GATEWAY, tone_hz=440.0, tone_s=10.0)
    ours = OurMedia(1000.0, rtcp_mux=False)  # baresip: rtcp_mux no
    with LoopbackCapture() as capture:
        async with trunk_to(pki, peer.tls_port) as gw, asyncio.timeout(LIMIT):
            ctrl = await peer.ctrl()
            port = await ours.open()
            call = gw.call("carrier", GATEWAY, media=port, caller=CALLER)
            config = await call.wait_answered()
            await ctrl.wait_event("CALL_ESTABLISHED", timeout=5)
            await asyncio.sleep(1.5)
            heard = ours.heard.samples()
            at_baresip = await dtmf_both_ways(ctrl, ours)
            stats = port.stats()
            ssrc = port.endpoint.session.local_ssrc
            await call.hangup()
            await ctrl.wait_event("CALL_CLOSED", timeout=5)
    # audio both ways, DTMF once per digit both ways
    assert_tone(heard, 440.0)
    (recording,) = peer.recordings("dec")
    assert_tone(read_wav(recording)[: int(1.3 * RATE)], 1000.0)
    assert at_baresip == DIGITS and dtmf_starts(ctrl) == len(DIGITS)
    assert ours.digits() == DIGITS
    assert call.end.reason is EndReason.LOCAL_HANGUP
    assert stats.latched and only_baresip_probe(stats.dropped), stats

    # on the wire: SRTP both ways, RTP headers intact, no plaintext G.711
    suite, codec = config.crypto.suite, config.codec
    here, there = port.local_address[1], config.remote_address[1]
    ours_out = assert_srtp_on_wire(
        capture.between(here, there),
        ssrc=ssrc,
        suite=suite,
        audio_pt=codec.payload_type,
        plaintext=[ours.tone.plaintext(codec.name)],
    )
    theirs = G711Codec(codec.name).encode(read_wav(peer.wav))
    theirs_in = assert_srtp_on_wire(
        capture.between(there, here),
        ssrc=None,
        suite=suite,
        audio_pt=codec.payload_type,
        plaintext=[theirs],
    )
    print(f"SRTP on the wire ({suite}): ours {ours_out}, baresip's {theirs_in}")
    assert_no_keys(caplog.text, config)


async def test_baresip_calls_our_trunk(pki, baresip, caplog):
    caplog.set_level(logging.DEBUG)
    peer = baresip("carrier", "carrier", tone_hz=440.0, tone_s=10.0)
    ours, calls = OurMedia(1000.0, rtcp_mux=False), []

    async def route(call):
        calls.append(call)
        return Answer(media=await ours.open())

    async with trunk_to(pki, peer.tls_port, route=route) as gw, asyncio.timeout(LIMIT):
        ctrl = await peer.ctrl()
        reply = await ctrl.command(
            "dial", f"sip:{GATEWAY}@127.0.0.1:{gw._server.port};transport=tls"
        )
        assert reply["ok"] is True, reply
        await ctrl.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(1.5)
        heard = ours.heard.samples()
        at_baresip = await dtmf_both_ways(ctrl, ours)
        (inbound,) = calls
        config = inbound.media_config
        await ctrl.command("hangup")
        end = await inbound.wait_ended()
        await ctrl.wait_event("CALL_CLOSED", timeout=5)
    assert inbound.did == GATEWAY and end.reason is EndReason.REMOTE_HANGUP
    assert_tone(heard, 440.0)
    (recording,) = peer.recordings("dec")
    assert_tone(read_wav(recording)[: int(1.3 * RATE)], 1000.0)
    assert at_baresip == DIGITS and dtmf_starts(ctrl) == len(DIGITS)
    assert ours.digits() == DIGITS
    stats = ours.port.stats()
    assert stats.packets_received > 50 and only_baresip_probe(stats.dropped), stats
    assert_no_keys(caplog.text, config)


async def test_the_evidence_checks_catch_plain_rtp_and_keys():
    """Negative controls: the wire check fails on plain RTP G.711, the key grep finds keys."""
    tone = Tone(1000.0)
    packetizer = RtpPacketizer(0x1234, 0, RATE, 1, 1)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        with LoopbackCapture() as capture:
            for _ in range(30):
                payload = G711Codec("PCMU").encode(tone())
                a.sendto(packetizer.packet_bytes(payload, 160, False), b.getsockname())
            await asyncio.sleep(0.2)
        plain = capture.between(a.getsockname()[1], b.getsockname()[1])
    assert len(plain) == 30
    with pytest.raises(AssertionError, match=r"160|entropy|plaintext"):
        assert_srtp_on_wire(plain, ssrc=0x1234, suite="AEAD_AES_256_GCM", audio_pt=0, plaintext=[])
    # ciphertext-like packets, but one hides 16 bytes of the G.711 we sent
    sneaky = []
    for seq in range(30):
        body = bytearray(os.urandom(170))
        if seq == 17:
            body[50:66] = tone.plaintext("PCMU")[300:316]
        header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234)
        sneaky.append(Datagram(plain[0].src, plain[0].dst, header + bytes(body)))
    figures = assert_srtp_on_wire(
        sneaky[:17], ssrc=0x1234, suite="AES_CM_128_HMAC_SHA1_80", audio_pt=0, min_packets=10
    )
    assert figures["payload"] == 170
    with pytest.raises(AssertionError, match=r"plaintext G\.711"):
        assert_srtp_on_wire(
            sneaky,
            ssrc=0x1234,
            suite="AES_CM_128_HMAC_SHA1_80",
            audio_pt=0,
            plaintext=[tone.plaintext("PCMU")],
        )

    local = LocalMedia(address="127.0.0.1", port=4000, session_id=1)
    offer = build_offer(MediaProfile(), local, key_source=lambda n: bytes(range(n)))
    _answer, config = answer_offer(offer, MediaProfile(), local, key_source=bytes)
    line = offer.to_bytes().decode()
    with pytest.raises(AssertionError, match="forms of SDES key material"):
        assert_no_keys(f"oops: {line}", config)
