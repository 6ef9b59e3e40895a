"""Start-up check of a configured certificate chain against the project's certificate policy.

Theory of operation
-------------------
``ssl.SSLContext.load_cert_chain`` accepts an expired certificate, one that is not valid yet
and (below the system's security level) weak keys and signatures: it would start a listener
that every careful client refuses, or worse, that careless ones accept. Before a listener is
built, :func:`check_certificate_chain` reads the PEM chain and the private key with
``cryptography`` and refuses, with a :class:`sip_gateway.tls.TlsPolicyError` naming the file
and the problem (never key material), when:

* a certificate of the chain is expired or not yet valid;
* a key is weak: RSA below 2048 bits, ECDSA below P-256, DSA or an unknown type;
* a certificate (other than a self-signed root, whose own signature nobody checks) is signed
  with MD5, SHA-1 or SHA-224;
* the private key does not belong to the first certificate.

Pure apart from reading the two files; the clock is a parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from sip_gateway.tls import TlsPolicyError

__all__ = ["check_certificate_chain"]

_MIN_RSA_BITS = 2048
_MIN_EC_BITS = 256
_WEAK_HASHES = frozenset({"md5", "sha1", "sha224"})


def check_certificate_chain(
    chain: Path, key: Path, *, password: bytes | None = None, now: datetime | None = None
) -> None:
    """Refuse a chain or key that breaks the certificate policy.

    Args:
        chain: PEM file, the leaf first.
        key: PEM private key of the leaf.
        password: of an encrypted key; when the key is encrypted and this is None the key
            match is left to :func:`sip_gateway.tls.server_context`, which names that problem.
        now: the time to check validity at (default: now, UTC).

    Raises:
        TlsPolicyError: naming the file and what is wrong with it.
    """
    now = now or datetime.now(UTC)
    try:
        certificates = x509.load_pem_x509_certificates(chain.read_bytes())
    except OSError as exc:
        raise TlsPolicyError(
            f"certificate chain {chain}: {exc.strerror or exc}", path=chain
        ) from None
    except ValueError:
        raise TlsPolicyError(
            f"certificate chain {chain}: no PEM certificate found", path=chain
        ) from None
    for position, cert in enumerate(certificates):
        where = f"certificate chain {chain}, certificate {position + 1} ({_subject(cert)})"
        if now > cert.not_valid_after_utc:
            raise TlsPolicyError(
                f"{where} expired on {cert.not_valid_after_utc:%Y-%m-%d}", path=chain
            )
        if now < cert.not_valid_before_utc:
            raise TlsPolicyError(
                f"{where} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                path=chain,
            )
        weak = _weak_key(cert.public_key())
        if weak is not None:
            raise TlsPolicyError(f"{where} has a weak key: {weak}", path=chain)
        algorithm = cert.signature_hash_algorithm
        if cert.issuer != cert.subject and (algorithm is None or algorithm.name in _WEAK_HASHES):
            name = algorithm.name if algorithm is not None else "no hash"
            raise TlsPolicyError(
                f"{where} has a weak signature ({name}; SHA-256 or better is required)", path=chain
            )
    _check_key_match(certificates[0], chain, key, password)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "empty subject"


def _weak_key(public_key: object) -> str | None:
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        return f"RSA {bits} bits (2048 or more required)" if bits < _MIN_RSA_BITS else None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        bits = public_key.curve.key_size
        return (
            f"EC {public_key.curve.name} (P-256 or larger required)"
            if bits < _MIN_EC_BITS
            else None
        )
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return None
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA (RSA or ECDSA required)"
    return f"{type(public_key).__name__} (RSA or ECDSA required)"


def _check_key_match(
    leaf: x509.Certificate, chain: Path, key: Path, password: bytes | None
) -> None:
    try:
        data = key.read_bytes()
    except OSError as exc:
        raise TlsPolicyError(f"private key {key}: {exc.strerror or exc}", path=key) from None
    try:
        private = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        return  # encrypted and no password: tls.server_context says so
    except ValueError:
        raise TlsPolicyError(
            f"private key {key}: unreadable PEM or wrong password", path=key
        ) from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    if private.public_key().public_bytes(pem, spki) != leaf.public_key().public_bytes(pem, spki):
        raise TlsPolicyError(
            f"private key {key} does not match the first certificate of {chain}", path=key
        )
