"""Calls through a real bridge: a packet-level browser, the embedded carrier simulator, SQLite.

Every test starts its own bridge (``bridge.app.start``) on free loopback ports with the
embedded carrier simulator as the trunk and a real user database, drives it with
:class:`tests.webrtc_client.WebRtcClient` (SIP over WSS, ICE + DTLS-SRTP through aiortc)
and checks what the carrier side saw: its WAV recording, its DTMF, its final statuses.
After each test the bridge must have no call, no browser dialog, no task and no socket
left. Calls carry 2-3 s of media.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge.app import RunningBridge, start
from bridge.media.events import MediaMode
from bridge.settings import Settings
from sip_gateway.carrier_sim import SimCall
from sip_gateway.devcerts import ensure_dev_pki
from sip_gateway.sdp import Attribute, SdpSession
from sip_gateway.tls import TlsClientConfig, client_context
from sip_gateway.trunk import CallFailedError
from tests.interop.peers import free_port
from tests.userdb import add_users
from tests.webrtc_audio import (
    level_dbfs,
    opus_packets,
    pcmu_payloads,
    speech_8k,
    speech_48k,
    windowed_correlation,
)
from tests.webrtc_client import (
    ClientCall,
    ClientConfig,
    DialFailedError,
    PacketSource,
    WebRtcClient,
)

PASSWORD = "correct horse battery staple"
USER, DID = "alice", "+15005550199"
NUMBER = "+441632960123"
SPEECH_SECONDS = 2.4


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One development PKI for the module (each bridge would otherwise make its own)."""
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Harness:
    """One running bridge plus the clients a test opened on it."""

    running: RunningBridge
    settings: Settings
    ca: Path
    clients: list[WebRtcClient] = field(default_factory=list)

    @property
    def sim_calls(self) -> tuple[SimCall, ...]:
        assert self.running.carrier_sim is not None
        return self.running.carrier_sim.calls

    def client_config(self, password: str = PASSWORD, **kwargs: Any) -> ClientConfig:
        return ClientConfig(
            url=f"wss://127.0.0.1:{self.running.https_port}/sip",
            ssl=client_context(TlsClientConfig(ca_file=self.ca)),
            user=USER,
            password=password,
            domain=self.settings.sip.realm,
            **kwargs,
        )

    async def client(self, *, register: bool = True, **kwargs: Any) -> WebRtcClient:
        client = WebRtcClient(self.client_config(**kwargs))
        self.clients.append(client)
        await client.connect()
        if register:
            response = await client.register()
            assert response.status_code == 200
            assert client.contact_echoed()
        return client

    async def idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a bound
        """Wait until the bridge holds no call and no browser dialog."""
        orchestrator = self.running.orchestrator
        async with asyncio.timeout(timeout):
            while orchestrator.active or len(orchestrator.dialogs):  # noqa: ASYNC110 - bounded poll
                await asyncio.sleep(0.05)


def _socket_count() -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith("socket:"):
                count += 1
    return count


@pytest.fixture
async def bridge(tmp_path: Path, pki: Any) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """A factory: ``await bridge(mode="busy", ...)`` starts a bridge with those sim options."""
    started: list[Harness] = []
    sockets_before = _socket_count()
    tasks_before = asyncio.all_tasks()

    async def factory(
        *, sip: dict[str, Any] | None = None, sections: dict[str, Any] | None = None, **sim: Any
    ) -> Harness:
        """``sections``: more settings sections (``{"events": {...}}``)."""
        sim_port = free_port()
        settings = Settings.model_validate(
            {
                "node": {"var_dir": tmp_path / f"var{len(started)}"},
                "tls": {
                    "cert_file": pki.server_certificate,
                    "key_file": pki.server_key,
                    "ca_file": pki.ca_certificate,
                },
                "sip": {"listen_port": 0} | (sip or {}),
                "http": {"listen_port": 0},
                "users": {"demo_user": ""},
                "trunks": [
                    {
                        "name": "sim",
                        "host": "127.0.0.1",
                        "port": sim_port,
                        "ca_file": pki.ca_certificate,
                        "allowed_sources": ["127.0.0.1/32"],
                        "options_interval": 0,
                    }
                ],
                "carrier_sim": {
                    "listen_port": sim_port,
                    "ring_time": 0.05,
                    "record_dir": tmp_path / "recordings",
                }
                | sim,
            }
            | (sections or {})
        )
        await add_users(settings, [(USER, PASSWORD, (DID,))])
        running = await start(settings)
        harness = Harness(running, settings, pki.ca_certificate)
        started.append(harness)
        return harness

    yield factory
    for harness in started:
        for client in harness.clients:
            await client.close(hangup=True)
        with contextlib.suppress(TimeoutError):
            await harness.idle()
        orchestrator = harness.running.orchestrator
        assert orchestrator.active == 0, orchestrator.calls
        assert len(orchestrator.dialogs) == 0
        await harness.running.close()
    await asyncio.sleep(0.1)
    left = [
        t
        for t in asyncio.all_tasks() - tasks_before
        if not t.done() and t is not asyncio.current_task()
    ]
    assert not left, f"tasks left behind: {left}"
    assert _socket_count() <= sockets_before, "sockets left behind"


async def _answered_call(client: WebRtcClient, number: str = NUMBER, **kwargs: Any) -> ClientCall:
    call = await client.dial(number, **kwargs)
    await call.wait_answered()
    await call.wait_media()
    return call


def _recording(sim_call: SimCall) -> np.ndarray:
    assert sim_call.recording is not None
    with wave.open(str(sim_call.recording), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16)


def _bridge_call(harness: Harness) -> Any:
    calls = list(harness.running.orchestrator.calls.values())
    assert len(calls) == 1
    return calls[0]


async def _talk(call: ClientCall, codec: str) -> np.ndarray:
    """Send the speech once (2.4 s) and wait for its echo; returns the 8 kHz reference."""
    if codec == "opus":
        call.play(PacketSource("opus", opus_packets(speech_48k(SPEECH_SECONDS)), loop=False))
    else:
        call.play(PacketSource(codec, pcmu_payloads(speech_8k(SPEECH_SECONDS)), loop=False))
    await asyncio.sleep(SPEECH_SECONDS + 0.4)
    return speech_8k(SPEECH_SECONDS)


async def _hang_up(harness: Harness, call: ClientCall) -> SimCall:
    assert await call.hangup() == 200
    sim_call = harness.sim_calls[-1]
    async with asyncio.timeout(5):
        await sim_call.wait_ended()
    await harness.idle()
    return sim_call


def _assert_audio_crossed(reference: np.ndarray, sim_call: SimCall, call: ClientCall) -> None:
    """The carrier recorded our speech; its echo came back to us as speech."""
    recorded = _recording(sim_call)
    assert windowed_correlation(reference, recorded) >= 0.8
    assert call.config is not None
    codec = call.config.codec
    echo = call.reception.decoded(codec.name, codec.payload_type)
    assert call.reception.count > 100
    assert level_dbfs(echo) > -40.0
    # two adaptive jitter buffers (carrier, bridge) and Opus at 8 kHz lie on the echo path
    assert windowed_correlation(reference, echo, max_lag=24000) >= 0.4


def _assert_security_record(record: dict[str, Any], *, webrtc_codec: str) -> None:
    legs = {leg["leg"]: leg for leg in record["legs"]}
    webrtc, gateway, pstn = legs["webrtc"], legs["gateway"], legs["pstn"]
    assert webrtc["encrypted"] is True
    assert webrtc["signaling"]["transport"] == "wss"
    media = webrtc["media"]
    assert media["protocol"] == "DTLS-SRTP"
    assert media["dtls_version"] == "DTLSv1.2"
    assert media["srtp_profile"].startswith("SRTP_")
    assert media["fingerprint_matches_signaling"] is True
    assert media["remote_fingerprint"].startswith("sha-256 ")
    assert media["codec"] == webrtc_codec
    assert gateway["encrypted"] is True
    assert gateway["signaling"]["transport"] == "tls"
    assert gateway["media"]["keying"] == "SDES"
    assert gateway["media"]["crypto_suite"] in (
        "AEAD_AES_256_GCM",
        "AEAD_AES_128_GCM",
        "AES_CM_128_HMAC_SHA1_80",
    )
    assert gateway["media"]["keys_fresh"] is True
    assert pstn["encrypted"] is None
    assert pstn["status"] == "carrier-dependent"
    assert "caveat" in pstn
    assert "pstn-leg-carrier-dependent" in record["caveats"]
    assert record["end_to_end_encrypted"] is False


# -- outbound calls --------------------------------------------------------------------------


async def test_outbound_opus_call_is_transcoded_and_carries_speech(bridge) -> None:
    harness = await bridge()
    client = await harness.client()
    call = await _answered_call(client, codecs=("opus", "PCMU"))
    assert 180 in call.provisional
    assert _bridge_call(harness).media.mode is MediaMode.TRANSCODE
    reference = await _talk(call, "opus")
    sim_call = await _hang_up(harness, call)
    _assert_audio_crossed(reference, sim_call, call)
    assert call.security_records, "no security record INFO arrived"
    _assert_security_record(call.security_records[-1], webrtc_codec="opus/48000/2")
    for _kind, body in call.infos:
        assert b"inline:" not in body, "key material in an INFO"
        assert b"a=crypto" not in body
    assert harness.running.orchestrator.ended["caller-hangup"] == 1


async def test_outbound_pcmu_first_is_relayed_and_carries_speech(bridge) -> None:
    harness = await bridge()
    client = await harness.client()
    call = await _answered_call(client, codecs=("PCMU", "opus"))
    assert call.config is not None and call.config.codec.name == "PCMU"
    assert _bridge_call(harness).media.mode is MediaMode.RELAY
    reference = await _talk(call, "PCMU")
    sim_call = await _hang_up(harness, call)
    _assert_audio_crossed(reference, sim_call, call)
    assert call.security_records
    _assert_security_record(call.security_records[-1], webrtc_codec="PCMU/8000")


async def test_dtmf_by_rtp_and_by_info_reaches_the_carrier(bridge) -> None:
    harness = await bridge()
    client = await harness.client()
    call = await _answered_call(client)
    await asyncio.sleep(0.2)
    sim_call = harness.sim_calls[-1]
    call.send_dtmf_rtp("123#")
    await _digits(sim_call, 4)
    assert "".join(sim_call.digits) == "123#"
    for digit in "123#":
        assert await call.send_dtmf_info(digit, duration_ms=100) == 200
    await _digits(sim_call, 8)
    await _hang_up(harness, call)
    assert "".join(sim_call.digits) == "123#123#"


async def _digits(sim_call: SimCall, count: int) -> None:
    async with asyncio.timeout(3):
        while len(sim_call.digits) < count:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.05)


async def test_cancel_before_answer_cancels_the_trunk_call(bridge) -> None:
    harness = await bridge(mode="no-answer", no_answer_timeout=30.0)
    client = await harness.client()
    call = await client.dial(NUMBER)
    async with asyncio.timeout(5):
        while 180 not in call.provisional:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.02)
    call.cancel()
    with pytest.raises(DialFailedError) as failed:
        await call.wait_answered()
    assert failed.value.status == 487
    async with asyncio.timeout(5):
        await harness.sim_calls[-1].wait_ended()
    await harness.idle()


# -- inbound calls ---------------------------------------------------------------------------


async def test_inbound_call_rings_the_browser_and_carries_audio_both_ways(bridge) -> None:
    harness = await bridge()
    client = await harness.client()
    sim = harness.running.carrier_sim
    assert sim is not None
    placing = asyncio.ensure_future(sim.call(DID, "127.0.0.1", harness.running.sip_port))
    incoming = await client.next_incoming()
    await incoming.answer()
    async with asyncio.timeout(10):
        sim_call = await placing
    await incoming.wait_media()
    reference = await _talk(incoming, incoming.config.codec.name if incoming.config else "opus")
    assert await incoming.hangup() == 200
    async with asyncio.timeout(5):
        await sim_call.wait_ended()
    await harness.idle()
    _assert_audio_crossed(reference, sim_call, incoming)


async def test_inbound_call_without_registered_browser_gets_480(bridge) -> None:
    harness = await bridge()
    sim = harness.running.carrier_sim
    assert sim is not None
    with pytest.raises(CallFailedError) as failed:
        await sim.call(DID, "127.0.0.1", harness.running.sip_port)
    assert failed.value.status_code == 480


async def test_inbound_call_without_a_free_media_port_gets_503(bridge) -> None:
    """All of the bridge's gateway RTP ports are taken: a clear 503, nothing left over."""
    import socket

    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    low = port - port % 2  # the range holds one even port (RTP) and the next (RTCP)
    blockers = [taken]
    for extra in {low, low + 1} - {port}:
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            other.bind(("127.0.0.1", extra))
        blockers.append(other)
    try:
        harness = await bridge(sip={"media_port_range": [low, low + 1]})
        await harness.client()
        sim = harness.running.carrier_sim
        assert sim is not None
        with pytest.raises(CallFailedError) as failed:
            await sim.call(DID, "127.0.0.1", harness.running.sip_port)
        assert failed.value.status_code == 503
        await harness.idle()
    finally:
        for sock in blockers:
            sock.close()


async def test_inbound_call_declined_gets_603(bridge) -> None:
    harness = await bridge()
    client = await harness.client()
    sim = harness.running.carrier_sim
    assert sim is not None
    placing = asyncio.ensure_future(sim.call(DID, "127.0.0.1", harness.running.sip_port))
    incoming = await client.next_incoming()
    incoming.decline(603)
    with pytest.raises(CallFailedError) as failed:
        async with asyncio.timeout(10):
            await placing
    assert failed.value.status_code == 603
    await harness.idle()


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sim", "number", "status"),
    [
        ({"mode": "busy"}, NUMBER, 486),
        ({"mode": "no-answer", "no_answer_timeout": 0.5}, NUMBER, 480),
        ({}, "+19005550100", 403),
        ({}, "5550100", 484),
    ],
    ids=["busy", "no-answer", "blocked-prefix", "not-e164"],
)
async def test_refused_calls_get_the_right_status(bridge, sim, number, status) -> None:
    harness = await bridge(**sim)
    client = await harness.client()
    call = await client.dial(number)
    with pytest.raises(DialFailedError) as failed:
        await call.wait_answered()
    assert failed.value.status == status
    await harness.idle()


async def test_wrong_password_gets_403(bridge) -> None:
    harness = await bridge()
    client = await harness.client(register=False, password="not the password")
    response = await client.register()
    assert response.status_code == 403
    call = await client.dial(NUMBER)
    with pytest.raises(DialFailedError) as failed:
        await call.wait_answered()
    assert failed.value.status == 403
    assert harness.sim_calls == ()


async def test_browser_closing_its_websocket_mid_call_hangs_up_the_trunk(bridge) -> None:
    harness = await bridge()
    client = await harness.client()
    call = await _answered_call(client)
    call.play(PacketSource("opus", opus_packets(speech_48k(1.0))))
    await asyncio.sleep(0.3)
    sim_call = harness.sim_calls[-1]
    await client.drop()
    async with asyncio.timeout(3):
        await sim_call.wait_ended()
    await harness.idle()
    assert harness.running.orchestrator.ended["browser-connection-lost"] == 1


# -- hostile input ---------------------------------------------------------------------------


def _no_fingerprint(offer: SdpSession) -> None:
    offer.attributes = [a for a in offer.attributes if a.name != "fingerprint"]
    for media in offer.media:
        media.attributes = [a for a in media.attributes if a.name != "fingerprint"]


def _many_candidates(offer: SdpSession) -> None:
    media = offer.media[0]
    for i in range(1000):
        media.attributes.append(
            Attribute("candidate", f"{i} 1 udp {2130706431 - i} 127.0.0.1 {20000 + i} typ host")
        )


def _unknown_codecs(offer: SdpSession) -> None:
    media = offer.media[0]
    media.formats = ["96", "97"]
    media.attributes = [a for a in media.attributes if a.name not in ("rtpmap", "fmtp")]
    media.attributes.append(Attribute("rtpmap", "96 FOO/8000"))
    media.attributes.append(Attribute("rtpmap", "97 BAR/16000"))


@pytest.mark.parametrize(
    "hook", [_no_fingerprint, _many_candidates, _unknown_codecs], ids=lambda h: h.__name__[1:]
)
async def test_hostile_offers_get_488(bridge, hook) -> None:
    harness = await bridge()
    client = await harness.client()
    call = await client.dial(NUMBER, offer_hook=hook)
    with pytest.raises(DialFailedError) as failed:
        await call.wait_answered()
    assert failed.value.status == 488
    assert harness.sim_calls == ()
    assert sum(harness.running.orchestrator.refused.values()) == 1
    assert harness.running.orchestrator.recent_refusals[-1].as_dict()["end_reason"]


async def test_garbage_on_a_websocket_does_not_disturb_another_call(bridge) -> None:
    harness = await bridge()
    client = await harness.client()
    call = await _answered_call(client)
    call.play(PacketSource("opus", opus_packets(speech_48k(1.0))))
    await asyncio.sleep(0.3)
    rogue = await harness.client(register=False)
    for garbage in (
        b"\x00\xff\xfe garbage",
        b"INVITE sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n",
        os.urandom(3000),
        b"REGISTER sip:pstn-bridge SIP/2.0\r\nContent-Length: 99999\r\n\r\n",
    ):
        with contextlib.suppress(ConnectionError):
            await rogue.send_raw(garbage)
    before = call.reception.count
    await asyncio.sleep(0.5)
    assert call.reception.count >= before + 15, "media stopped after the garbage"
    second = await client.register()
    assert second.status_code == 200
    sim_call = await _hang_up(harness, call)
    assert sim_call.end_reason is not None


async def test_early_media_reaches_the_browser_before_the_answer(bridge) -> None:
    harness = await bridge(early_media=True, ring_time=0.8, mode="tone")
    client = await harness.client()
    dialing = asyncio.ensure_future(client.dial(NUMBER))
    try:
        async with asyncio.timeout(5):
            while not harness.running.orchestrator.calls:  # noqa: ASYNC110 - bounded poll
                await asyncio.sleep(0.02)
        bridged = _bridge_call(harness)
        call = await dialing
        await call.wait_answered()
        await call.wait_media()
    finally:
        if not dialing.done():
            dialing.cancel()
    assert 183 in call.provisional and 180 not in call.provisional
    phases = [t.new.value for t in bridged.history]
    assert phases[:2] == ["early-media", "answered"]
    await asyncio.sleep(0.5)
    assert call.reception.count > 10  # the carrier's tone flows after the answer too
    await _hang_up(harness, call)


async def test_no_secret_reaches_the_logs_or_the_record(bridge, caplog) -> None:
    """SRTP master keys, the password, HA1 values and digest responses never reach the
    logs (at DEBUG), the security record or the INFO bodies."""
    import base64
    import logging

    from sip_gateway.sip.auth import DigestAlgorithm, compute_ha1

    caplog.set_level(logging.DEBUG)
    harness = await bridge()
    client = await harness.client()
    call = await _answered_call(client)
    await asyncio.sleep(0.3)
    bridged = _bridge_call(harness)
    crypto = bridged.gateway.media_config.crypto
    record = json.dumps(bridged.record.as_dict())
    await _hang_up(harness, call)
    secrets_seen = [
        base64.b64encode(crypto.local_key).decode(),
        base64.b64encode(crypto.remote_key).decode(),
        crypto.local_key.hex(),
        crypto.remote_key.hex(),
        PASSWORD,
        *(compute_ha1(USER, harness.settings.sip.realm, PASSWORD, a) for a in DigestAlgorithm),
    ]
    texts = [caplog.text, record, *(body.decode("utf-8", "replace") for _k, body in call.infos)]
    for secret in secrets_seen:
        for text in texts:
            assert secret not in text
    assert "response=" not in caplog.text  # digest responses are never logged
    assert "inline:" not in caplog.text and "inline:" not in record


async def test_carrier_dtmf_reaches_the_browser_as_rfc4733(bridge) -> None:
    from sip_gateway.media.dtmf import DtmfReceiver

    harness = await bridge(dtmf_to_send="47#", dtmf_delay=0.3)
    client = await harness.client()
    call = await _answered_call(client)
    assert call.config is not None and call.config.telephone_event is not None
    event = call.config.telephone_event
    receiver = DtmfReceiver(event.payload_type, event.clock_rate)
    digits: list[str] = []
    async with asyncio.timeout(6):
        seen = 0
        while len(digits) < 3:
            reception = call.reception
            for index in range(seen, reception.count):
                if reception.payload_types[index] == event.payload_type:
                    found = receiver.feed_payload(
                        event.payload_type, reception.timestamps[index], reception.payloads[index]
                    )
                    digits.extend(d.digit for d in found)
            seen = reception.count
            await asyncio.sleep(0.05)
    assert "".join(digits) == "47#"
    await _hang_up(harness, call)


async def test_inbound_call_rings_every_browser_and_the_first_answer_wins(bridge) -> None:
    harness = await bridge()
    first = await harness.client()
    second = await harness.client()  # the same user registered from a second browser
    sim = harness.running.carrier_sim
    assert sim is not None
    placing = asyncio.ensure_future(sim.call(DID, "127.0.0.1", harness.running.sip_port))
    ringing_first = await first.next_incoming()
    ringing_second = await second.next_incoming()
    await ringing_second.answer()
    async with asyncio.timeout(10):
        sim_call = await placing
    await ringing_second.wait_media()
    await ringing_first.wait_ended(timeout=5)
    assert ringing_first.status == 487  # the other browser's INVITE was cancelled
    assert not ringing_second.ended
    assert await ringing_second.hangup() == 200
    async with asyncio.timeout(5):
        await sim_call.wait_ended()
    await harness.idle()
