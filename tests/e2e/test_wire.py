"""The wire witness is right: its readings of real handshakes match what the endpoints say.

``tests.e2e.wire`` is the witness of the truthfulness test, so it is tested against sessions
whose facts are known from the endpoints themselves (no Chromium, a second or so):

* TLS 1.2 and TLS 1.3 sessions between Python ``ssl`` endpoints (contexts from
  ``sip_gateway.tls``, the test PKI): the ServerHello read off the capture names the version
  and suite the client's ``SSLObject`` reports.
* A DTLS 1.2 handshake between two pyOpenSSL endpoints over UDP (as aiortc runs it: memory
  BIOs, ``use_srtp``): version, OpenSSL cipher name, SRTP profile, who was the client and
  both certificates (DER) match what each endpoint reports.
* SRTP-shaped packets with CSRCs and a header extension: the body is measured after them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from OpenSSL import SSL

from sip_gateway.tls import client_context
from tests.interop.media_proof import Datagram, LoopbackCapture
from tests.pki import Pki

from .calls import srtp_profile
from .wire import CIPHERS, dtls_handshake, srtp_packets, tls_server_hellos


async def _tls_session(pki: Pki, maximum: ssl.TLSVersion) -> tuple[int, int, str, str]:
    """One TLS session on loopback: (server port, client port, version, cipher) as the client
    sees them."""
    server = await asyncio.start_server(
        lambda r, w: w.close(), "127.0.0.1", 0, ssl=pki.server_context()
    )
    port = server.sockets[0].getsockname()[1]
    config = pki.client_config(maximum_version=maximum)
    try:
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(config), server_hostname="127.0.0.1"
        )
        tls = writer.get_extra_info("ssl_object")
        facts = (port, writer.get_extra_info("sockname")[1], tls.version(), tls.cipher()[0])
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return facts


@pytest.mark.parametrize(
    "maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
async def test_tls_server_hello_names_the_negotiated_version_and_suite(
    tls_pki: Pki, maximum: ssl.TLSVersion
) -> None:
    with LoopbackCapture(tcp=True) as capture:
        port, client, version, cipher = await _tls_session(tls_pki, maximum)
        await asyncio.sleep(0.1)
    (hello,) = tls_server_hellos(capture.segments, port)
    assert (hello.version, hello.cipher) == (version, cipher)
    assert hello.server == ("127.0.0.1", port) and hello.client == ("127.0.0.1", client)
    assert (
        version == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[maximum]
    )


def _dtls_endpoint(pki: Pki, name: str, *, server: bool) -> SSL.Connection:
    context = SSL.Context(SSL.DTLS_METHOD)
    cert = x509.load_pem_x509_certificate(pki.crt(name).read_bytes())
    key = load_pem_private_key(pki.key(name).read_bytes(), None)
    context.use_certificate(cert)
    context.use_privatekey(key)  # type: ignore[arg-type]
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
    context.set_tlsext_use_srtp(b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80")
    connection = SSL.Connection(context, None)
    if server:
        connection.set_accept_state()
    else:
        connection.set_connect_state()
    return connection


def _pump(connection: SSL.Connection, sock: socket.socket, peer: tuple[str, int]) -> bool:
    """Advance one endpoint's handshake; send what it wrote; True once it is done."""
    try:
        connection.do_handshake()
        done = True
    except SSL.WantReadError:
        done = False
    while True:
        try:
            data = connection.bio_read(1500)
        except SSL.WantReadError:
            break
        sock.sendto(data, peer)
    return done


def test_dtls_handshake_reading_matches_both_endpoints(tls_pki: Pki) -> None:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b, LoopbackCapture() as capture:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.setblocking(False)
        b.setblocking(False)
        ports = a.getsockname()[1], b.getsockname()[1]
        client = _dtls_endpoint(tls_pki, "server", server=False)
        server = _dtls_endpoint(tls_pki, "client", server=True)
        deadline = time.monotonic() + 5
        done = (False, False)
        while not all(done) and time.monotonic() < deadline:
            done = (
                _pump(client, a, b.getsockname()),
                _pump(server, b, a.getsockname()),
            )
            for sock, conn in ((a, client), (b, server)):
                try:
                    while True:
                        conn.bio_write(sock.recv(65535))
                except BlockingIOError:
                    pass
            time.sleep(0.005)
        assert all(done), "DTLS handshake did not complete"
        time.sleep(0.1)
    reading = dtls_handshake(capture.datagrams, *ports)
    assert reading.client_port == ports[0]
    assert reading.version == client.get_protocol_version_name() == "DTLSv1.2"
    assert reading.cipher[0] == client.get_cipher_name()
    assert reading.cipher in CIPHERS.values()
    selected = client.get_selected_srtp_profile().decode()
    assert srtp_profile(reading.srtp_profile) == srtp_profile(selected)
    assert reading.srtp_tag == (16 if "GCM" in selected else 10)
    for port, endpoint in ((ports[0], server), (ports[1], client)):
        # what each side received from the other is what the wire shows that side sent
        seen = endpoint.get_peer_certificate(as_cryptography=True)
        assert seen is not None
        assert reading.certificates[port] == seen.public_bytes(Encoding.DER)
        assert reading.fingerprint(port).startswith("sha-256 ")


def test_srtp_body_is_measured_after_csrcs_and_the_header_extension() -> None:
    datagrams = []
    for seq in range(5):
        header = struct.pack("!BBHII", 0x92, 0, seq, seq * 160, 0xABCD)  # X=1, CC=2
        header += struct.pack("!II", 1, 2) + struct.pack("!HH", 0xBEDE, 1) + b"\x10\x7f\0\0"
        datagrams.append(Datagram(("127.0.0.1", 1), ("127.0.0.1", 2), header + os.urandom(170)))
    (packets,) = srtp_packets(datagrams, 1, 2)
    assert (packets.ssrc, packets.payload_type) == (0xABCD, 0)
    assert packets.body_sizes == {170: 5}
    assert packets.sequence_steps == {1: 4}
    assert srtp_packets(datagrams, 2, 1) == []
