"""sip_gateway.tls: real handshakes on 127.0.0.1, against Python clients and ``openssl s_client``.

Each refusal by the policy server is paired with a control: the same ``s_client`` command
against a permissive server with the same certificate succeeds, so the refusal is the
policy's doing, not the client's.
"""

from __future__ import annotations

import queue
import re
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from sip_gateway.sip.errors import LocalProtocolError, SipError
from sip_gateway.tls import (
    TLS12_CIPHERS,
    ClientAuth,
    TlsClientConfig,
    TlsPolicyError,
    TlsServerConfig,
    TlsSessionInfo,
    _check_ciphers,
    client_context,
    server_context,
    session_info,
)
from tests.pki import Pki

TLS13_SUITES = {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}
TIMEOUT_S = 5.0

Outcome = TlsSessionInfo | Exception


class TlsServer:
    """A threaded TLS server on 127.0.0.1: handshake, record the outcome, echo one message."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._ctx = ctx
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._outcomes: queue.Queue[Outcome] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)
        self._listener.close()

    def outcome(self) -> Outcome:
        """The next connection's handshake result: its session facts or the exception."""
        return self._outcomes.get(timeout=TIMEOUT_S)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(TIMEOUT_S)
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        try:
            tls = self._ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self._outcomes.put(exc)
            return
        self._outcomes.put(session_info(tls))
        try:
            data = tls.recv(100)
            if data:
                tls.sendall(b"pong:" + data)
        except OSError:
            pass  # openssl s_client hangs up at stdin EOF; failures are the client's to report
        finally:
            tls.close()


def exchange(ctx: ssl.SSLContext, port: int, hostname: str = "127.0.0.1") -> TlsSessionInfo:
    """Connect, handshake, send "ping", expect "pong:ping"; return the client's session facts."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        info = session_info(tls)
        tls.sendall(b"ping")
        assert tls.recv(100) == b"pong:ping"
        return info


def s_client(port: int, *args: str) -> str:
    """Run ``openssl s_client`` (stdin at EOF, so it hangs up after the handshake)."""
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *args],
        input=b"",
        capture_output=True,
        timeout=10,
        check=False,
    )
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    return out if proc.returncode == 0 and "Protocol version:" in out else "FAILED\n" + out


def negotiated(out: str) -> tuple[str, str]:
    version = re.search(r"Protocol version: (\S+)", out)
    suite = re.search(r"Ciphersuite: (\S+)", out)
    assert version and suite, out
    return version.group(1), suite.group(1)


@contextmanager
def permissive_server(pki: Pki, cert: str) -> Iterator[TlsServer]:
    """A server that accepts what OpenSSL's DEFAULT list and TLS 1.0+ allow (the control)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(pki.crt(cert), pki.key(cert))
    with TlsServer(ctx) as server:
        yield server


# ---------------------------------------------------------------- Python client and server


def test_tls13_handshake_with_aead_suite(tls_pki: Pki) -> None:
    with TlsServer(tls_pki.server_context()) as server:
        client = exchange(tls_pki.client_context(), server.port)
        served = server.outcome()
    assert client.version == "TLSv1.3"
    assert client.cipher in TLS13_SUITES
    assert client.peer_certificate_verified
    assert client.peer_certificate_subject == "CN=localhost"
    assert client.client_certificate_presented is None  # not observable from the client side
    assert isinstance(served, TlsSessionInfo)
    assert (served.version, served.cipher) == (client.version, client.cipher)
    assert not served.peer_certificate_verified
    assert served.peer_certificate_subject is None
    assert served.client_certificate_presented is False


@pytest.mark.parametrize(
    ("cert", "prefix"), [("server", "ECDHE-ECDSA-"), ("rsa-server", "ECDHE-RSA-")]
)
def test_tls12_handshake_with_ecdhe_aead_suite(tls_pki: Pki, cert: str, prefix: str) -> None:
    cfg = tls_pki.client_config(maximum_version=ssl.TLSVersion.TLSv1_2)
    with TlsServer(tls_pki.server_context(cert=cert)) as server:
        client = exchange(client_context(cfg), server.port)
        served = server.outcome()
    assert client.version == "TLSv1.2"
    assert client.cipher in TLS12_CIPHERS
    assert client.cipher.startswith(prefix)
    assert isinstance(served, TlsSessionInfo)
    assert served.cipher == client.cipher


@pytest.mark.parametrize("hostname", ["127.0.0.1", "::1", "localhost"])
def test_client_accepts_each_name_of_the_certificate(tls_pki: Pki, hostname: str) -> None:
    with TlsServer(tls_pki.server_context()) as server:
        info = exchange(tls_pki.client_context(), server.port, hostname)
    assert info.peer_certificate_verified


@pytest.mark.parametrize(
    ("cert", "hostname", "message"),
    [
        ("rogue", "127.0.0.1", "unable to get local issuer certificate"),
        ("wrong-ip", "127.0.0.1", "IP address mismatch"),
        ("wrong-ip", "localhost", "Hostname mismatch"),
        ("server", "127.0.0.2", "IP address mismatch"),
        ("expired", "127.0.0.1", "certificate has expired"),
    ],
)
def test_client_refuses_unverifiable_server(
    tls_pki: Pki, cert: str, hostname: str, message: str
) -> None:
    with TlsServer(tls_pki.server_context(cert=cert)) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match=message):
            exchange(tls_pki.client_context(), server.port, hostname)
        assert isinstance(server.outcome(), ssl.SSLError)


def test_client_trusting_another_ca_refuses_our_server(tls_pki: Pki) -> None:
    with (
        TlsServer(tls_pki.server_context()) as server,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        exchange(tls_pki.client_context(ca="rogue-ca"), server.port)


def test_required_client_certificate_missing_tls13_fails_on_first_read(tls_pki: Pki) -> None:
    ctx = tls_pki.server_context(client_auth=ClientAuth.REQUIRED)
    with (
        TlsServer(ctx) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as raw,
        tls_pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        # TLS 1.3: the client's handshake completes before the server has judged its
        # (absent) certificate; the alert arrives with the first read. (Writing first
        # races the server's close: the alert can then be lost to a reset.)
        assert tls.version() == "TLSv1.3"
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
            tls.recv(100)
        served = server.outcome()
    assert isinstance(served, ssl.SSLError)
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(served)


def test_required_client_certificate_missing_tls12_fails_in_handshake(tls_pki: Pki) -> None:
    cfg = tls_pki.client_config(maximum_version=ssl.TLSVersion.TLSv1_2)
    with TlsServer(tls_pki.server_context(client_auth=ClientAuth.REQUIRED)) as server:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as raw,
            pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"),
        ):
            client_context(cfg).wrap_socket(raw, server_hostname="127.0.0.1")
        assert isinstance(server.outcome(), ssl.SSLError)


@pytest.mark.parametrize("client_auth", [ClientAuth.REQUIRED, ClientAuth.OPTIONAL])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_client_certificate_verified_and_reported(
    tls_pki: Pki, client_auth: ClientAuth, version: ssl.TLSVersion
) -> None:
    cfg = tls_pki.client_config(cert="client", maximum_version=version)
    with TlsServer(tls_pki.server_context(client_auth=client_auth)) as server:
        client = exchange(client_context(cfg), server.port)
        served = server.outcome()
    assert isinstance(served, TlsSessionInfo)
    assert served.client_certificate_presented is True
    assert served.peer_certificate_verified is True
    assert served.peer_certificate_subject == "CN=pstn-bridge-dev-client"
    assert served.version == client.version == version.name.replace("_", ".")


def test_optional_client_certificate_may_be_absent(tls_pki: Pki) -> None:
    with TlsServer(tls_pki.server_context(client_auth=ClientAuth.OPTIONAL)) as server:
        exchange(tls_pki.client_context(), server.port)
        served = server.outcome()
    assert isinstance(served, TlsSessionInfo)
    assert served.client_certificate_presented is False
    assert not served.peer_certificate_verified


@pytest.mark.parametrize("client_auth", [ClientAuth.REQUIRED, ClientAuth.OPTIONAL])
def test_client_certificate_from_another_ca_is_refused(
    tls_pki: Pki, client_auth: ClientAuth
) -> None:
    cfg = tls_pki.client_config(cert="rogue", maximum_version=ssl.TLSVersion.TLSv1_2)
    with TlsServer(tls_pki.server_context(client_auth=client_auth)) as server:
        with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
            exchange(client_context(cfg), server.port)
        served = server.outcome()
    assert isinstance(served, ssl.SSLCertVerificationError)


def test_session_info_of_memory_bio_ssl_objects(tls_pki: Pki) -> None:
    """asyncio hands out ssl.SSLObject; drive one pair through memory BIOs."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = tls_pki.server_context(client_auth=ClientAuth.REQUIRED).wrap_bio(
        server_in, server_out, server_side=True
    )
    client = tls_pki.client_context(cert="client").wrap_bio(
        client_in, client_out, server_hostname="localhost"
    )
    with pytest.raises(LocalProtocolError):
        session_info(client)
    for _ in range(10):  # TLS 1.3 with a client certificate needs 2 round trips
        done = [_step(client), _step(server)]
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done):
            break
    served, seen = session_info(server), session_info(client)
    assert served.client_certificate_presented and served.peer_certificate_verified
    assert served.peer_certificate_subject == "CN=pstn-bridge-dev-client"
    assert seen.peer_certificate_subject == "CN=localhost"
    assert seen.version == served.version == "TLSv1.3"


def _step(obj: ssl.SSLObject) -> bool:
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        return False
    return True


# ---------------------------------------------------------------- openssl s_client


REFUSED = [
    pytest.param("server", ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"], id="tls1.1"),
    pytest.param("server", ["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"], id="tls1.0"),
    pytest.param("server", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"], id="cbc-sha1"),
    pytest.param("server", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"], id="cbc-sha256"),
    pytest.param("rsa-server", ["-tls1_2", "-cipher", "AES128-SHA"], id="rsa-kx-cbc"),
    pytest.param("rsa-server", ["-tls1_2", "-cipher", "AES128-GCM-SHA256"], id="rsa-kx-gcm"),
    pytest.param("rsa-server", ["-tls1_2", "-cipher", "ECDHE-RSA-AES256-SHA"], id="rsa-cbc"),
]


@pytest.mark.parametrize(("cert", "args"), REFUSED)
def test_openssl_weak_offer_refused(tls_pki: Pki, cert: str, args: list[str]) -> None:
    with TlsServer(tls_pki.server_context(cert=cert)) as server:
        out = s_client(server.port, "-CAfile", str(tls_pki.ca), *args)
        served = server.outcome()
    assert out.startswith("FAILED"), out
    assert isinstance(served, ssl.SSLError), served
    with permissive_server(tls_pki, cert) as control:
        out = s_client(control.port, "-CAfile", str(tls_pki.ca), *args)
    assert not out.startswith("FAILED"), f"control failed, the test proves nothing:\n{out}"


@pytest.mark.parametrize(
    ("args", "version"),
    [(["-tls1_3"], "TLSv1.3"), (["-tls1_2"], "TLSv1.2")],
)
def test_openssl_strong_offer_accepted(tls_pki: Pki, args: list[str], version: str) -> None:
    with TlsServer(tls_pki.server_context()) as server:
        out = s_client(server.port, "-CAfile", str(tls_pki.ca), "-verify_return_error", *args)
        served = server.outcome()
    assert negotiated(out)[0] == version
    assert "Verification: OK" in out
    assert isinstance(served, TlsSessionInfo) and served.version == version
    assert served.cipher in TLS13_SUITES | set(TLS12_CIPHERS)


@pytest.mark.parametrize(
    ("args", "temp_key"),
    [
        (["-tls1_3"], "X25519"),
        (["-tls1_3", "-groups", "P-256"], "prime256v1"),
        (["-tls1_3", "-groups", "P-384"], "secp384r1"),
        (["-tls1_3", "-groups", "P-521"], "secp521r1"),
        (["-tls1_2"], "X25519"),
        # TLS 1.2 ties the groups to the P-256 certificate, so P-256 is always offered;
        # the server's preference order (X25519, P-256, ...) decides.
        (["-tls1_2", "-groups", "P-256:X25519"], "X25519"),
        (["-tls1_2", "-groups", "P-521:P-256"], "prime256v1"),
    ],
)
def test_openssl_key_exchange_groups(tls_pki: Pki, args: list[str], temp_key: str) -> None:
    with TlsServer(tls_pki.server_context()) as server:
        out = s_client(server.port, "-CAfile", str(tls_pki.ca), *args)
    assert re.search(rf"Server Temp Key: (ECDH, )?{temp_key}\b", out), out


# ---------------------------------------------------------------- context policy


@pytest.mark.parametrize("side", ["server", "client"])
def test_context_offers_only_policy_suites_and_options(tls_pki: Pki, side: str) -> None:
    ctx = tls_pki.server_context() if side == "server" else tls_pki.client_context()
    suites = ctx.get_ciphers()
    tls12 = [s["name"] for s in suites if s["protocol"] == "TLSv1.2"]
    assert sorted(tls12) == sorted(TLS12_CIPHERS)
    assert all(s["aead"] for s in suites)
    assert all(s["kea"] == "kx-ecdhe" for s in suites if s["protocol"] == "TLSv1.2")
    assert not [s for s in suites if re.search(r"CBC|-SHA$|^AES|^DHE|PSK", s["name"])]
    assert (ctx.minimum_version, ctx.maximum_version) == (
        ssl.TLSVersion.TLSv1_2,
        ssl.TLSVersion.TLSv1_3,
    )
    assert ctx.options & ssl.OP_NO_COMPRESSION and ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
    if side == "server":
        assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE and ctx.options & ssl.OP_NO_TICKET
        assert ctx.verify_mode == ssl.CERT_NONE
    else:
        assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


def test_client_auth_sets_verify_mode(tls_pki: Pki) -> None:
    assert tls_pki.server_context(client_auth=ClientAuth.OPTIONAL).verify_mode == ssl.CERT_OPTIONAL
    assert tls_pki.server_context(client_auth=ClientAuth.REQUIRED).verify_mode == ssl.CERT_REQUIRED


def test_cipher_guard_refuses_a_weak_context() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(TlsPolicyError, match="ECDHE-ECDSA-AES128-SHA"):
        _check_ciphers(ctx)


def test_tls13_only_is_allowed(tls_pki: Pki) -> None:
    cfg = replace(tls_pki.server_config(), minimum_version=ssl.TLSVersion.TLSv1_3)
    with TlsServer(server_context(cfg)) as server:
        out = s_client(server.port, "-CAfile", str(tls_pki.ca), "-tls1_2")
    assert out.startswith("FAILED")


def test_client_without_ca_file_uses_system_store() -> None:
    ctx = client_context(TlsClientConfig())
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


# ---------------------------------------------------------------- configuration errors


def test_missing_files_are_named(tls_pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    with pytest.raises(TlsPolicyError, match=r"nope\.crt") as err:
        server_context(replace(tls_pki.server_config(), certificate_chain=missing))
    assert err.value.path == missing
    assert isinstance(err.value, SipError) and err.value.status_code == 500
    with pytest.raises(TlsPolicyError, match=r"CA file .*nope\.crt"):
        client_context(TlsClientConfig(ca_file=missing))
    with pytest.raises(TlsPolicyError, match="private key"):
        server_context(replace(tls_pki.server_config(), private_key=missing))


def test_key_mismatch_names_files_without_key_material(tls_pki: Pki) -> None:
    cfg = replace(tls_pki.server_config(), private_key=tls_pki.key("client"))
    with pytest.raises(TlsPolicyError, match="does not match") as err:
        server_context(cfg)
    assert err.value.path == tls_pki.key("client")
    assert str(tls_pki.crt("server")) in str(err.value)
    key_body = tls_pki.key("client").read_text().splitlines()[1]
    assert key_body not in str(err.value)


def test_not_a_certificate(tls_pki: Pki) -> None:
    with pytest.raises(TlsPolicyError, match="no PEM certificate found"):
        client_context(TlsClientConfig(ca_file=tls_pki.key("client")))
    with pytest.raises(TlsPolicyError, match="unreadable PEM"):
        server_context(replace(tls_pki.server_config(), certificate_chain=tls_pki.key("server")))


def test_encrypted_key_needs_its_password(tls_pki: Pki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(tls_pki.key("server").read_bytes(), None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret-pass"),
        )
    )
    cfg = replace(tls_pki.server_config(), private_key=encrypted)
    with pytest.raises(TlsPolicyError, match="encrypted and no password"):
        server_context(cfg)  # never an interactive prompt
    with pytest.raises(TlsPolicyError, match="wrong password"):
        server_context(replace(cfg, private_key_password=b"wrong"))
    good = replace(cfg, private_key_password=b"s3cret-pass")
    assert server_context(good).get_ciphers()
    assert "s3cret-pass" not in repr(good)


def test_invalid_configurations(tls_pki: Pki) -> None:
    with pytest.raises(TlsPolicyError, match="needs client_ca_file"):
        TlsServerConfig(
            certificate_chain=tls_pki.crt("server"),
            private_key=tls_pki.key("server"),
            client_auth=ClientAuth.REQUIRED,
        )
    with pytest.raises(TlsPolicyError, match="outside the policy"):
        TlsClientConfig(minimum_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(TlsPolicyError, match="outside the policy"):
        TlsClientConfig(maximum_version=ssl.TLSVersion.MAXIMUM_SUPPORTED)
    with pytest.raises(TlsPolicyError, match="above"):
        TlsClientConfig(
            minimum_version=ssl.TLSVersion.TLSv1_3, maximum_version=ssl.TLSVersion.TLSv1_2
        )
    with pytest.raises(TlsPolicyError, match="together"):
        TlsClientConfig(certificate_chain=tls_pki.crt("client"))
