"""sip_gateway.devcerts: strict validity (checked by the openssl CLI), idempotence, renewal."""

from __future__ import annotations

import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from sip_gateway.devcerts import (
    DEV_VALIDITY,
    RENEW_BEFORE,
    DevPki,
    ensure_dev_pki,
    load_issued,
    new_ca,
    new_leaf,
    write_certificate,
    write_private_key,
)
from sip_gateway.tls import TlsPolicyError, server_context

FILES = ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")


def openssl_verify(ca: Path, cert: Path, *args: str) -> str:
    proc = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(ca), *args, str(cert)],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return (proc.stdout + proc.stderr).decode(errors="replace").strip()


def snapshot(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in FILES}


@pytest.fixture
def dev(tmp_path: Path) -> DevPki:
    return ensure_dev_pki(tmp_path / "var" / "tls")


@pytest.mark.parametrize(
    "args",
    [
        ["-verify_ip", "127.0.0.1"],
        ["-verify_ip", "::1"],
        ["-verify_hostname", "localhost", "-purpose", "sslserver"],
        ["-purpose", "sslclient"],
    ],
)
def test_server_certificate_verifies_strictly(dev: DevPki, args: list[str]) -> None:
    out = openssl_verify(dev.ca_certificate, dev.server_certificate, *args)
    assert out == f"{dev.server_certificate}: OK"


def test_client_certificate_verifies_strictly_for_client_auth_only(dev: DevPki) -> None:
    cert = dev.client_certificate
    ca = dev.ca_certificate
    assert openssl_verify(ca, cert, "-purpose", "sslclient") == f"{cert}: OK"
    assert "unsuitable certificate purpose" in openssl_verify(ca, cert, "-purpose", "sslserver")


def test_ca_and_leaf_extensions(dev: DevPki) -> None:
    ca = x509.load_pem_x509_certificate(dev.ca_certificate.read_bytes())
    ext = ca.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    leaf = x509.load_pem_x509_certificate(dev.server_certificate.read_bytes())
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == "sha256"
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc >= DEV_VALIDITY
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_modes(dev: DevPki) -> None:
    assert stat.S_IMODE(dev.directory.stat().st_mode) == 0o700
    for key in (dev.ca_key, dev.server_key, dev.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(dev.server_certificate.stat().st_mode) == 0o644


def test_idempotent(dev: DevPki) -> None:
    before = snapshot(dev.directory)
    again = ensure_dev_pki(dev.directory)
    assert again == dev
    assert snapshot(dev.directory) == before


def test_near_expiry_regenerates_everything(dev: DevPki) -> None:
    before = snapshot(dev.directory)
    later = datetime.now(UTC) + DEV_VALIDITY - RENEW_BEFORE + timedelta(days=1)
    ensure_dev_pki(dev.directory, now=later)
    after = snapshot(dev.directory)
    assert all(after[name] != before[name] for name in FILES)
    leaf = x509.load_pem_x509_certificate(after["server.crt"])
    assert leaf.not_valid_after_utc > later + RENEW_BEFORE


@pytest.mark.parametrize("damage", ["delete-key", "corrupt-cert", "swap-key", "other-ca"])
def test_damaged_server_leaf_is_reissued_alone(dev: DevPki, damage: str) -> None:
    if damage == "delete-key":
        dev.server_key.unlink()
    elif damage == "corrupt-cert":
        dev.server_certificate.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    elif damage == "swap-key":
        dev.server_key.write_bytes(dev.client_key.read_bytes())
    else:
        now = datetime.now(UTC)
        other = new_leaf(new_ca("other", now=now), "localhost", now=now, dns_names=["localhost"])
        write_certificate(dev.server_certificate, other.certificate)
        write_private_key(dev.server_key, other.private_key)
    before = snapshot(dev.directory) if damage != "delete-key" else None
    ensure_dev_pki(dev.directory)
    out = openssl_verify(dev.ca_certificate, dev.server_certificate, "-verify_ip", "127.0.0.1")
    assert out.endswith(": OK")
    assert server_context(dev.server_config())  # certificate and key match again
    if before is not None:
        after = snapshot(dev.directory)
        assert after["ca.crt"] == before["ca.crt"] and after["client.crt"] == before["client.crt"]


def test_missing_ca_reissues_the_leaves(dev: DevPki) -> None:
    before = snapshot(dev.directory)
    dev.ca_key.unlink()
    ensure_dev_pki(dev.directory)
    after = snapshot(dev.directory)
    assert after["ca.crt"] != before["ca.crt"]
    assert after["server.crt"] != before["server.crt"]
    assert after["client.crt"] != before["client.crt"]
    for cert in (dev.server_certificate, dev.client_certificate):
        assert openssl_verify(dev.ca_certificate, cert).endswith(": OK")


def test_loose_key_mode_is_tightened(dev: DevPki) -> None:
    dev.server_key.chmod(0o644)
    ensure_dev_pki(dev.directory)
    assert stat.S_IMODE(dev.server_key.stat().st_mode) == 0o600


def test_unwritable_directory_is_a_policy_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TlsPolicyError, match="cannot create"):
        ensure_dev_pki(blocker / "tls")


def test_rsa_leaf_and_load_issued(dev: DevPki, tmp_path: Path) -> None:
    ca = load_issued(dev.ca_certificate, dev.ca_key)
    assert ca is not None
    assert "private_key" not in repr(ca)
    leaf = new_leaf(ca, "rsa", now=datetime.now(UTC), ip_addresses=["127.0.0.1"], key_type="rsa")
    assert isinstance(leaf.private_key, rsa.RSAPrivateKey)
    write_certificate(tmp_path / "rsa.crt", leaf.certificate)
    write_private_key(tmp_path / "rsa.key", leaf.private_key)
    out = openssl_verify(dev.ca_certificate, tmp_path / "rsa.crt", "-verify_ip", "127.0.0.1")
    assert out.endswith(": OK")
    assert load_issued(tmp_path / "rsa.crt", dev.server_key) is None  # not its key
