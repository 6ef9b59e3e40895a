"""sip_gateway.certcheck: each flaw of a configured chain is refused at start-up, by name.

Every bad chain is generated here (``tests/weakcerts.py``) and paired with a control: the
same construction without the flaw passes. The last test starts ``pstn-bridge serve`` with
an expired certificate: it exits 1 naming the file and the problem, before any listener.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from sip_gateway.certcheck import check_certificate_chain
from sip_gateway.tls import TlsPolicyError
from tests.weakcerts import make_cert, new_key, write_pair, write_sha1_pair

NOW = datetime.now(UTC)


@pytest.mark.parametrize("kind", ["ec256", "ec384", "rsa2048"])
def test_good_chains_pass(tmp_path: Path, kind: str) -> None:
    ca = make_cert(key=new_key("ec384"), name="test CA", sans=())
    leaf = make_cert(key=new_key(kind), issuer=ca)
    crt, key = write_pair(tmp_path, "leaf", leaf, ca)
    check_certificate_chain(crt, key, now=NOW)


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: make_cert(not_after=NOW - timedelta(days=2), not_before=NOW - timedelta(days=9)),
         "certificate 1 (CN=localhost) expired on"),
        (lambda: make_cert(not_before=NOW + timedelta(days=3)), "is not valid before"),
        (lambda: make_cert(key=new_key("rsa1024")), "weak key: RSA 1024 bits"),
        (lambda: make_cert(key=new_key("ec224")), "weak key: EC secp224r1"),
        (lambda: make_cert(issuer=make_cert(name="CA", sans=()), digest=hashes.SHA224()),
         "weak signature (sha224"),
    ],
    ids=["expired", "not-yet-valid", "rsa-1024", "ec-p224", "sha224-signature"],
)  # fmt: skip
def test_flawed_leaf_is_refused_naming_file_and_problem(
    tmp_path: Path, build: object, problem: str
) -> None:
    crt, key = write_pair(tmp_path, "leaf", build())  # type: ignore[operator]
    with pytest.raises(TlsPolicyError) as caught:
        check_certificate_chain(crt, key, now=NOW)
    assert str(crt) in str(caught.value) and problem in str(caught.value)
    assert caught.value.path == crt
    assert "PRIVATE KEY" not in str(caught.value)


def test_sha1_signature_is_refused(tmp_path: Path) -> None:
    crt, key = write_sha1_pair(tmp_path, "leaf", make_cert(key=new_key("rsa2048"), name="CA"))
    with pytest.raises(TlsPolicyError, match=r"weak signature \(sha1;"):
        check_certificate_chain(crt, key, now=datetime.now(UTC) + timedelta(minutes=1))


def test_expired_intermediate_is_refused(tmp_path: Path) -> None:
    old = make_cert(name="old CA", sans=(), not_after=NOW - timedelta(days=1),
                    not_before=NOW - timedelta(days=30))  # fmt: skip
    crt, key = write_pair(tmp_path, "leaf", make_cert(issuer=old), old)
    with pytest.raises(TlsPolicyError, match=r"certificate 2 \(CN=old CA\) expired"):
        check_certificate_chain(crt, key, now=NOW)


def test_self_signed_root_signature_is_not_judged(tmp_path: Path) -> None:
    """A root's self-signature is never checked by a client; its key still is."""
    crt, key = write_pair(tmp_path, "root", make_cert(digest=hashes.SHA224()))
    check_certificate_chain(crt, key, now=NOW)


def test_key_mismatch_names_the_key_file(tmp_path: Path) -> None:
    crt, _ = write_pair(tmp_path, "leaf", make_cert())
    _, other_key = write_pair(tmp_path, "other", make_cert())
    with pytest.raises(TlsPolicyError, match="does not match the first certificate") as caught:
        check_certificate_chain(crt, other_key, now=NOW)
    assert caught.value.path == other_key and str(crt) in str(caught.value)


def test_not_pem_and_missing_files(tmp_path: Path) -> None:
    _, key = write_pair(tmp_path, "leaf", make_cert())
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(TlsPolicyError, match="no PEM certificate found"):
        check_certificate_chain(junk, key, now=NOW)
    with pytest.raises(TlsPolicyError, match=r"absent\.crt"):
        check_certificate_chain(tmp_path / "absent.crt", key, now=NOW)


def test_serve_refuses_to_start_with_an_expired_certificate(tmp_path: Path) -> None:
    expired = make_cert(not_after=NOW - timedelta(days=1), not_before=NOW - timedelta(days=9))
    crt, key = write_pair(tmp_path, "bridge", expired)
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[node]\nvar_dir = "{tmp_path / "var"}"\n'
        f'[tls]\ncert_file = "{crt}"\nkey_file = "{key}"\n'
        "[sip]\nlisten_port = 1\n[http]\nlisten_port = 1\n"  # never reached
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge.ops.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"certificate chain {crt}, certificate 1 (CN=localhost) expired on" in done.stderr
    assert "listening" not in done.stdout + done.stderr
