"""A throwaway test PKI built with ``sip_gateway.devcerts``, and the ``tls_pki`` fixture.

Usage::

    def test_something(tls_pki):                      # session-scoped fixture (conftest.py)
        server = server_context(tls_pki.server_config(client_auth=ClientAuth.REQUIRED))
        client = client_context(tls_pki.client_config(cert="client"))
        subprocess.run(["openssl", "verify", "-CAfile", tls_pki.ca, tls_pki.crt("server")])

    pki = make_pki(tmp_path)                          # a private copy, when a test edits files

Every certificate is ECDSA P-256 unless said otherwise, SHA-256 signed, valid 365 days, with
SKI/AKI so that ``openssl verify -x509_strict`` accepts it. Names (``NAME.crt``, ``NAME.key``
mode 0600, and ``NAME-combined.pem`` = certificate then key, the format baresip wants):

============  ===============================================================================
``ca``        the test CA (the devcerts development CA); ``ca.key`` is there too
``server``    CN=localhost; DNS:localhost, IP:127.0.0.1, IP:::1; serverAuth + clientAuth
``client``    CN=pstn-bridge-dev-client; clientAuth only
``rsa-server`` like ``server`` but RSA 2048 (to prove RSA key exchange is refused)
``wrong-ip``  CN=otherhost.invalid; DNS:otherhost.invalid, IP:127.0.0.9; issued by ``ca``
``expired``   like ``server`` but expired 35 days ago; issued by ``ca``
``rogue-ca``  an unrelated CA (certificate and key)
``rogue``     same names as ``server`` (serverAuth + clientAuth) but issued by ``rogue-ca``
============  ===============================================================================
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sip_gateway.devcerts import (
    SERVER_DNS_NAMES,
    SERVER_IP_ADDRESSES,
    IssuedCertificate,
    KeyType,
    ensure_dev_pki,
    load_issued,
    new_ca,
    new_leaf,
    write_certificate,
    write_private_key,
)
from sip_gateway.tls import (
    ClientAuth,
    TlsClientConfig,
    TlsServerConfig,
    client_context,
    server_context,
)

__all__ = ["LEAVES", "Pki", "make_pki", "tls_pki"]

LEAVES = ("server", "client", "rsa-server", "wrong-ip", "expired", "rogue")
"""Leaf names; each has ``.crt``, ``.key`` and ``-combined.pem``."""


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of a test PKI, and configurations/contexts built with ``sip_gateway.tls``."""

    directory: Path
    """Absolute directory holding every file."""

    def crt(self, name: str) -> Path:
        """``NAME.crt``: one of ``ca``, ``rogue-ca`` or :data:`LEAVES`."""
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        """``NAME.key`` (PKCS#8 PEM, unencrypted, mode 0600)."""
        return self.directory / f"{name}.key"

    def combined(self, name: str) -> Path:
        """``NAME-combined.pem``: certificate followed by key (leaves only)."""
        return self.directory / f"{name}-combined.pem"

    @property
    def ca(self) -> Path:
        """The test CA certificate, trusted by every config this class builds."""
        return self.crt("ca")

    @property
    def rogue_ca(self) -> Path:
        """The unrelated CA that issued ``rogue``."""
        return self.crt("rogue-ca")

    def server_config(
        self, *, cert: str = "server", client_auth: ClientAuth = ClientAuth.NONE
    ) -> TlsServerConfig:
        """A listener presenting leaf ``cert``; client certificates must chain to ``ca``."""
        return TlsServerConfig(
            certificate_chain=self.crt(cert),
            private_key=self.key(cert),
            client_auth=client_auth,
            client_ca_file=None if client_auth is ClientAuth.NONE else self.ca,
        )

    def client_config(
        self,
        *,
        cert: str | None = None,
        ca: str = "ca",
        server_hostname: str = "127.0.0.1",
        maximum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    ) -> TlsClientConfig:
        """A connector trusting ``ca`` (or ``rogue-ca``), presenting leaf ``cert`` if given."""
        return TlsClientConfig(
            ca_file=self.crt(ca),
            server_hostname=server_hostname,
            certificate_chain=None if cert is None else self.crt(cert),
            private_key=None if cert is None else self.key(cert),
            maximum_version=maximum_version,
        )

    def server_context(
        self, *, cert: str = "server", client_auth: ClientAuth = ClientAuth.NONE
    ) -> ssl.SSLContext:
        """``sip_gateway.tls.server_context`` of :meth:`server_config`."""
        return server_context(self.server_config(cert=cert, client_auth=client_auth))

    def client_context(self, *, cert: str | None = None, ca: str = "ca") -> ssl.SSLContext:
        """``sip_gateway.tls.client_context`` of :meth:`client_config`.

        Pass ``server_hostname`` when wrapping (the IP or name dialled).
        """
        return client_context(self.client_config(cert=cert, ca=ca))


def make_pki(directory: Path) -> Pki:
    """Write a fresh test PKI into ``directory`` (created if needed); ~0.2 s.

    ``ca``, ``server`` and ``client`` come from :func:`sip_gateway.devcerts.ensure_dev_pki`, so
    tests also cover the files ``pstn-bridge serve`` generates.
    """
    directory = directory.resolve()
    dev = ensure_dev_pki(directory)
    _combine(directory, "server")
    _combine(directory, "client")
    now = datetime.now(UTC)
    ca = load_issued(dev.ca_certificate, dev.ca_key)
    assert ca is not None
    _write(directory, "rsa-server", _like_server(ca, now, key_type="rsa"))
    wrong = new_leaf(
        ca,
        "otherhost.invalid",
        now=now,
        dns_names=["otherhost.invalid"],
        ip_addresses=["127.0.0.9"],
    )
    _write(directory, "wrong-ip", wrong)
    _write(directory, "expired", _like_server(ca, now - timedelta(days=400)))
    rogue_ca = new_ca("rogue CA for tests", now=now)
    write_certificate(directory / "rogue-ca.crt", rogue_ca.certificate)
    write_private_key(directory / "rogue-ca.key", rogue_ca.private_key)
    _write(directory, "rogue", _like_server(rogue_ca, now))
    return Pki(directory)


def _like_server(
    issuer: IssuedCertificate, now: datetime, key_type: KeyType = "ec"
) -> IssuedCertificate:
    return new_leaf(
        issuer,
        "localhost",
        now=now,
        dns_names=SERVER_DNS_NAMES,
        ip_addresses=SERVER_IP_ADDRESSES,
        key_type=key_type,
    )


def _write(directory: Path, name: str, issued: IssuedCertificate) -> None:
    write_certificate(directory / f"{name}.crt", issued.certificate)
    write_private_key(directory / f"{name}.key", issued.private_key)
    _combine(directory, name)


def _combine(directory: Path, name: str) -> None:
    pem = (directory / f"{name}.crt").read_bytes() + (directory / f"{name}.key").read_bytes()
    target = directory / f"{name}-combined.pem"
    target.write_bytes(pem)
    target.chmod(0o600)


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """One read-only test PKI for the whole session (see the module docstring for names)."""
    yield make_pki(tmp_path_factory.mktemp("pki"))
