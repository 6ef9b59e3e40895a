"""SIP over TLS on 127.0.0.1: listener, connector, bad peers, keep-alives, alias reuse."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import warnings

import pytest

from sip_gateway.aio import (
    SipConnectError,
    SipConnectionClosedError,
    SipEndpointConfig,
    SipRequestTimeoutError,
    SipTlsConnector,
    SipTlsServer,
)
from sip_gateway.sip.events import KeepAliveReceived, MessageRejected, RequestReceived
from sip_gateway.tls import ClientAuth, client_context

from .helpers import Recorder, close_raw, eventually, options, raw_options, raw_tls, read_response

LIMIT = 5.0  # every test is bounded by asyncio.timeout(LIMIT)
SMALL = SipEndpointConfig(max_message_size=4096)


@pytest.fixture
async def listener(tls_pki):
    handler = Recorder()
    server = await SipTlsServer.start(
        "127.0.0.1", 0, tls_pki.server_context(), handler, config=SMALL
    )
    yield server, handler
    server.close()
    await server.wait_closed()


@pytest.fixture
async def connector(tls_pki):
    handler = Recorder()
    async with SipTlsConnector(handler, ssl_context=tls_pki.client_context()) as conn:
        yield conn, handler


def legacy_client(*, version: ssl.TLSVersion | None = None, ciphers: str) -> ssl.SSLContext:
    """A client context outside our policy (no verification: the server must refuse first)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated, on purpose
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = version or ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = version or ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
    return ctx


async def test_options_round_trip(listener, connector):
    server, server_events = listener
    conn, _ = connector
    async with asyncio.timeout(LIMIT):
        endpoint = await conn.connect("127.0.0.1", server.port)
        via = endpoint.make_via()
        response = await endpoint.request(options(via))
    assert response.status_code == 200
    assert via.transport == "TLS" and via.branch.startswith("z9hG4bK")
    assert via.rport == "" and via.param("alias") == ""
    assert (via.host, via.port) == endpoint.local
    assert endpoint.tls is not None and endpoint.tls.peer_certificate_verified
    (request_event,) = server_events.of_type(RequestReceived)
    received = request_event.request.top_via
    assert received.rport == str(endpoint.local[1])  # RFC 3581, stamped by the core
    (inbound,) = server.endpoints
    assert inbound.peer == endpoint.local and inbound.transport == "TLS"
    assert inbound.tls is not None and inbound.tls.version in ("TLSv1.2", "TLSv1.3")


async def test_connector_reuses_one_connection_per_peer(listener, connector):
    server, _ = listener
    conn, _ = connector
    async with asyncio.timeout(LIMIT):
        first, second = await asyncio.gather(
            conn.connect("127.0.0.1", server.port), conn.connect("127.0.0.1", server.port)
        )
        third = await conn.connect("127.0.0.1", server.port, server_hostname="127.0.0.1")
        assert first is second is third
        for _ in range(3):
            assert (await first.request(options(first.make_via()))).status_code == 200
        assert len(server.endpoints) == 1
        first.close()
        await first.wait_closed()
        fresh = await conn.connect("127.0.0.1", server.port)
    assert fresh is not first and conn.endpoints == {fresh}


async def test_connect_failures_raise_connect_error(tls_pki, listener):
    server, _ = listener
    rogue = SipTlsConnector(Recorder(), ssl_context=tls_pki.client_context(ca="rogue-ca"))
    async with asyncio.timeout(LIMIT), rogue:
        with pytest.raises(SipConnectError, match="not trusted"):
            await rogue.connect("127.0.0.1", server.port)
        with pytest.raises(SipConnectError, match="Hostname mismatch"):
            await rogue.connect(
                "127.0.0.1",
                server.port,
                ssl_context=tls_pki.client_context(),
                server_hostname="otherhost.invalid",
            )
        server.close()
        await server.wait_closed()
        with pytest.raises(SipConnectError, match=f"127.0.0.1:{server.port}"):
            await rogue.connect("127.0.0.1", server.port, ssl_context=tls_pki.client_context())


async def test_garbage_closes_only_that_connection(tls_pki, listener, caplog):
    server, _ = listener
    async with asyncio.timeout(LIMIT):
        good_reader, good_writer = await raw_tls(server.port, tls_pki.client_context())
        bad_reader, bad_writer = await raw_tls(server.port, tls_pki.client_context())
        bad_writer.write(os.urandom(2 * SMALL.max_message_size))  # no CRLFCRLF: framing fails
        assert await bad_reader.read() == b""  # closed by the server
        good_writer.write(raw_options(branch="z9hG4bKgood"))
        assert (await read_response(good_reader)).startswith(b"SIP/2.0 200 ")
        await close_raw(bad_writer)
        await close_raw(good_writer)
    assert "closing the connection" in caplog.text


async def test_malformed_request_gets_400_and_connection_stays(tls_pki, listener):
    server, events = listener
    async with asyncio.timeout(LIMIT):
        reader, writer = await raw_tls(server.port, tls_pki.client_context())
        writer.write(raw_options(branch="z9hG4bKbad", cseq="one OPTIONS"))
        bad = await read_response(reader)
        writer.write(raw_options(branch="z9hG4bKgood"))
        good = await read_response(reader)
        await close_raw(writer)
    assert bad.startswith(b"SIP/2.0 400 ") and b"branch=z9hG4bKbad" in bad
    assert good.startswith(b"SIP/2.0 200 ")
    (rejected,) = events.of_type(MessageRejected)
    assert rejected.status_code == 400 and not rejected.fatal


async def test_oversize_message_gets_513_and_closes(tls_pki, listener):
    server, _ = listener
    async with asyncio.timeout(LIMIT):
        reader, writer = await raw_tls(server.port, tls_pki.client_context())
        writer.write(raw_options(branch="z9hG4bKbig", content_length=10 * SMALL.max_message_size))
        response = await read_response(reader)
        rest = await reader.read()
        await close_raw(writer)
    assert response.startswith(b"SIP/2.0 513 ")
    assert rest == b""


async def test_peer_closing_mid_message(tls_pki, listener, caplog):
    server, events = listener
    caplog.set_level(logging.INFO, logger="sip_gateway.aio")
    async with asyncio.timeout(LIMIT):
        reader, writer = await raw_tls(server.port, tls_pki.client_context())
        writer.write(raw_options(branch="z9hG4bKhalf")[:60])
        await writer.drain()
        await eventually(lambda: server.endpoints)
        (inbound,) = server.endpoints
        await close_raw(writer)
        await inbound.wait_closed()
        reader, writer = await raw_tls(server.port, tls_pki.client_context())
        writer.write(raw_options(branch="z9hG4bKafter"))
        assert (await read_response(reader)).startswith(b"SIP/2.0 200 ")
        await close_raw(writer)
    assert "closed by the peer" in caplog.text
    assert len(events.of_type(RequestReceived)) == 1  # the half message was never delivered


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        (
            lambda: legacy_client(version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0"),
            "UNSUPPORTED_PROTOCOL",
        ),
        (
            lambda: legacy_client(
                ciphers="ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:AES128-SHA:@SECLEVEL=0"
            ),
            "NO_SHARED_CIPHER",
        ),
    ],
    ids=["tls1.1", "cbc-only"],
)
async def test_policy_refusal_is_logged_with_peer_and_reason(
    listener, connector, caplog, context, reason
):
    server, _ = listener
    conn, _ = connector
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(LIMIT):
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        client_port = sock.getsockname()[1]
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection(sock=sock, ssl=context(), server_hostname="127.0.0.1")
        sock.close()
        await eventually(lambda: reason in caplog.text)
        assert not server.endpoints
        endpoint = await conn.connect("127.0.0.1", server.port)  # others are still served
        assert (await endpoint.request(options(endpoint.make_via()))).status_code == 200
    records = [r for r in caplog.records if r.name == "sip_gateway.aio" and reason in r.message]
    assert f"127.0.0.1:{client_port}" in records[0].getMessage()
    assert records[0].levelno == logging.WARNING


async def test_missing_client_certificate_is_refused_and_logged(tls_pki, caplog):
    server = await SipTlsServer.start(
        "127.0.0.1",
        0,
        tls_pki.server_context(client_auth=ClientAuth.REQUIRED),
        Recorder(),
    )
    async with asyncio.timeout(LIMIT), server:
        anonymous = SipTlsConnector(Recorder(), ssl_context=tls_pki.client_context())
        async with anonymous:
            with pytest.raises((SipConnectError, SipConnectionClosedError)):
                endpoint = await anonymous.connect("127.0.0.1", server.port)
                # TLS 1.3: the server checks the certificate after the client's handshake
                await endpoint.request(options(endpoint.make_via()), timeout=2)
        await eventually(lambda: "client certificate" in caplog.text)
        assert server.handshake_refusals == {"no-client-certificate": 1}  # for the metrics
        mutual = SipTlsConnector(Recorder(), ssl_context=tls_pki.client_context(cert="client"))
        async with mutual:
            endpoint = await mutual.connect("127.0.0.1", server.port)
            assert (await endpoint.request(options(endpoint.make_via()))).status_code == 200
    assert "127.0.0.1:" in caplog.text


async def test_request_timeout_and_connection_loss(listener, connector):
    server, events = listener
    conn, _ = connector
    events.answer = None
    async with asyncio.timeout(LIMIT):
        endpoint = await conn.connect("127.0.0.1", server.port)
        with pytest.raises(SipRequestTimeoutError) as timed_out:
            await endpoint.request(options(endpoint.make_via()), timeout=0.1)
        assert timed_out.value.status_code == 408
        pending = asyncio.create_task(endpoint.request(options(endpoint.make_via())))
        await events.wait_for(RequestReceived, 2)
        server.close()
        with pytest.raises(SipConnectionClosedError):
            await pending
        await endpoint.wait_closed()
        with pytest.raises(SipConnectionClosedError):
            endpoint.send_request(options(endpoint.make_via()))


async def test_handler_exception_is_logged_and_connection_survives(tls_pki, caplog):
    calls = []

    def flaky(endpoint, event):
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("boom")
        Recorder()(endpoint, event)

    server = await SipTlsServer.start("127.0.0.1", 0, tls_pki.server_context(), flaky)
    conn = SipTlsConnector(Recorder(), ssl_context=tls_pki.client_context())
    async with asyncio.timeout(LIMIT), server, conn:
        endpoint = await conn.connect("127.0.0.1", server.port)
        with pytest.raises(SipRequestTimeoutError):
            await endpoint.request(options(endpoint.make_via()), timeout=0.2)
        assert (await endpoint.request(options(endpoint.make_via()))).status_code == 200
    assert "SIP handler failed on RequestReceived" in caplog.text
    assert "boom" in caplog.text


async def test_keepalive_ping_gets_pong(listener, tls_pki):
    server, server_events = listener
    handler = Recorder()
    config = SipEndpointConfig(keepalive_interval=0.05, pong_timeout=1.0)
    async with asyncio.timeout(LIMIT):
        async with SipTlsConnector(
            handler, ssl_context=tls_pki.client_context(), config=config
        ) as conn:
            endpoint = await conn.connect("127.0.0.1", server.port)
            pongs = await handler.wait_for(KeepAliveReceived, 2)
            assert not endpoint.is_closing
    assert all(not pong.ping for pong in pongs)
    assert any(ev.ping for ev in server_events.of_type(KeepAliveReceived))


async def test_missing_pong_closes_outbound_connection(tls_pki, caplog):
    async def silent(reader, writer):  # a TLS peer that reads and never answers
        while await reader.read(1024):
            pass
        writer.close()

    mute = await asyncio.start_server(silent, "127.0.0.1", 0, ssl=tls_pki.server_context())
    port = mute.sockets[0].getsockname()[1]
    config = SipEndpointConfig(keepalive_interval=0.05, pong_timeout=0.2)
    async with (
        asyncio.timeout(LIMIT),
        mute,
        SipTlsConnector(Recorder(), ssl_context=tls_pki.client_context(), config=config) as conn,
    ):
        endpoint = await conn.connect("127.0.0.1", port)
        await endpoint.wait_closed()
        assert not conn.endpoints
    assert "no keep-alive pong" in caplog.text


async def test_alias_reuses_inbound_connection_with_verified_certificate(tls_pki):
    server_side = SipTlsConnector(Recorder(), ssl_context=tls_pki.client_context())
    server = await SipTlsServer.start(
        "127.0.0.1",
        0,
        tls_pki.server_context(client_auth=ClientAuth.OPTIONAL),
        Recorder(),
        connector=server_side,
    )
    client_handler = Recorder()
    # the "server" leaf names 127.0.0.1 and may act as a client: it authenticates the Via host
    client_ctx = client_context(tls_pki.client_config(cert="server"))
    client = SipTlsConnector(client_handler, ssl_context=client_ctx)
    async with asyncio.timeout(LIMIT), server, server_side, client:
        outbound = await client.connect("127.0.0.1", server.port)
        assert (await outbound.request(options(outbound.make_via()))).status_code == 200
        back = await server_side.connect("127.0.0.1", outbound.local[1])
        assert back in server.endpoints
        response = await back.request(options(back.make_via(), target="sips:a@127.0.0.1"))
        assert response.status_code == 200
        assert client_handler.of_type(RequestReceived)


async def test_alias_without_client_certificate_is_not_reused(listener, tls_pki):
    server_side = SipTlsConnector(Recorder(), ssl_context=tls_pki.client_context())
    server = await SipTlsServer.start(
        "127.0.0.1", 0, tls_pki.server_context(), Recorder(), connector=server_side
    )
    client = SipTlsConnector(Recorder(), ssl_context=tls_pki.client_context())
    async with asyncio.timeout(LIMIT), server, server_side, client:
        outbound = await client.connect("127.0.0.1", server.port)
        assert (await outbound.request(options(outbound.make_via()))).status_code == 200
        assert not server_side.endpoints


async def test_stalled_handshake_is_bounded_and_logged(tls_pki, caplog):
    config = SipEndpointConfig(handshake_timeout=0.2)
    server = await SipTlsServer.start(
        "127.0.0.1", 0, tls_pki.server_context(), Recorder(), config=config
    )
    async with asyncio.timeout(LIMIT), server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # no TLS
        client_port = writer.get_extra_info("sockname")[1]
        assert await reader.read() == b""  # dropped by the server
        writer.close()
        await writer.wait_closed()
        assert server.handshake_refusals == {"timeout": 1}
    assert f"127.0.0.1:{client_port} refused: handshake did not complete in time" in caplog.text
