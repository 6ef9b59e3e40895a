"""WebRtcLeg against real aiortc on loopback: two legs, aiortc's RTCPeerConnection, faults.

Every leg binds real UDP sockets on 127.0.0.1 and runs real ICE and DTLS. Offer/answer
goes through ``sip_gateway.sdp`` as in production, so the MediaConfig each leg gets is
the one signaling would hand over.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import cast

import aioice.ice
import aioice.stun
import pylibsrtp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from bridge.media._srtp_path import SrtpPath
from bridge.media.webrtc_leg import (
    DtlsFacts,
    WebRtcLeg,
    WebRtcLegConfig,
    WebRtcLegError,
    ice_servers,
)
from sip_gateway.sdp import (
    OPUS,
    PCMA,
    PCMU,
    Candidate,
    Codec,
    Direction,
    DtlsCrypto,
    Fingerprint,
    LocalMedia,
    MediaConfig,
    MediaProfile,
    MediaSecurity,
    RemoteIce,
    SetupRole,
    answer_offer,
    build_offer,
    parse_sdp,
    process_answer,
)

OPUS_SILENCE = b"\xf8\xff\xfe"  # one 20 ms Opus frame (CELT, DTX silence)
SRTP_PROFILES = {"SRTP_AES128_CM_SHA1_80", "SRTP_AEAD_AES_128_GCM", "SRTP_AEAD_AES_256_GCM"}


def rtp(seq: int, pt: int, payload: bytes, ssrc: int = 0x1234ABCD, marker: bool = False) -> bytes:
    """A plain RTP packet (RFC 3550 fixed header)."""
    second = (0x80 if marker else 0) | pt
    return struct.pack("!BBHII", 0x80, second, seq, seq * 960, ssrc) + payload


def rtcp_receiver_report(ssrc: int) -> bytes:
    """An empty RTCP RR (RFC 3550 section 6.4.2)."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


class Sink:
    """Collects the packets a leg hands over."""

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.states: list[str] = []


async def new_leg(sink: Sink, config: WebRtcLegConfig | None = None) -> WebRtcLeg:
    return await WebRtcLeg.create(
        config or WebRtcLegConfig(),
        on_rtp=sink.rtp.append,
        on_rtcp=sink.rtcp.append,
        on_state=sink.states.append,
    )


def profile_of(leg: WebRtcLeg) -> MediaProfile:
    return MediaProfile(
        security=MediaSecurity.DTLS, codecs=(OPUS, PCMU, PCMA), fingerprints=leg.fingerprints
    )


def local_of(leg: WebRtcLeg) -> LocalMedia:
    address, port = leg.default_address
    return LocalMedia(address=address, port=port, session_id=1, ice=leg.local_ice)


def negotiate(offerer: WebRtcLeg, answerer: WebRtcLeg) -> tuple[MediaConfig, MediaConfig]:
    """SDP offer/answer between two legs; returns (offerer's config, answerer's config)."""
    offer = build_offer(profile_of(offerer), local_of(offerer), key_source=secrets.token_bytes)
    answer, answerer_config = answer_offer(
        parse_sdp(offer.to_bytes()),
        profile_of(answerer),
        local_of(answerer),
        key_source=secrets.token_bytes,
    )
    offerer_config = process_answer(offer, parse_sdp(answer.to_bytes()), profile_of(offerer))
    return offerer_config, answerer_config


def with_fingerprints(config: MediaConfig, *fingerprints: Fingerprint) -> MediaConfig:
    assert isinstance(config.crypto, DtlsCrypto)
    return replace(config, crypto=replace(config.crypto, remote_fingerprints=fingerprints))


async def wait_for(condition: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling a plain predicate
            await asyncio.sleep(0.01)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.fixture
async def legs() -> AsyncIterator[Callable[[Sink], Awaitable[WebRtcLeg]]]:
    """Create legs that are closed at the end of the test."""
    made: list[WebRtcLeg] = []

    async def make(sink: Sink, config: WebRtcLegConfig | None = None) -> WebRtcLeg:
        made.append(leg := await new_leg(sink, config))
        return leg

    yield make
    for leg in made:
        await leg.close()


async def connect_pair(a: WebRtcLeg, b: WebRtcLeg) -> tuple[DtlsFacts, DtlsFacts]:
    """``a`` offers (ICE controlling, a=setup:actpass -> DTLS server), ``b`` answers."""
    config_a, config_b = negotiate(a, b)
    assert isinstance(config_a.crypto, DtlsCrypto)
    assert config_a.crypto.local_setup is SetupRole.PASSIVE
    return await asyncio.gather(
        a.connect(config_a, controlling=True), b.connect(config_b, controlling=False)
    )


# -- two legs ------------------------------------------------------------------------------


async def test_two_legs_carry_rtp_and_rtcp_both_ways_including_telephone_event(legs):
    sink_a, sink_b = Sink(), Sink()
    a, b = await legs(sink_a), await legs(sink_b)
    facts_a, facts_b = await connect_pair(a, b)

    to_b = [rtp(1, 111, OPUS_SILENCE, marker=True), rtp(2, 111, OPUS_SILENCE)]
    to_b += [rtp(3 + i, 101, bytes([5, 0x8A if i == 2 else 0x0A, 0, 160])) for i in range(3)]
    to_a = [rtp(7, 0, bytes(160), ssrc=7), rtp(8, 101, b"\x0b\x0a\x00\xa0", ssrc=7)]
    for packet in to_b:
        a.send_rtp(packet)
    for packet in to_a:
        b.send_rtp(packet)
    a.send_rtcp(rtcp_receiver_report(0x1234ABCD))
    await wait_for(lambda: len(sink_b.rtp) == len(to_b) and len(sink_a.rtp) == len(to_a))
    await wait_for(lambda: len(sink_b.rtcp) == 1)

    assert sink_b.rtp == to_b  # telephone-event (PT 101) included: aiortc's router would drop it
    assert sink_a.rtp == to_a
    assert sink_b.rtcp == [rtcp_receiver_report(0x1234ABCD)]
    for facts, role, ice_role, peer in (
        (facts_a, "server", "controlling", b),
        (facts_b, "client", "controlled", a),
    ):
        assert facts.dtls_version == "DTLSv1.2"
        assert facts.srtp_profile in SRTP_PROFILES
        assert facts.cipher and "ECDHE" in facts.cipher
        assert (facts.role, facts.ice_role) == (role, ice_role)
        assert facts.fingerprint_matches_signaling is True
        assert facts.remote_fingerprint == str(peer.fingerprints[0])
        assert facts.remote_fingerprint.startswith("sha-256 ")
    host_a, port_a = a.default_address
    assert facts_a.local_candidate == facts_b.remote_candidate == f"{host_a}:{port_a} udp host"
    assert a.facts() == facts_a
    assert (a.state, b.state) == ("connected", "connected")
    assert sink_a.states == ["connecting", "connected"]
    stats = a.stats()
    assert (stats.rtp_packets_out, stats.rtcp_packets_out, stats.rtp_packets_in) == (5, 1, 2)
    assert stats.rtp_bytes_out == sum(map(len, to_b))
    assert b.stats().rtp_bytes_in == sum(map(len, to_b))


async def test_local_parameters_describe_the_gathered_socket(legs):
    leg = await legs(Sink())
    ice = leg.local_ice
    assert len(ice.candidates) == 1
    candidate = ice.candidates[0]
    assert (candidate.address, candidate.port) == leg.default_address
    assert (candidate.transport, candidate.type, candidate.component) == ("udp", "host", 1)
    assert candidate.address == "127.0.0.1"  # aioice alone would have skipped loopback
    assert Candidate.parse(str(candidate)) == candidate
    assert len(ice.ufrag) >= 4 and len(ice.pwd) >= 22
    assert ice.pwd not in repr(ice)
    assert [f.algorithm for f in leg.fingerprints] == ["sha-256", "sha-384", "sha-512"]
    assert leg.state == "new"
    assert leg.facts() == DtlsFacts()


async def test_a_leg_that_peer_closes_turns_failed_and_drops_sends(legs):
    sink_a = Sink()
    a, b = await legs(sink_a), await legs(Sink())
    await connect_pair(a, b)
    await b.close()  # sends DTLS close_notify
    await wait_for(lambda: a.state == "failed")
    assert sink_a.states == ["connecting", "connected", "failed"]
    a.send_rtp(rtp(1, 0, bytes(160)))
    assert a.stats().send_dropped == 1


async def test_srtp_through_aiortcs_own_pump_reaches_the_callbacks_too(legs):
    # Until the fast path is hooked (or on another local socket) SRTP goes through aioice's
    # queue and aiortc's pump; its RTP router, which drops unknown payload types, is bypassed.
    sink_b = Sink()
    a, b = await legs(Sink()), await legs(sink_b)
    await connect_pair(a, b)
    del b._gatherer._connection._nominated[1].protocol.datagram_received  # unhook
    sent = [rtp(1, 0, bytes(160)), rtp(2, 101, b"\x01\x8a\x00\xa0")]
    for packet in sent:
        a.send_rtp(packet)
    a.send_rtcp(rtcp_receiver_report(1))
    await wait_for(lambda: len(sink_b.rtp) == 2 and len(sink_b.rtcp) == 1)
    assert sink_b.rtp == sent
    assert b.stats().rtp_packets_in == 2


# -- aiortc's RTCPeerConnection as the browser ------------------------------------------------


async def negotiate_with_pc(leg: WebRtcLeg, pc: RTCPeerConnection, we_offer: bool) -> MediaConfig:
    """Offer/answer between the leg (through sip_gateway.sdp) and aiortc's own SDP."""
    if we_offer:  # inbound call: we offer to the browser
        offer = build_offer(profile_of(leg), local_of(leg), key_source=secrets.token_bytes)
        await pc.setRemoteDescription(RTCSessionDescription(str(offer), "offer"))
        pc.addTrack(AudioStreamTrack())  # reuses the offer's transceiver: sendrecv
        await pc.setLocalDescription(await pc.createAnswer())
        answer = parse_sdp(pc.localDescription.sdp)
        return process_answer(offer, answer, profile_of(leg))
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    answer, config = answer_offer(
        parse_sdp(pc.localDescription.sdp),
        profile_of(leg),
        local_of(leg),
        key_source=secrets.token_bytes,
    )
    await pc.setRemoteDescription(RTCSessionDescription(str(answer), "answer"))
    return config


@pytest.mark.parametrize("we_offer", [False, True], ids=["pc-offers", "leg-offers"])
async def test_interop_with_aiortc_peer_connection(legs, monkeypatch, we_offer):
    # The "browser" side only: aioice skips 127.0.0.1 when gathering (PEERS 7.4). The
    # leg gathers on its configured addresses and needs no such patch.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    sink = Sink()
    leg = await legs(sink)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        config = await negotiate_with_pc(leg, pc, we_offer)
        assert config.codec.name == "opus"
        facts = await leg.connect(config, controlling=we_offer)

        # the answerer takes a=setup:active, so the offerer is the DTLS server
        assert facts.role == ("server" if we_offer else "client")
        assert facts.ice_role == ("controlling" if we_offer else "controlled")
        assert facts.fingerprint_matches_signaling is True
        assert facts.srtp_profile in SRTP_PROFILES
        pc_dtls = pc.getTransceivers()[0].receiver.transport
        assert pc_dtls._ssl is not None
        assert facts.srtp_profile == pc_dtls._ssl.get_selected_srtp_profile().decode()

        pt = config.codec.payload_type
        await wait_for(lambda: len(sink.rtp) >= 10)  # the pc's Opus, decrypted
        assert all(p[1] & 0x7F == pt for p in sink.rtp)
        for seq in range(25):
            leg.send_rtp(rtp(seq, pt, OPUS_SILENCE, ssrc=0xB0B))
            await asyncio.sleep(0.002)

        async def received_by_pc() -> int:
            stats = await pc.getStats()
            inbound = [s for s in stats.values() if s.type == "inbound-rtp"]
            return sum(s.packetsReceived for s in inbound)

        async with asyncio.timeout(3):
            while await received_by_pc() < 25:  # noqa: ASYNC110 - polling getStats
                await asyncio.sleep(0.05)
        assert await received_by_pc() == 25
        await wait_for(lambda: bool(sink.rtcp), within=3)  # the pc's sender report
        assert sink.rtcp[0][1] in (200, 201)
    finally:
        await pc.close()


# -- faults ----------------------------------------------------------------------------------


async def test_wrong_remote_fingerprint_fails_with_mismatch(legs):
    sink_a = Sink()
    a, b = await legs(sink_a), await legs(Sink())
    config_a, config_b = negotiate(a, b)
    forged = Fingerprint.from_digest("sha-256", secrets.token_bytes(32))
    results = await asyncio.gather(
        a.connect(with_fingerprints(config_a, forged), controlling=True),
        b.connect(config_b, controlling=False),
        return_exceptions=True,
    )
    error = results[0]
    assert isinstance(error, WebRtcLegError)
    assert error.reason == "fingerprint-mismatch"
    facts = a.facts()
    assert facts.fingerprint_matches_signaling is False
    assert facts.remote_fingerprint == str(b.fingerprints[0])  # what was really presented
    assert a.state == "failed"
    assert sink_a.states == ["connecting", "failed"]


async def test_every_checkable_fingerprint_must_match(legs):
    # sha-1 is not checked by aiortc; a right sha-256 next to a wrong sha-1 still fails here.
    a, b = await legs(Sink()), await legs(Sink())
    config_a, config_b = negotiate(a, b)
    wrong_sha1 = Fingerprint.from_digest("sha-1", secrets.token_bytes(20))
    results = await asyncio.gather(
        a.connect(with_fingerprints(config_a, b.fingerprints[0], wrong_sha1), controlling=True),
        b.connect(config_b, controlling=False),
        return_exceptions=True,
    )
    assert isinstance(results[0], WebRtcLegError)
    assert results[0].reason == "fingerprint-mismatch"
    assert a.facts().fingerprint_matches_signaling is False


def silent_peer_config(leg: WebRtcLeg, port: int) -> MediaConfig:
    """A config whose peer has one host candidate on a socket that never answers."""
    candidate = Candidate(
        foundation="1",
        component=1,
        transport="udp",
        priority=2130706431,
        address="127.0.0.1",
        port=port,
        type="host",
    )
    return MediaConfig(
        codecs=(Codec(payload_type=0, name="PCMU", clock_rate=8000),),
        telephone_event=None,
        ptime=20,
        remote_address=("127.0.0.1", port),
        remote_rtcp_address=("127.0.0.1", port),
        rtcp_mux=True,
        direction=Direction.SENDRECV,
        crypto=DtlsCrypto(
            remote_fingerprints=leg.fingerprints,  # any well-formed fingerprint
            remote_setup=SetupRole.ACTPASS,
            local_setup=SetupRole.ACTIVE,
        ),
        remote_ice=RemoteIce(ufrag="peer", pwd="p" * 22, candidates=(candidate,)),
    )


async def test_connect_times_out_against_a_silent_peer_and_leaks_nothing():
    tasks_before, fds_before = other_tasks(), open_fds()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        leg = await new_leg(Sink(), WebRtcLegConfig(connect_timeout=0.4))
        started = time.monotonic()
        with pytest.raises(WebRtcLegError) as caught:
            await leg.connect(silent_peer_config(leg, silent.getsockname()[1]), controlling=True)
        assert time.monotonic() - started < 1.4
        assert caught.value.reason == "timeout"
        assert silent.recv(2048)  # the checks really went out
        assert leg.state == "failed"
        await leg.close()
        await leg.close()  # idempotent
        assert leg.state == "closed"
    assert other_tasks() == tasks_before
    assert open_fds() == fds_before


async def test_close_releases_every_socket_and_task():
    tasks_before, fds_before = other_tasks(), open_fds()
    a = await new_leg(Sink(), WebRtcLegConfig(host_addresses=("127.0.0.1", "::1")))
    b = await new_leg(Sink())
    assert open_fds() >= fds_before + 3
    await connect_pair(a, b)
    assert other_tasks() - tasks_before  # pumps and consent checks are running
    await a.close()
    await b.close()
    assert (a.state, b.state) == ("closed", "closed")
    assert other_tasks() == tasks_before
    assert open_fds() == fds_before
    a.send_rtp(rtp(1, 0, b""))
    assert a.stats().send_dropped == 1


async def test_close_while_connecting_ends_connect_with_closed():
    tasks_before, fds_before = other_tasks(), open_fds()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        leg = await new_leg(Sink())
        attempt = asyncio.ensure_future(
            leg.connect(silent_peer_config(leg, silent.getsockname()[1]), controlling=True)
        )
        await asyncio.sleep(0.1)
        await leg.close()
        with pytest.raises(WebRtcLegError) as caught:
            await attempt
        assert caught.value.reason == "closed"
        assert leg.state == "closed"
    assert other_tasks() == tasks_before
    assert open_fds() == fds_before


async def test_cancelling_connect_propagates_and_releases():
    tasks_before, fds_before = other_tasks(), open_fds()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        leg = await new_leg(Sink())
        attempt = asyncio.ensure_future(
            leg.connect(silent_peer_config(leg, silent.getsockname()[1]), controlling=True)
        )
        await asyncio.sleep(0.1)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert leg.state == "failed"
        await leg.close()
    assert other_tasks() == tasks_before
    assert open_fds() == fds_before


async def test_hostile_datagrams_are_counted_not_fatal(legs):
    sink_b = Sink()
    a, b = await legs(Sink()), await legs(sink_b)
    await connect_pair(a, b)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        attacker.sendto(b"", b.default_address)  # would crash aiortc's own pump
        attacker.sendto(b"\x80\x00" + secrets.token_bytes(40), b.default_address)  # forged SRTP
        attacker.sendto(b"\x80\xc8" + secrets.token_bytes(40), b.default_address)  # forged SRTCP
        await wait_for(lambda: b.stats().unprotect_failures == 2 and b.stats().malformed_in == 1)
    a.send_rtp(rtp(1, 0, bytes(160)))
    await wait_for(lambda: len(sink_b.rtp) == 1)
    assert b.state == "connected"


async def test_a_failing_callback_is_counted_and_media_goes_on(legs):
    received: list[bytes] = []

    def explode(packet: bytes) -> None:
        received.append(packet)
        raise RuntimeError("pipeline bug")

    a = await legs(Sink())
    b = await WebRtcLeg.create(WebRtcLegConfig(), on_rtp=explode)
    try:
        await connect_pair(a, b)
        a.send_rtp(rtp(1, 0, bytes(160)))
        a.send_rtp(rtp(2, 0, bytes(160)))
        await wait_for(lambda: len(received) == 2)
        assert b.stats().callback_errors == 2
        assert b.state == "connected"
    finally:
        await b.close()


def srtp_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    key = secrets.token_bytes(30)  # AES_CM_128_HMAC_SHA1_80 master key || salt
    outbound = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    inbound = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    return pylibsrtp.Session(outbound), pylibsrtp.Session(inbound)


def test_srtp_path_demultiplexes_and_counts():
    sink, wire, other = Sink(), [], []
    path = SrtpPath(sink.rtp.append, sink.rtcp.append)
    path.send_rtp(rtp(1, 0, b"x"))
    assert path.stats.send_dropped == 1  # not started: dropped, nothing raised
    tx, rx = srtp_pair()
    path.start(
        rx=rx,
        tx=tx,
        sendto=lambda data, addr: wire.append((data, addr)),
        remote=("192.0.2.1", 4000),
        fallback=lambda data, addr: other.append(data),
    )
    path.send_rtp(rtp(1, 101, b"\x01\x0a\x00\xa0"))
    path.send_rtcp(rtcp_receiver_report(9))
    path.send_rtp(b"\x80")  # too short for libsrtp
    assert path.stats.protect_failures == 1
    assert [addr for _, addr in wire] == [("192.0.2.1", 4000)] * 2
    for data, _ in wire:  # loop the protected packets back in
        path.datagram_received(data, ("192.0.2.1", 4000))
    assert sink.rtp == [rtp(1, 101, b"\x01\x0a\x00\xa0")]
    assert sink.rtcp == [rtcp_receiver_report(9)]
    stun, dtls = b"\x00\x01\x00\x00" + bytes(16), b"\x16\xfe\xfd" + bytes(10)
    path.datagram_received(stun, ("192.0.2.1", 4000))
    path.datagram_received(dtls, ("192.0.2.1", 4000))
    assert other == [stun, dtls]  # not SRTP: aioice's own handler
    path.datagram_received(wire[0][0], ("192.0.2.1", 4000))  # a replay
    assert path.stats.unprotect_failures == 1
    path.datagram_received(b"\x80\x00" + bytes(2000), ("192.0.2.1", 4000))  # too long
    assert path.stats.unprotect_failures == 2
    path.send_rtp(rtp(2, 0, bytes(1600)))  # too long for libsrtp's buffer
    assert path.stats.protect_failures == 2
    path.stop_sending()
    path.send_rtcp(rtcp_receiver_report(9))
    assert path.stats.send_dropped == 2
    assert (path.stats.rtp_packets_out, path.stats.rtcp_packets_out) == (1, 1)


def test_srtp_path_counts_sends_the_socket_refuses():
    def refuse(data: bytes, addr: tuple[str, int]) -> None:
        raise BlockingIOError("send buffer full")

    path = SrtpPath(lambda packet: None, lambda packet: None)
    tx, rx = srtp_pair()
    path.start(rx=rx, tx=tx, sendto=refuse, remote=("192.0.2.1", 4000), fallback=print)
    path.send_rtp(rtp(1, 0, b"x"))
    path.send_rtcp(rtcp_receiver_report(9))
    assert path.stats.send_errors == 2
    assert (path.stats.rtp_packets_out, path.stats.rtcp_packets_out) == (0, 0)


# -- configuration and local misuse ----------------------------------------------------------


async def test_no_stun_or_turn_server_by_default(legs, monkeypatch):
    asked: list[object] = []

    async def spy(*args: object, **kwargs: object) -> object:
        asked.append(args)
        raise AssertionError("no STUN/TURN query expected")

    monkeypatch.setattr(aioice.ice, "server_reflexive_candidate", spy)
    monkeypatch.setattr(aioice.ice, "relayed_candidate", spy)
    assert ice_servers(WebRtcLegConfig()) == []  # never None: aiortc would add Google's STUN
    a, b = await legs(Sink()), await legs(Sink())
    await connect_pair(a, b)
    connection = a._gatherer._connection
    assert (connection.stun_server, connection.turn_server) == (None, None)
    assert [c.type for c in a.local_ice.candidates] == ["host"]
    assert asked == []


class StunResponder(asyncio.DatagramProtocol):
    """A loopback STUN server answering Binding requests (RFC 8489)."""

    def __init__(self) -> None:
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = aioice.stun.parse_message(data)
        self.requests += 1
        response = aioice.stun.Message(
            message_method=request.message_method,
            message_class=aioice.stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


async def test_a_configured_stun_server_is_used(legs):
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        StunResponder, local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        leg = await legs(Sink(), WebRtcLegConfig(stun_servers=(f"stun:127.0.0.1:{port}",)))
        assert server.requests == 1
        assert sorted(c.type for c in leg.local_ice.candidates) == ["host", "srflx"]
    finally:
        transport.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host_addresses": ()}, "at least one"),
        ({"host_addresses": ("0.0.0.0",)}, "unspecified"),
        ({"host_addresses": ("localhost",)}, "does not appear to be an IPv4 or IPv6"),
        ({"stun_servers": ("stun:a", "stun:b")}, "at most one"),
        ({"stun_servers": ("stuns:a",)}, "stun: URI"),
        ({"stun_servers": ("http://a",)}, "malformed"),
        ({"turn_servers": ("turn:a",)}, "turn_username"),
        ({"max_remote_candidates": 0}, "at least 1"),
        ({"connect_timeout": 0.0}, "positive"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WebRtcLegConfig(**kwargs)


def test_config_repr_hides_the_turn_password():
    config = WebRtcLegConfig(
        turn_servers=("turn:127.0.0.1:3478",), turn_username="u", turn_password="s3cret-turn"
    )
    assert "s3cret-turn" not in repr(config)
    (server,) = ice_servers(config)
    assert (server.urls, server.username, server.credential) == (
        "turn:127.0.0.1:3478",
        "u",
        "s3cret-turn",
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("too-many", "too-many-candidates"),
        ("no-ice", "invalid-config"),
        ("actpass", "invalid-config"),
        ("sha-1-only", "invalid-config"),
    ],
)
async def test_unusable_configs_are_refused_before_any_network(legs, change, reason):
    leg = await legs(Sink())
    config = silent_peer_config(leg, 9)
    crypto = config.crypto
    assert config.remote_ice is not None and isinstance(crypto, DtlsCrypto)
    if change == "too-many":
        many = config.remote_ice.candidates * 33
        config = replace(config, remote_ice=replace(config.remote_ice, candidates=many))
    elif change == "no-ice":
        config = replace(config, remote_ice=None)
    elif change == "actpass":
        config = replace(config, crypto=replace(crypto, local_setup=SetupRole.ACTPASS))
    else:
        config = with_fingerprints(config, Fingerprint.from_digest("sha-1", bytes(20)))
    with pytest.raises(WebRtcLegError) as caught:
        await leg.connect(config, controlling=True)
    assert caught.value.reason == reason
    assert leg.state == "new"


async def test_connect_twice_is_refused(legs):
    a, b = await legs(Sink()), await legs(Sink())
    config_a, _ = negotiate(a, b)
    await connect_pair(a, b)
    with pytest.raises(WebRtcLegError) as caught:
        await a.connect(config_a, controlling=True)
    assert caught.value.reason == "invalid-state"


async def test_the_ice_role_is_set_at_creation() -> None:
    for controlling in (True, False):
        leg = await WebRtcLeg.create(
            WebRtcLegConfig(), on_rtp=lambda _data: None, controlling=controlling
        )
        try:
            assert leg._gatherer._connection.ice_controlling is controlling
        finally:
            await leg.close()
