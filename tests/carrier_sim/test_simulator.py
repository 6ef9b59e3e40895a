"""The carrier simulator against our own trunk, both directions, real TLS and SRTP on loopback.

Our side is a :class:`TrunkGateway` with an :class:`RtpMediaPort` (1 kHz tone out, a
recorder in). Checks: echo returns our tone, tone mode sends 425 Hz, the simulator calls our
trunk listener and records what we send, RFC 4733 "123#" crosses each way once per digit,
busy/no-answer/hang-up behaviours, a plain RTP/AVP offer gets 488 with no RTP at all, and
no SDES key appears in any log line of the run (caplog at DEBUG, every logger).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import wave

import pytest

from sip_gateway.aio import SipTlsConnector
from sip_gateway.carrier_sim import (
    CarrierSimConfig,
    CarrierSimulator,
    WavFormatError,
    run_carrier_sim,
)
from sip_gateway.sip.headers import Headers
from sip_gateway.sip.message import SipRequest
from sip_gateway.sip.uri import parse_uri
from sip_gateway.trunk import (
    Answer,
    CallFailedError,
    CallFailure,
    CallRinging,
    EndReason,
    TrunkGateway,
)
from tests.interop.media_proof import OurMedia, assert_no_keys, assert_tone, read_wav
from tests.interop.peers import free_port, is_listening, write_tone_wav
from tests.trunk.helpers import CALLER, GATEWAY, Events, eventually, trunk_config

LIMIT = 10.0
DIGITS = list("123#")


@contextlib.asynccontextmanager
async def simulator(pki, **options):
    options = {"ring_time": 0.1, **options}
    config = CarrierSimConfig(
        listen_port=0, ssl_context=pki.server_context(), ca_file=pki.ca, **options
    )
    async with CarrierSimulator(config) as sim:
        yield sim


@contextlib.asynccontextmanager
async def bridge(pki, sim_port: int, *, route=None):
    gw = TrunkGateway([trunk_config(pki, "carrier-sim", sim_port)], route=route)
    if route is not None:
        await gw.listen("127.0.0.1", 0, pki.server_context())
    try:
        yield gw
    finally:
        async with asyncio.timeout(5):
            await gw.aclose()


async def test_bridge_calls_sim_in_echo_mode_dtmf_both_ways(pki, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    ours = OurMedia()
    options = {"mode": "echo", "record_dir": tmp_path / "rec", "dtmf_to_send": "123#"}
    async with (
        simulator(pki, dtmf_delay=1.4, **options) as sim,
        bridge(pki, sim.port) as gw,
        asyncio.timeout(LIMIT),
    ):
        port = await ours.open()
        call = gw.call("carrier-sim", GATEWAY, media=port, caller=CALLER)
        config = await call.wait_answered()
        await asyncio.sleep(1.3)
        echoed = ours.heard.samples()
        ours.send_digits(DIGITS)
        (sim_call,) = sim.calls
        await eventually(lambda: len(sim_call.digits) == 4 and len(ours.digits()) == 4)
        await asyncio.sleep(0.3)  # no digit is reported twice
        sim_config = sim_call.media.config
        await call.hangup()
        await sim_call.wait_ended()
    assert_tone(echoed, 1000.0, seconds=0.8)  # our own tone, back through the simulator
    assert sim_call.digits == DIGITS and ours.digits() == DIGITS
    assert sim_call.digits_sent == "123#"
    assert (sim_call.direction, sim_call.number, sim_call.caller) == ("inbound", GATEWAY, CALLER)
    assert sim_call.started_at <= sim_call.answered_at <= sim_call.ended_at
    assert sim_call.end_reason == EndReason.REMOTE_HANGUP
    assert sim_call.suite == config.crypto.suite == port.stats().suite
    stats = sim_call.media_stats()
    assert stats.packets_received > 50 and stats.packets_sent > 50 and not stats.dropped
    assert_tone(read_wav(sim_call.recording), 1000.0, seconds=0.8)
    assert f"carrier-sim: DTMF '#' on call {call.call_id}" in caplog.text
    assert f"carrier-sim: call {call.call_id} from 127.0.0.1:" in caplog.text
    assert_no_keys(caplog.text, config, sim_config)


async def test_bridge_calls_sim_in_tone_mode(pki):
    ours = OurMedia()
    async with (
        simulator(pki, mode="tone", tone_on=0.3, tone_off=0.1) as sim,
        bridge(pki, sim.port) as gw,
        asyncio.timeout(LIMIT),
    ):
        call = gw.call("carrier-sim", GATEWAY, media=await ours.open())
        await call.wait_answered()
        await asyncio.sleep(1.2)
        await call.hangup()
    assert_tone(ours.heard.samples(), 425.0)


async def test_sim_calls_bridge_listener(pki, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    ours, inbound = OurMedia(), []

    async def route(call):
        inbound.append(call)
        return Answer(media=await ours.open())

    options = {"mode": "tone", "tone_off": 0.0, "record_dir": tmp_path, "dtmf_to_send": "123#"}
    async with (
        simulator(pki, dtmf_delay=1.2, **options) as sim,
        bridge(pki, sim.port, route=route) as gw,
        asyncio.timeout(LIMIT),
    ):
        sim_call = await sim.call(GATEWAY, "127.0.0.1", gw._server.port, caller=CALLER)
        await asyncio.sleep(1.1)
        heard = ours.heard.samples()
        ours.send_digits(DIGITS)
        await eventually(lambda: len(sim_call.digits) == 4 and len(ours.digits()) == 4)
        await asyncio.sleep(0.3)
        configs = (inbound[0].media_config, sim_call.media.config)
        await sim_call.hangup()
        end = await inbound[0].wait_ended()
    assert end.reason is EndReason.REMOTE_HANGUP
    assert (inbound[0].did, inbound[0].caller) == (GATEWAY, CALLER)
    assert_tone(heard, 425.0, seconds=0.8)
    assert_tone(read_wav(sim_call.recording), 1000.0, seconds=0.8)
    assert sim_call.digits == DIGITS and ours.digits() == DIGITS
    assert sim_call.direction == "outbound" and sim_call.end_reason == EndReason.LOCAL_HANGUP
    assert_no_keys(caplog.text, *configs)


async def test_busy_no_answer_and_hangup_behaviours(pki):
    async with (
        simulator(pki, mode="busy") as sim,
        bridge(pki, sim.port) as gw,
        asyncio.timeout(LIMIT),
    ):
        call = gw.call("carrier-sim", GATEWAY, media=await OurMedia().open())
        with pytest.raises(CallFailedError) as busy:
            await call.wait_answered()
        await sim.calls[0].wait_ended()
    assert (busy.value.failure, busy.value.status_code) == (CallFailure.BUSY, 486)
    assert sim.calls[0].status_code == 486 and not sim.calls[0].answered

    async with (
        simulator(pki, mode="no-answer", no_answer_timeout=0.4) as sim,
        bridge(pki, sim.port) as gw,
        asyncio.timeout(LIMIT),
    ):
        timed_out = gw.call("carrier-sim", GATEWAY, media=await OurMedia().open())
        events = Events()
        cancelled = gw.call("carrier-sim", GATEWAY, media=await OurMedia().open(), on_event=events)
        await events.wait_for(CallRinging)
        cancelled.cancel()
        with pytest.raises(CallFailedError) as no_answer:
            await timed_out.wait_answered()
        await asyncio.gather(*(c.wait_ended() for c in sim.calls))
    assert (no_answer.value.failure, no_answer.value.status_code) == (CallFailure.NO_ANSWER, 480)
    assert sorted(c.status_code for c in sim.calls) == [480, 487]

    async with (
        simulator(pki, mode="echo", hangup_after=0.3) as sim,
        bridge(pki, sim.port) as gw,
        asyncio.timeout(LIMIT),
    ):
        call = gw.call("carrier-sim", GATEWAY, media=await OurMedia().open())
        await call.wait_answered()
        end = await call.wait_ended()
    assert end.reason is EndReason.REMOTE_HANGUP
    assert sim.calls[0].end_reason == EndReason.LOCAL_HANGUP


async def test_play_mode_and_refused_wav(pki, tmp_path):
    wav = write_tone_wav(tmp_path / "announce.wav", 600.0, 3.0)
    ours = OurMedia()
    async with (
        simulator(pki, mode="play", play_file=wav, ring_time=0) as sim,
        bridge(pki, sim.port) as gw,
        asyncio.timeout(LIMIT),
    ):
        call = gw.call("carrier-sim", GATEWAY, media=await ours.open())
        await call.wait_answered()
        await asyncio.sleep(1.0)
        await call.hangup()
    assert_tone(ours.heard.samples(), 600.0, seconds=0.7)

    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(320))
    sim = CarrierSimulator(
        CarrierSimConfig(
            listen_port=0, ssl_context=pki.server_context(), mode="play", play_file=stereo
        )
    )
    with pytest.raises(WavFormatError, match="2 channel"):
        await sim.start()


def plain_invite(endpoint, port: int, media_port: int) -> SipRequest:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()
    headers = Headers()
    headers.add("Via", str(endpoint.make_via()))
    headers.add("Max-Forwards", "70")
    headers.add("From", f"<sip:{CALLER}@127.0.0.1>;tag={secrets.token_hex(4)}")
    headers.add("To", f"<sip:{GATEWAY}@127.0.0.1>")
    headers.add("Call-ID", secrets.token_hex(8))
    headers.add("CSeq", "1 INVITE")
    headers.add("Contact", f"<sip:raw@127.0.0.1:{endpoint.local[1]};transport=tls>")
    headers.add("Content-Type", "application/sdp")
    uri = parse_uri(f"sip:{GATEWAY}@127.0.0.1:{port};transport=tls")
    return SipRequest(method="INVITE", uri=uri, headers=headers, body=sdp)


async def test_plain_rtp_offer_gets_488_and_no_media(pki):
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.setblocking(False)
    connector = SipTlsConnector(lambda _ep, _ev: None, ssl_context=pki.client_context())
    try:
        async with simulator(pki, mode="echo") as sim, asyncio.timeout(LIMIT):
            endpoint = await connector.connect("127.0.0.1", sim.port)
            response = await endpoint.request(
                plain_invite(endpoint, sim.port, rtp.getsockname()[1])
            )
            await asyncio.sleep(0.5)
            calls = sim.calls
    finally:
        connector.close()
        await connector.wait_closed()
    with pytest.raises(BlockingIOError):
        rtp.recv(2048)  # not one datagram came to the offered RTP port
    rtp.close()
    assert response.status_code == 488
    assert calls == ()  # refused by screening: no call, no media port was opened


async def test_run_carrier_sim_until_cancelled(pki):
    port = free_port()
    config = CarrierSimConfig(listen_port=port, ssl_context=pki.server_context())
    task = asyncio.create_task(run_carrier_sim(config))
    async with asyncio.timeout(5):
        while not is_listening(port):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # the listener is gone


async def test_call_needs_a_started_simulator_and_a_media_mode(pki):
    config = CarrierSimConfig(listen_port=0, ssl_context=pki.server_context())
    sim = CarrierSimulator(config)
    with pytest.raises(RuntimeError, match="start"):
        await sim.call(GATEWAY, "127.0.0.1", 5061)
    with pytest.raises(RuntimeError, match="not started"):
        _ = sim.port
    async with sim:
        assert f"port {sim.port}" in repr(sim)
        with pytest.raises(ValueError, match="busy"):
            await sim.call(GATEWAY, "127.0.0.1", 5061, mode="busy")
        with pytest.raises(ValueError, match="play"):
            await sim.call(GATEWAY, "127.0.0.1", 5061, mode="play")
        assert sim.calls == ()
