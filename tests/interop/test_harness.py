"""Self-tests of the interop harness against real peers, without our SIP stack.

Each test pairs a real peer (SIPp, stunnel, baresip) with a few lines of plain Python ``ssl``
playing the part of the bridge, which proves the fixtures, the stunnel configurations and the
scenario files before the code under test depends on them.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sip_gateway.tls import ClientAuth
from tests.pki import Pki

from .peers import free_port, read_sipp_stats, wait_log

pytestmark = pytest.mark.interop

IO_TIMEOUT = 5.0
CLIENT_CN = "pstn-bridge-dev-client"  # tests.pki's client leaf


# --------------------------------------------------------------------------------------------
# A minimal SIP-over-TLS speaker (the stand-in for the bridge)


def read_message(sock: ssl.SSLSocket, buf: bytearray) -> bytes:
    """Read one SIP message framed by Content-Length from ``sock`` (leftovers stay in ``buf``)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).decode()
            m = re.search(r"^(?:content-length|l)\s*:\s*(\d+)", head, re.I | re.M)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) >= total:
                msg = bytes(buf[:total])
                del buf[:total]
                return msg
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk


def header(msg: bytes, name: str) -> str:
    m = re.search(rf"^{name}\s*:\s*(.*?)\r$", msg.decode(), re.I | re.M)
    assert m, f"no {name} in {msg!r}"
    return m.group(1)


def status(msg: bytes) -> int:
    return int(msg.split(b" ", 2)[1])


def response(
    request: bytes, code: int, reason: str, *, to_tag: str = "", extra: str = "", body: str = ""
) -> bytes:
    lines = [f"SIP/2.0 {code} {reason}"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        value = header(request, name)
        if name == "To" and to_tag and ";tag=" not in value:
            value += f";tag={to_tag}"
        lines.append(f"{name}: {value}")
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    tail = f"{extra}{ctype}Content-Length: {len(body.encode())}\r\n\r\n{body}"
    return ("\r\n".join(lines) + "\r\n" + tail).encode()


def answer_options(conn: ssl.SSLSocket, msg: bytes) -> None:
    """Default server behaviour: 200 to every request except ACK; ignore responses."""
    if not msg.startswith((b"SIP/2.0", b"ACK ")):
        conn.sendall(response(msg, 200, "OK"))


@dataclass
class TlsSipServer:
    """One-connection TLS server on a thread; ``handle(conn, msg)`` runs for each message."""

    context: ssl.SSLContext
    handle: Callable[[ssl.SSLSocket, bytes], None] = answer_options
    port: int = field(default_factory=free_port)
    received: list[bytes] = field(default_factory=list)
    peer_cert: dict[str, Any] | None = None
    version: str | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(IO_TIMEOUT)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            raw, _ = self._listener.accept()
            with self.context.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(IO_TIMEOUT)
                self.peer_cert, self.version = conn.getpeercert(), conn.version()
                buf = bytearray()
                while True:
                    msg = read_message(conn, buf)
                    self.received.append(msg)
                    self.handle(conn, msg)
        except ConnectionError:
            pass  # the client closed: normal end
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self._listener.close()

    def close(self) -> None:
        self._thread.join(IO_TIMEOUT + 1)


def tls_client(pki: Pki, port: int, *, cert: str | None = None) -> ssl.SSLSocket:
    """A verifying TLS client (CA + IP SAN 127.0.0.1), like the bridge's connector."""
    raw = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT)
    return pki.client_context(cert=cert).wrap_socket(raw, server_hostname="127.0.0.1")


def request(
    method: str, call_id: str, cseq: int, *, to_tag: str = "", extra: str = "", body: str = ""
) -> bytes:
    to = "<sip:+15551230001@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:+15551230001@127.0.0.1;transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK{call_id}{cseq}{method}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:bridge@127.0.0.1>;tag=f{call_id}\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sip:bridge@127.0.0.1:5061;transport=tls>\r\n"
    )
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return f"{head}{extra}{ctype}Content-Length: {len(body.encode())}\r\n\r\n{body}".encode()


OFFER_KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
OFFER = (
    "v=0\r\no=bridge 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/SAVP 0 101\r\n"
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{OFFER_KEY}\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def to_tag(msg: bytes) -> str:
    m = re.search(r";tag=([^;>\s]+)", header(msg, "To"))
    assert m
    return m.group(1)


def digest(challenge: str, *, user: str, password: str, method: str, uri: str) -> str:
    """An RFC 2617 MD5 qop=auth Authorization value for ``challenge``."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    cnonce, nc = "0a4f113b", "00000001"

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    ha1 = md5(f"{user}:{params['realm']}:{password}")
    resp = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{md5(f'{method}:{uri}')}")
    return (
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


# --------------------------------------------------------------------------------------------
# Tests


def test_sipp_uac_options_through_stunnel_client(pki, sipp_tls_uac):
    server = TlsSipServer(pki.server_context(client_auth=ClientAuth.OPTIONAL))
    run = sipp_tls_uac("uac_options_tls", server.port, client_cert="client", calls=3)
    result = run.sipp.wait(20)
    server.close()

    assert server.error is None, server.error
    assert result.stats.successful == 3, result.describe()
    assert result.stats.failed == 0, result.describe()
    assert len(server.received) == 3
    assert all(r.startswith(b"OPTIONS sip:bridge@127.0.0.1:") for r in server.received)
    assert header(server.received[0], "Via").startswith("SIP/2.0/TLS ")
    assert server.version in ("TLSv1.2", "TLSv1.3")
    assert server.peer_cert is not None
    assert ((("commonName", CLIENT_CN),)) in server.peer_cert["subject"]
    assert "OPTIONS sip:bridge@" in result.messages()
    assert read_sipp_stats(run.sipp.stat_file) == result.stats


def test_stunnel_client_rejects_rogue_certificate(pki, sipp_tls_uac):
    server = TlsSipServer(pki.server_context(cert="rogue"))
    run = sipp_tls_uac("uac_options_tls", server.port, calls=1, timeout_s=5)
    result = run.sipp.wait(15)
    server.close()

    assert result.stats.successful == 0, result.describe()
    assert server.received == []
    wait_log(run.stunnel.log, "certificate verify failed", timeout=2)


def hang_up_after_ack(conn: ssl.SSLSocket, msg: bytes) -> None:
    """A callee that answers INVITE with an SDES answer and sends BYE right after the ACK."""
    if msg.startswith(b"INVITE "):
        assert b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in msg
        sdp = OFFER.replace(OFFER_KEY, "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CB")
        contact = "Contact: <sip:gw@127.0.0.1:5061;transport=tls>\r\n"
        conn.sendall(response(msg, 200, "OK", to_tag="gw1", extra=contact, body=sdp))
    elif msg.startswith(b"ACK "):
        bye = (
            f"BYE sip:+15550001111@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\n"
            f"From: {header(msg, 'To')}\r\nTo: {header(msg, 'From')}\r\n"
            f"Call-ID: {header(msg, 'Call-ID')}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        )
        conn.sendall(bye.encode())


def test_sipp_uac_invite_peer_hangs_up(pki, sipp_tls_uac):
    server = TlsSipServer(pki.server_context(), handle=hang_up_after_ack)
    run = sipp_tls_uac("uac_invite_tls", server.port, service="+15551230001")
    result = run.sipp.wait(20)
    server.close()

    assert server.error is None, server.error
    assert result.stats.successful == 1, result.describe()
    methods = [m.split(b" ", 1)[0] for m in server.received]
    assert methods == [b"INVITE", b"ACK", b"SIP/2.0"], methods
    assert status(server.received[-1]) == 200
    assert header(server.received[1], "To").endswith(";tag=gw1")


@pytest.mark.parametrize(
    ("scenario", "answer_key"),
    [("uas_tls_echo", OFFER_KEY), ("uas_tls_answer", "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CB")],
)
def test_tls_client_to_sipp_uas_through_stunnel_server(pki, sipp_tls_uas, scenario, answer_key):
    uas = sipp_tls_uas(scenario)
    with tls_client(pki, uas.port) as conn:
        conn.settimeout(IO_TIMEOUT)
        assert conn.version() in ("TLSv1.2", "TLSv1.3")
        buf = bytearray()
        conn.sendall(request("OPTIONS", "opt1", 1))
        assert status(read_message(conn, buf)) == 200

        conn.sendall(request("INVITE", "call1", 1, body=OFFER))
        reply = read_message(conn, buf)
        while status(reply) < 200:
            reply = read_message(conn, buf)
        assert status(reply) == 200
        assert "RTP/SAVP 0 101" in reply.decode()
        assert f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{answer_key}\r\n" in reply.decode()
        assert f":{uas.port};transport=tls>" in header(reply, "Contact")
        tag = to_tag(reply)
        conn.sendall(request("ACK", "call1", 1, to_tag=tag))
        conn.sendall(request("BYE", "call1", 2, to_tag=tag))
        assert status(read_message(conn, buf)) == 200
    result = uas.sipp.stop()

    assert result.stats.successful == 2, result.describe()
    assert result.stats.failed == 0, result.describe()


def test_stunnel_server_require_cert(pki, sipp_tls_uas):
    uas = sipp_tls_uas("uas_tls_echo", require_cert=True)
    with pytest.raises((ConnectionError, ssl.SSLError)), tls_client(pki, uas.port) as conn:
        conn.settimeout(IO_TIMEOUT)
        conn.sendall(request("OPTIONS", "nocert", 1))
        read_message(conn, bytearray())

    with tls_client(pki, uas.port, cert="client") as conn:
        conn.settimeout(IO_TIMEOUT)
        conn.sendall(request("OPTIONS", "withcert", 1))
        assert status(read_message(conn, bytearray())) == 200
    wait_log(uas.stunnel.log, f"CN={CLIENT_CN}", timeout=2)
    assert uas.sipp.stop().stats.successful == 1


def test_sipp_uas_digest_401(pki, sipp_tls_uas):
    uas = sipp_tls_uas("uas_digest_401", keys={"auth_user": "bridge", "auth_pass": "s3cret"})
    uri = "sip:+15551230001@127.0.0.1;transport=tls"
    with tls_client(pki, uas.port) as conn:
        conn.settimeout(IO_TIMEOUT)
        buf = bytearray()
        for call_id, password, expected in (("bad", "wrong", 403), ("good", "s3cret", 200)):
            conn.sendall(request("INVITE", call_id, 1, body=OFFER))
            challenge = read_message(conn, buf)
            assert status(challenge) == 401
            www = header(challenge, "WWW-Authenticate")
            assert 'realm="sipp.test"' in www and 'qop="auth"' in www and "algorithm=MD5" in www
            conn.sendall(request("ACK", call_id, 1, to_tag=to_tag(challenge)))
            auth = digest(www, user="bridge", password=password, method="INVITE", uri=uri)
            conn.sendall(
                request("INVITE", call_id, 2, extra=f"Authorization: {auth}\r\n", body=OFFER)
            )
            final = read_message(conn, buf)
            assert status(final) == expected, final
            conn.sendall(request("ACK", call_id, 2, to_tag=to_tag(final)))
        conn.sendall(request("BYE", "good", 3, to_tag=to_tag(final)))
        assert status(read_message(conn, buf)) == 200
    result = uas.sipp.stop()

    assert result.stats.successful == 1, result.describe()
    assert result.stats.failed == 1, result.describe()
    assert result.stats.failures == {"TimeoutOnRecv": 1}, result.describe()


def test_sipp_uas_register_401(pki, sipp_tls_uas):
    uas = sipp_tls_uas("uas_register_401", keys={"auth_user": "bridge", "auth_pass": "s3cret"})
    uri = "sip:127.0.0.1;transport=tls"
    with tls_client(pki, uas.port) as conn:
        conn.settimeout(IO_TIMEOUT)
        buf = bytearray()
        conn.sendall(
            request("REGISTER", "reg", 1, extra="Expires: 120\r\n").replace(
                b"REGISTER sip:+15551230001@127.0.0.1;transport=tls", f"REGISTER {uri}".encode()
            )
        )
        challenge = read_message(conn, buf)
        assert status(challenge) == 401
        auth = digest(
            header(challenge, "WWW-Authenticate"),
            user="bridge",
            password="s3cret",
            method="REGISTER",
            uri=uri,
        )
        msg = request("REGISTER", "reg", 2, extra=f"Expires: 120\r\nAuthorization: {auth}\r\n")
        conn.sendall(
            msg.replace(
                b"REGISTER sip:+15551230001@127.0.0.1;transport=tls", f"REGISTER {uri}".encode()
            )
        )
        ok = read_message(conn, buf)
        assert status(ok) == 200, ok
        assert header(ok, "Contact") == "<sip:bridge@127.0.0.1:5061;transport=tls>;expires=60"
    assert uas.sipp.stop().stats.successful == 1


async def test_baresip_tls_port_and_ctrl(pki, baresip):
    gw = baresip("gw", "+15551230001")
    with tls_client(pki, gw.tls_port) as conn:
        assert conn.version() in ("TLSv1.2", "TLSv1.3")
        cert = conn.getpeercert()
        assert cert is not None
        assert (("commonName", "localhost"),) in cert["subject"]

    ctrl = await gw.ctrl()
    reply = await ctrl.command("reginfo")
    assert reply["ok"] is True, reply
    assert "+15551230001" in reply["data"], reply


async def test_sipp_invite_to_baresip_gateway(pki, baresip, sipp_tls_uac):
    gw = baresip("gw", "+15551230001")
    ctrl = await gw.ctrl()
    run = sipp_tls_uac("uac_invite_tls", gw.tls_port, service="+15551230001")
    established = await ctrl.wait_event("CALL_ESTABLISHED", timeout=10)
    menc = await ctrl.wait_event("CALL_MENC", timeout=5)
    result = await run.sipp.wait_async(15)
    closed = await ctrl.wait_event("CALL_CLOSED", timeout=5)

    assert result.stats.successful == 1, result.describe()
    assert established["peeruri"].startswith("sip:+15550001111@")
    assert "AES_CM_128_HMAC_SHA1_80" in menc["param"]
    assert closed["type"] == "CALL_CLOSED"
    messages = result.messages()
    assert "RTP/SAVP" in messages.split("SIP/2.0 200 ", 1)[1]
    assert "BYE sip:" in messages
    wait_log(gw.log, "SRTP is Enabled", timeout=2)
