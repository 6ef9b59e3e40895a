"""RemoteCallMedia and ControlChannel against a MediaWorker served in this process over a
socketpair (the same code as the worker process, without the process), and against a
silent or vanishing peer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from bridge.media.control import (
    ChooseWebRtc,
    Configure,
    MediaWorkerLostError,
    Refused,
)
from bridge.media.events import MediaEvent, MediaWorkerLost
from bridge.media.pipeline import PipelineConfig
from bridge.media.remote import ControlChannel, RemoteCallMedia
from bridge.media.webrtc_leg import WebRtcLegConfig
from bridge.media.worker import serve
from sip_gateway.media.errors import LocalMediaError, MediaError
from tests.bridge.media.test_control import dtls_config, sdes_configs


async def _channel(
    pipeline: PipelineConfig | None = None,
) -> tuple[ControlChannel, asyncio.Task[None]]:
    ours, theirs = socket.socketpair()
    worker = asyncio.get_running_loop().create_task(serve(theirs))
    reader, writer = await asyncio.open_connection(sock=ours)
    channel = ControlChannel(reader, writer, name="test worker")
    channel.send(Configure(pipeline=pipeline or PipelineConfig(webrtc=WebRtcLegConfig())))
    return channel, worker


@pytest.fixture
async def channel() -> AsyncIterator[ControlChannel]:
    channel, worker = await _channel()
    yield channel
    await channel.aclose()
    async with asyncio.timeout(5):
        await worker


async def test_legs_are_made_in_the_worker_and_closed_with_the_call(
    channel: ControlChannel,
) -> None:
    media = RemoteCallMedia(channel, "c-1")
    await media.open()
    host, port = media.gateway_port.local_address
    assert host == "127.0.0.1" and port > 0
    browser = await media.new_webrtc_port(controlling=False)
    assert media.webrtc_port is browser
    assert browser.local_ice.candidates and browser.leg.fingerprints
    config = dtls_config()
    browser.apply(config)  # fire-and-forget: the codec is known here at once
    assert media.webrtc_codec == "opus/48000/2"
    gateway_config, _ = sdes_configs()
    media.gateway_port.apply(gateway_config)
    assert media.gateway_port.config == gateway_config
    media.gateway_config_applied(gateway_config)
    assert media.gateway_codec is not None
    await media.aclose()
    assert channel.calls == {}
    assert channel.resources.calls == 0  # pushed with the close
    assert channel.resources.rtp_sockets == 0


async def test_refusals_become_the_in_process_errors(channel: ControlChannel) -> None:
    media = RemoteCallMedia(channel, "c-2")
    with pytest.raises(MediaWorkerLostError):  # never opened: the worker does not know it
        await media.new_webrtc_port(controlling=True)
    request_id = channel.next_id()
    reply = await channel.request(
        ChooseWebRtc(request_id=request_id, call_id="nope", port_id=1), request_id
    )
    assert isinstance(reply, Refused) and reply.kind == "unknown-call"
    await media.aclose()


async def test_a_busy_port_range_is_an_os_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        channel, worker = await _channel(
            PipelineConfig(webrtc=WebRtcLegConfig(), gateway_port_range=(port, port))
        )
        media = RemoteCallMedia(channel, "c-3")
        with pytest.raises(OSError, match="media worker"):
            await media.open()
        await media.aclose()
        await channel.aclose()
        await worker


async def test_ports_refuse_the_wrong_keying_locally(channel: ControlChannel) -> None:
    media = RemoteCallMedia(channel, "c-4")
    await media.open()
    browser = await media.new_webrtc_port(controlling=False)
    with pytest.raises(MediaError):
        browser.apply(sdes_configs()[0])
    with pytest.raises(LocalMediaError):
        media.gateway_port.apply(dtls_config())
    media.gateway_port.close()
    with pytest.raises(LocalMediaError):
        media.gateway_port.apply(sdes_configs()[0])
    await media.aclose()


async def test_a_silent_worker_times_out_and_a_vanished_one_ends_its_calls() -> None:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    channel = ControlChannel(reader, writer, name="silent", request_timeout=0.2)
    events: list[MediaEvent] = []
    media = RemoteCallMedia(channel, "c-5", on_event=events.append)
    with pytest.raises(MediaWorkerLostError):
        await media.open()
    assert isinstance(MediaWorkerLostError("x"), ConnectionError)  # the call layer's OSError
    theirs.close()  # the worker is gone
    async with asyncio.timeout(5):
        while channel.alive:  # noqa: ASYNC110 - a bounded poll of plain state
            await asyncio.sleep(0.01)
    assert [type(e) for e in events] == [MediaWorkerLost]
    with pytest.raises(MediaWorkerLostError):
        await RemoteCallMedia(channel, "c-6").open()
    async with asyncio.timeout(1):
        await media.aclose()  # at once
    await channel.aclose()
