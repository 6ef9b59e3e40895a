"""SipEndpoint over an in-memory wire: the adapter's own policies (buffers, timers, closing)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from sip_gateway.aio import (
    SipConnectionClosedError,
    SipEndpoint,
    SipEndpointConfig,
    SipRequestTimeoutError,
)
from sip_gateway.sip.errors import LocalProtocolError
from sip_gateway.sip.events import MessageRejected, TransactionTimedOut
from sip_gateway.sip.transaction import TimerSettings

from .helpers import Recorder, options, raw_options

LIMIT = 5.0


class FakeWire:
    transport = "TLS"
    stream = True
    peer = ("192.0.2.7", 40000)
    local = ("::1", 5061)
    tls = None
    peer_names = frozenset()

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.sent: list[bytes] = []
        self.buffered = 0
        self.closed = False
        self.aborted = False

    async def read(self) -> bytes | None:
        return await self.inbox.get()

    def write(self, messages: list[bytes]) -> None:
        self.sent.extend(messages)

    def write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inbox.put_nowait(None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    async def wait_closed(self) -> None:
        return None


@contextlib.asynccontextmanager
async def running(config: SipEndpointConfig | None = None, handler=None, **kwargs):
    wire = FakeWire()
    endpoint = SipEndpoint(wire, handler or Recorder(), config, **kwargs)
    task = asyncio.create_task(endpoint.run())
    try:
        async with asyncio.timeout(LIMIT):
            yield endpoint, wire
    finally:
        endpoint.close()
        await task


async def test_make_via_injected_branch_and_ipv6_host():
    tokens = iter(["t1", "t2"])
    config = SipEndpointConfig(branch_token=lambda: next(tokens))
    async with running(config) as (endpoint, _):
        first, second = endpoint.make_via(), endpoint.make_via()
        explicit = endpoint.make_via("z9hG4bKmine")
    assert str(first) == "SIP/2.0/TLS [::1]:5061;branch=z9hG4bKt1;rport;alias"
    assert second.branch == "z9hG4bKt2" and explicit.branch == "z9hG4bKmine"


async def test_write_buffer_limit_closes_the_connection(caplog):
    async with running(SipEndpointConfig(max_write_buffer=100)) as (endpoint, wire):
        wire.buffered = 101
        endpoint.send_request(options(endpoint.make_via()))
        assert wire.aborted and endpoint.is_closing
        await endpoint.wait_closed()
    assert "192.0.2.7:40000 is not reading" in caplog.text


async def test_fatal_rejection_flushes_the_error_then_closes():
    handler = Recorder()
    async with running(SipEndpointConfig(max_message_size=512), handler) as (endpoint, wire):
        wire.inbox.put_nowait(raw_options(branch="z9hG4bKx", content_length=4096))
        await endpoint.wait_closed()
    assert wire.sent and wire.sent[0].startswith(b"SIP/2.0 513 ")
    assert wire.closed and not wire.aborted
    (rejected,) = handler.of_type(MessageRejected)
    assert rejected.fatal


async def test_transaction_timer_fails_the_waiting_request():
    config = SipEndpointConfig(timers=TimerSettings(t1=0.002))  # Timer F = 64 * T1 = 128 ms
    handler = Recorder(answer=None)
    async with running(config, handler) as (endpoint, _):
        with pytest.raises(SipRequestTimeoutError, match="Timer F") as failed:
            await endpoint.request(options(endpoint.make_via()))
        unawaited = endpoint.send_request(options(endpoint.make_via()))
        (timed_out,) = await handler.wait_for(TransactionTimedOut)
    assert failed.value.status_code == 408
    assert timed_out.transaction_id == unawaited and timed_out.timer == "F"


async def test_ack_has_no_response_and_closed_endpoint_refuses_sends():
    async with running() as (endpoint, _):
        ack = options(endpoint.make_via())
        ack.method = "ACK"
        with pytest.raises(LocalProtocolError):
            await endpoint.request(ack)
        endpoint.close()
        await endpoint.wait_closed()
        with pytest.raises(SipConnectionClosedError):
            endpoint.send_request(options(endpoint.make_via()))
        with pytest.raises(SipConnectionClosedError):
            endpoint.send_keepalive()


async def test_keepalive_without_pong_closes(caplog):
    config = SipEndpointConfig(keepalive_interval=0.01, pong_timeout=0.05)
    async with running(config, keepalive=True) as (endpoint, wire):
        await endpoint.wait_closed()
    assert wire.sent[0] == b"\r\n\r\n"
    assert "no keep-alive pong from 192.0.2.7:40000" in caplog.text


async def test_pong_keeps_the_connection():
    config = SipEndpointConfig(keepalive_interval=0.01, pong_timeout=0.05)
    async with running(config, keepalive=True) as (endpoint, wire):
        for _ in range(5):
            await asyncio.sleep(0.02)
            wire.inbox.put_nowait(b"\r\n")
        assert not endpoint.is_closing
    assert wire.sent.count(b"\r\n\r\n") >= 2
