"""The running bridge: HTTPS root with HSTS, SIP over TLS, and REGISTER over WSS with digest."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bridge.app import RunningBridge, start
from bridge.settings import Settings
from sip_gateway.sip.auth import DigestAccount, DigestClient
from sip_gateway.sip.headers import Headers
from sip_gateway.sip.message import SipRequest, SipResponse, parse_message
from sip_gateway.sip.uri import parse_uri
from sip_gateway.tls import TlsClientConfig, client_context
from tests.userdb import add_users

REALM = "pstn-bridge"
PASSWORD = "correct horse battery staple"


@dataclass
class Bridge:
    running: RunningBridge
    ca: Path

    def client_ssl(self) -> ssl.SSLContext:
        return client_context(TlsClientConfig(ca_file=self.ca))

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.running.https_port}/sip"


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    settings = Settings.model_validate(
        {
            "node": {"var_dir": tmp_path / "var"},
            "sip": {"listen_port": 0},
            "http": {"listen_port": 0},
            "users": {"demo_user": ""},
        }
    )
    await add_users(settings, [("alice", PASSWORD, ())])
    running = await start(settings)
    assert running.ca_file is not None
    try:
        yield Bridge(running, running.ca_file)
    finally:
        await running.close()


def _register(cseq: int, *, call_id: str = "reg-1", auth: list[tuple[str, str]] = ()) -> SipRequest:  # type: ignore[assignment]
    headers = Headers()
    headers.add("Via", f"SIP/2.0/WSS client.invalid;branch=z9hG4bKreg{cseq};rport")
    headers.add("Max-Forwards", "70")
    headers.add("From", "<sip:alice@127.0.0.1>;tag=ws-tag")
    headers.add("To", "<sip:alice@127.0.0.1>")
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{cseq} REGISTER")
    headers.add("Contact", "<sip:x7k2@client.invalid;transport=ws>;expires=600")
    headers.add("Expires", "600")
    for name, value in auth:
        headers.add(name, value)
    return SipRequest(method="REGISTER", uri=parse_uri("sip:127.0.0.1"), headers=headers)


async def _exchange(ws: aiohttp.ClientWebSocketResponse, request: SipRequest) -> SipResponse:
    await ws.send_str(request.to_bytes().decode())
    async with asyncio.timeout(5):
        while True:
            msg = await ws.receive()
            assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
            data = msg.data.encode() if isinstance(msg.data, str) else msg.data
            response = parse_message(data)
            assert isinstance(response, SipResponse)
            if response.status_code >= 200:
                return response


async def _register_with(bridge: Bridge, password: str) -> tuple[SipResponse, SipResponse]:
    client = DigestClient(
        DigestAccount(username="alice", password=password), cnonce_source=lambda: "0a4f113b"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(bridge.ws_url, protocols=("sip",), ssl=bridge.client_ssl()) as ws,
    ):
        assert ws.protocol == "sip"
        first = _register(1)
        challenge = await _exchange(ws, first)
        assert challenge.status_code == 401
        auth = client.answer(
            401,
            challenge.headers.get_all("WWW-Authenticate"),
            method="REGISTER",
            uri="sip:127.0.0.1",
        )
        return challenge, await _exchange(ws, _register(2, auth=auth))


async def test_https_root_sends_hsts(bridge: Bridge) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"https://127.0.0.1:{bridge.running.https_port}/"
        async with session.get(url, ssl=bridge.client_ssl()) as response:
            assert response.status == 200
            hsts = response.headers["Strict-Transport-Security"]
            assert hsts == "max-age=31536000; includeSubDomains"
            assert "aiohttp" not in response.headers.get("Server", "")


async def test_register_over_wss_challenged_then_accepted(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    challenge, ok = await _register_with(bridge, PASSWORD)
    challenges = challenge.headers.get_all("WWW-Authenticate")
    assert "algorithm=SHA-256" in challenges[0]  # RFC 8760: preferred first
    assert "algorithm=MD5" in challenges[-1]  # JsSIP 3.13 keeps only the last, answers MD5
    assert ok.status_code == 200
    assert [str(c.uri) for c in ok.contacts] == ["sip:x7k2@client.invalid;transport=ws"]
    assert ok.contacts[0].param("expires") in ("599", "600")
    assert PASSWORD not in caplog.text


async def test_register_with_wrong_password_is_refused(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, refused = await _register_with(bridge, "wrong password")
    assert refused.status_code == 403
    assert "REGISTER from 127.0.0.1" in caplog.text and "bad-credentials" in caplog.text
    assert "wrong password" not in caplog.text


async def test_websocket_without_sip_subprotocol_is_refused(bridge: Bridge) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(bridge.ws_url, ssl=bridge.client_ssl())


async def test_sip_tls_options_and_register_refused_on_tls(bridge: Bridge) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", bridge.running.sip_port, ssl=bridge.client_ssl()
    )
    try:
        options = _register(1).to_bytes().replace(b"REGISTER", b"OPTIONS")
        writer.write(options + _register(2).to_bytes())
        async with asyncio.timeout(5):
            first = await _read_response(reader)
            second = await _read_response(reader)
        assert first.status_code == 200 and first.to_addr.tag
        assert second.status_code == 405  # registration is for browsers over WSS
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> SipResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    response = parse_message(head)
    assert isinstance(response, SipResponse)
    length = int(response.headers.get("Content-Length") or 0)
    if length:
        await reader.readexactly(length)
    return response


@pytest.mark.interop
@pytest.mark.parametrize(
    "args",
    [
        ["-tls1_1"],
        ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
        ["-tls1_2", "-cipher", "AES128-GCM-SHA256"],
    ],
    ids=["tls1.1", "cbc", "rsa-kx"],
)
async def test_openssl_below_policy_is_refused_by_both_listeners(
    bridge: Bridge, args: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    for port in (bridge.running.sip_port, bridge.running.https_port):
        done = await asyncio.to_thread(
            subprocess.run,
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-CAfile",
                str(bridge.ca),
                *args,
            ],
            input=b"",
            capture_output=True,
            timeout=20,
            check=False,
        )
        assert done.returncode != 0, done.stdout.decode()
        assert b"Cipher is (NONE)" in done.stdout or b"alert" in done.stderr
    assert "TLS handshake with 127.0.0.1" in caplog.text  # the SIP listener names the peer


async def test_embedded_carrier_sim_is_the_default_trunk_and_answers_with_srtp(
    tmp_path: Path,
) -> None:
    from sip_gateway.aio import RtpMediaPort
    from sip_gateway.trunk import TrunkStatus
    from tests.interop.peers import free_port

    sim_port = free_port()
    settings = Settings.model_validate(
        {
            "node": {"var_dir": tmp_path / "var"},
            "sip": {"listen_port": 0},
            "http": {"listen_port": 0},
            "trunks": [{"name": "sim", "host": "127.0.0.1", "port": sim_port}],
            "carrier_sim": {"listen_port": sim_port, "ring_time": 0.1},
        }
    )
    running = await start(settings)
    try:
        trunk = running.gateway.trunk("sim")
        async with asyncio.timeout(10):
            while trunk.status is not TrunkStatus.UP:  # noqa: ASYNC110 - bounded poll of the keep-alive state
                await asyncio.sleep(0.05)
        media = await RtpMediaPort.open("127.0.0.1", rtcp_mux=False)
        call = running.gateway.call("sim", "+15551230001", media=media)
        async with asyncio.timeout(10):
            config = await call.wait_answered()
        assert config.crypto is not None and config.crypto.suite == "AEAD_AES_256_GCM"
        await call.hangup()
        assert running.carrier_sim is not None
        assert [c.number for c in running.carrier_sim.calls] == ["+15551230001"]
    finally:
        await running.close()
