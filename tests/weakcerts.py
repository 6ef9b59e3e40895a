"""Certificates made to order for policy tests: weak keys, weak signatures, odd validity.

``make_cert`` issues one certificate (self-signed unless an issuer is given) with exactly the
flaw a test needs; ``write_pair`` stores it and its key as PEM files (key mode 0600). Keys are
throwaway test keys, generated per call.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sip_gateway.devcerts import PrivateKey

__all__ = ["Issued", "make_cert", "new_key", "write_pair", "write_sha1_pair"]


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey


def new_key(kind: str = "ec256") -> PrivateKey:
    """``ec256``, ``ec384``, ``ec224``, ``rsa2048``, ``rsa1024``."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    curves = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1(), "ec224": ec.SECP224R1()}
    return ec.generate_private_key(curves[kind])


def make_cert(
    *,
    key: PrivateKey | None = None,
    issuer: Issued | None = None,
    name: str = "localhost",
    sans: tuple[str, ...] = ("localhost", "127.0.0.1"),
    digest: hashes.HashAlgorithm | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    now = datetime.now(UTC)
    key = key or new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=90))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signer, digest or hashes.SHA256())
    return Issued(cert, key)


def write_pair(directory: Path, stem: str, issued: Issued, *chain: Issued) -> tuple[Path, Path]:
    """Write ``stem.crt`` (the certificate, then ``chain``) and ``stem.key``."""
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(
        b"".join(i.cert.public_bytes(serialization.Encoding.PEM) for i in (issued, *chain))
    )
    key.touch(mode=0o600)
    key.write_bytes(
        issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, key


def write_sha1_pair(directory: Path, stem: str, ca: Issued) -> tuple[Path, Path]:
    """A leaf signed by ``ca`` with SHA-1 (``cryptography`` refuses to make one: openssl does)."""
    ca_crt, ca_key = write_pair(directory, f"{stem}-ca", ca)
    crt, key = write_pair(directory, stem, make_cert())  # its key; the certificate is replaced
    csr = directory / f"{stem}.csr"
    env = os.environ | {"OPENSSL_CONF": os.devnull}
    for command in (
        ["req", "-new", "-key", str(key), "-subj", "/CN=localhost", "-out", str(csr)],
        [
            *("x509", "-req", "-in", str(csr), "-out", str(crt), "-sha1", "-days", "30"),
            *("-CA", str(ca_crt), "-CAkey", str(ca_key), "-set_serial", "7"),
        ],
    ):
        subprocess.run(["openssl", *command], check=True, capture_output=True, timeout=30, env=env)
    return crt, key
