"""SIP over WebSocket (RFC 7118) on a real aiohttp server with TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from sip_gateway.aio import SipEndpointConfig
from sip_gateway.aio.websocket import SipWebSocketService, sip_websocket_handler
from sip_gateway.sip.events import MessageRejected, RequestReceived
from sip_gateway.sip.headers import Via
from sip_gateway.sip.message import SipRequest, SipResponse, build_response, parse_message

from .helpers import Recorder, eventually, options, raw_options

LIMIT = 5.0
SMALL = SipEndpointConfig(max_message_size=4096)
CLIENT_VIA = Via(transport="WSS", host="df7jal23ls0d.invalid", params=(("branch", "z9hG4bKws1"),))


@pytest.fixture
async def wss(tls_pki):
    """An HTTPS server with the SIP WebSocket route at /sip; yields (url, service, handler)."""
    handler = Recorder()
    service = SipWebSocketService(handler, config=SMALL)
    app = web.Application()
    app.router.add_get("/sip", service.handle)
    app.on_shutdown.append(service.on_shutdown)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_pki.server_context())
    await site.start()
    port = runner.addresses[0][1]
    yield f"wss://127.0.0.1:{port}/sip", service, handler
    await runner.cleanup()


@pytest.fixture
async def session(tls_pki):
    connector = aiohttp.TCPConnector(ssl=tls_pki.client_context())
    async with aiohttp.ClientSession(connector=connector) as client:
        yield client


async def receive_text(ws) -> str:
    msg = await ws.receive()
    assert msg.type is WSMsgType.TEXT, msg
    return msg.data


async def receive_sip(ws) -> SipRequest | SipResponse:
    return parse_message((await receive_text(ws)).encode())


async def test_options_over_wss_gets_200(wss, session):
    url, service, handler = wss
    async with asyncio.timeout(LIMIT), session.ws_connect(url, protocols=("sip",)) as ws:
        assert ws.protocol == "sip"
        await ws.send_str(options(CLIENT_VIA).to_bytes().decode())
        response = await receive_sip(ws)
        (endpoint,) = service.endpoints
        assert endpoint.transport == "WSS"
        assert endpoint.tls is not None and endpoint.tls.version in ("TLSv1.2", "TLSv1.3")
        assert endpoint.peer[0] == "127.0.0.1"
    assert isinstance(response, SipResponse) and response.status_code == 200
    (event,) = handler.of_type(RequestReceived)
    assert event.request.top_via.received == "127.0.0.1"  # RFC 7118: the Via host is .invalid


async def test_binary_message_accepted(wss, session):
    url, _, _ = wss
    async with asyncio.timeout(LIMIT), session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_bytes(options(CLIENT_VIA).to_bytes())
        response = await receive_sip(ws)
    assert response.status_code == 200


async def test_without_sip_subprotocol_is_refused(wss, session, caplog):
    url, service, _ = wss
    async with asyncio.timeout(LIMIT):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, protocols=("chat",))
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url)
        async with session.get(url) as plain:
            assert plain.status == 400
    assert refused.value.status == 400
    assert not service.endpoints
    assert "no 'sip' subprotocol" in caplog.text


async def test_server_request_to_browser(wss, session):
    url, service, _ = wss
    async with asyncio.timeout(LIMIT), session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_str(options(CLIENT_VIA).to_bytes().decode())
        await receive_sip(ws)
        (endpoint,) = service.endpoints
        via = endpoint.make_via()
        assert via.transport == "WSS" and via.param("alias") is None
        pending = asyncio.create_task(endpoint.request(options(via, target="sip:alice@x.invalid")))
        request = await receive_sip(ws)
        assert isinstance(request, SipRequest) and request.method == "OPTIONS"
        await ws.send_str(build_response(request, 200, to_tag="b").to_bytes().decode())
        response = await pending
    assert response.status_code == 200


async def test_bad_and_oversize_messages(wss, session, caplog):
    caplog.set_level("INFO", logger="sip_gateway.aio")
    url, service, handler = wss
    async with asyncio.timeout(LIMIT), session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_bytes(raw_options(branch="z9hG4bKbad", cseq="x OPTIONS"))
        assert (await receive_text(ws)).startswith("SIP/2.0 400 ")  # echoes the bad CSeq
        big = raw_options(branch="z9hG4bKbig", content_length=5000) + b"x" * 5000
        await ws.send_bytes(big)  # over max_message_size, under aiohttp's hard limit
        assert (await receive_sip(ws)).status_code == 513
        await ws.send_bytes(options(CLIENT_VIA).to_bytes())  # the connection stays usable
        assert (await receive_sip(ws)).status_code == 200
        await ws.send_bytes(b"\r\n\r\n")  # RFC 5626 ping over WebSocket
        pong = await ws.receive()
        assert pong.data == "\r\n"
        await ws.send_bytes(b"x" * (3 * SMALL.max_message_size))  # refused by aiohttp
        closing = await ws.receive()
        assert closing.type is WSMsgType.CLOSE
        assert closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await eventually(lambda: not service.endpoints)
    assert "exceeds limit" in caplog.text
    assert [ev.status_code for ev in handler.of_type(MessageRejected)] == [400, 513]


async def test_client_disconnect_and_server_close(wss, session):
    url, service, _ = wss
    async with asyncio.timeout(LIMIT):
        async with session.ws_connect(url, protocols=("sip",)) as ws:
            await ws.send_str(options(CLIENT_VIA).to_bytes().decode())
            await receive_sip(ws)
            (first,) = service.endpoints
        await first.wait_closed()
        assert not service.endpoints
        async with session.ws_connect(url, protocols=("sip",)) as ws:
            await ws.send_str(options(CLIENT_VIA).to_bytes().decode())
            await receive_sip(ws)
            (second,) = service.endpoints
            await service.on_shutdown()
            closing = await ws.receive()
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        assert second.closed.done()


def test_sip_websocket_handler_is_a_coroutine_function():
    handler = sip_websocket_handler(Recorder())
    assert asyncio.iscoroutinefunction(handler)
