"""The one TLS context factory of the project (DESIGN.md section 5).

Theory of operation
-------------------
Every listener and connector of pstn-bridge (SIP over TLS, WSS, HTTPS, MQTT) gets its
:class:`ssl.SSLContext` from :func:`server_context` or :func:`client_context`, built from a
frozen configuration object (:class:`TlsServerConfig`, :class:`TlsClientConfig`). The policy
is fixed here, not in the configuration:

* TLS 1.2 and TLS 1.3 only (a configuration may narrow that to 1.3, never widen it);
* TLS 1.2 suites: ECDHE key exchange with AEAD ciphers only (AES-GCM, ChaCha20-Poly1305),
  ECDSA or RSA certificates; the factory re-reads ``get_ciphers()`` after setting them and
  refuses to return a context that still offers anything else. TLS 1.3 suites are all AEAD;
  Python 3.11 cannot change them and OpenSSL's defaults are kept;
* no compression, no renegotiation, server cipher preference, fresh ECDH keys, and no
  TLS 1.2 session tickets on servers (a process-wide ticket key would weaken forward secrecy);
* clients always verify the chain and the host name (an IP address given as
  ``server_hostname`` is matched against the IP SANs); there is no opt-out;
* servers ask for a client certificate only when configured to, and then verify it against
  the configured CA.

Key-exchange groups: Python 3.11's ``ssl`` can set only a single curve
(``set_ecdh_curve``, verified to restrict the context to that one group), so the factory leaves
OpenSSL 3's default list: X25519, P-256, X448, P-521, P-384 for both versions and, for TLS 1.3
only, the RFC 7919 FFDHE groups. Measured with ``openssl s_client -groups``: X25519 is
negotiated by default, P-256, P-384 and P-521 are accepted, and the server's order wins. The
policy's list (X25519, P-256, P-384, P-521) comes from OpenSSL itself:
``config/openssl-groups.cnf`` sets ``Groups`` in OpenSSL's ``system_default`` section, which
OpenSSL applies to every context it creates once ``OPENSSL_CONF`` names that file (the image
sets it; it applies to the whole process, clients included). ``pstn-bridge posture`` and
``tests/bridge/test_posture_scan.py`` measure both cases.

:func:`session_info` reads the negotiated facts of a live connection (version, suite, peer
certificate) for the call security record; it never looks at the configuration.

This module owns no sockets and no event loop; the asyncio adapters pass the contexts on.
Errors: :class:`TlsPolicyError` (a configuration problem, naming the file and never its
contents).
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from sip_gateway.sip.errors import LocalProtocolError, SipError

__all__ = [
    "TLS12_CIPHERS",
    "ClientAuth",
    "TlsClientConfig",
    "TlsPolicyError",
    "TlsServerConfig",
    "TlsSessionInfo",
    "client_context",
    "server_context",
    "session_info",
]

TLS12_CIPHERS: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
"""The TLS 1.2 suites offered, in server preference order (OpenSSL names)."""

_ALLOWED_VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
_TLS12_KEA = "kx-ecdhe"
_TLS12_AUTH = frozenset({"auth-ecdsa", "auth-rsa"})
_COMMON_OPTIONS = ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
_SERVER_OPTIONS = ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE | ssl.OP_NO_TICKET


class TlsPolicyError(SipError):
    """Raised when a TLS configuration cannot be turned into a policy-conforming context.

    Examples: a missing or unreadable certificate, key or CA file; a key that does not
    match its certificate; a version outside TLS 1.2-1.3. The message names the file and
    the problem, never key material or passwords.

    Attributes:
        path: the file at fault, when there is one.
        status_code: 500; a request that depended on this context fails locally.
    """

    status_code = 500

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class ClientAuth(enum.Enum):
    """Whether a server asks TLS clients for a certificate."""

    NONE = "none"
    """No certificate is requested (browsers, ops clients)."""
    OPTIONAL = "optional"
    """A certificate is requested; if one is sent it must verify against the CA."""
    REQUIRED = "required"
    """The handshake fails without a certificate that verifies against the CA."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsServerConfig:
    """How one listener presents itself and which clients it accepts."""

    certificate_chain: Path
    """PEM file: the server certificate first, then any intermediates (no root needed)."""
    private_key: Path
    """PEM file with the private key of ``certificate_chain`` (ECDSA or RSA >= 2048 bits)."""
    private_key_password: bytes | None = field(default=None, repr=False)
    """Password of an encrypted ``private_key``; None for an unencrypted key. Never shown."""
    client_auth: ClientAuth = ClientAuth.NONE
    """Whether client certificates are requested (mutual TLS for carriers)."""
    client_ca_file: Path | None = None
    """PEM file of the CAs that client certificates must chain to; required unless
    ``client_auth`` is NONE."""
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    """Lowest protocol version accepted: TLSv1_2 or TLSv1_3."""
    maximum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    """Highest protocol version accepted: TLSv1_2 or TLSv1_3."""
    alpn_protocols: tuple[str, ...] = ()
    """ALPN protocol names to accept, in preference order (for example ``("http/1.1",)``)."""
    x509_strict: bool = True
    """Verify client certificates with OpenSSL's RFC 5280 strict checks."""

    def __post_init__(self) -> None:
        _check_versions(self.minimum_version, self.maximum_version)
        if self.client_auth is not ClientAuth.NONE and self.client_ca_file is None:
            raise TlsPolicyError(
                f"client_auth={self.client_auth.value} needs client_ca_file to verify against"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsClientConfig:
    """How one connector verifies its peer and, optionally, identifies itself."""

    ca_file: Path | None = None
    """PEM file of the certificates trusted to anchor the server's chain; None uses the system
    trust store. A trunk should name its carrier's CA; an intermediate or the peer's own
    certificate also works (partial chains are accepted, as Python 3.13 does by default)."""
    server_hostname: str | None = None
    """The DNS name or IP address the server certificate must carry; connectors pass it as
    ``server_hostname=``. None means the host that was dialled. Not used by the context."""
    certificate_chain: Path | None = None
    """PEM file with the client certificate (and intermediates) for mutual TLS, or None."""
    private_key: Path | None = None
    """PEM file with the private key of ``certificate_chain``; set both or neither."""
    private_key_password: bytes | None = field(default=None, repr=False)
    """Password of an encrypted ``private_key``; None for an unencrypted key. Never shown."""
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    """Lowest protocol version offered: TLSv1_2 or TLSv1_3."""
    maximum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    """Highest protocol version offered: TLSv1_2 or TLSv1_3."""
    alpn_protocols: tuple[str, ...] = ()
    """ALPN protocol names to offer, in preference order."""
    x509_strict: bool = True
    """Verify the server chain with OpenSSL's RFC 5280 strict checks. Switch off only for a
    peer whose CA issues certificates that break RFC 5280 (for example, no key identifiers)."""

    def __post_init__(self) -> None:
        _check_versions(self.minimum_version, self.maximum_version)
        if (self.certificate_chain is None) != (self.private_key is None):
            raise TlsPolicyError("client certificate_chain and private_key must be set together")


def server_context(cfg: TlsServerConfig) -> ssl.SSLContext:
    """Build the context of a TLS listener.

    Args:
        cfg: the listener's configuration.

    Returns:
        A server context that follows the policy of this module.

    Raises:
        TlsPolicyError: a file is missing or unreadable, the key does not match the
            certificate, or the local OpenSSL cannot meet the cipher policy.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_policy(ctx, cfg.minimum_version, cfg.maximum_version, cfg.x509_strict)
    ctx.options |= _SERVER_OPTIONS
    _load_chain(ctx, cfg.certificate_chain, cfg.private_key, cfg.private_key_password)
    if cfg.client_auth is not ClientAuth.NONE:
        assert cfg.client_ca_file is not None  # checked in TlsServerConfig.__post_init__
        _load_ca(ctx, cfg.client_ca_file)
        required = cfg.client_auth is ClientAuth.REQUIRED
        ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    if cfg.alpn_protocols:
        ctx.set_alpn_protocols(list(cfg.alpn_protocols))
    return ctx


def client_context(cfg: TlsClientConfig) -> ssl.SSLContext:
    """Build the context of a TLS connector; it verifies the chain and the host name.

    Args:
        cfg: the connector's configuration.

    Returns:
        A client context that follows the policy of this module.

    Raises:
        TlsPolicyError: a file is missing or unreadable, the key does not match the
            certificate, or the local OpenSSL cannot meet the cipher policy.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_policy(ctx, cfg.minimum_version, cfg.maximum_version, cfg.x509_strict)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cfg.ca_file is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load_ca(ctx, cfg.ca_file)
    if cfg.certificate_chain is not None and cfg.private_key is not None:
        _load_chain(ctx, cfg.certificate_chain, cfg.private_key, cfg.private_key_password)
    if cfg.alpn_protocols:
        ctx.set_alpn_protocols(list(cfg.alpn_protocols))
    return ctx


def _check_versions(minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> None:
    for version in (minimum, maximum):
        if version not in _ALLOWED_VERSIONS:
            raise TlsPolicyError(f"TLS version {version.name} is outside the policy (TLS 1.2-1.3)")
    if minimum > maximum:
        raise TlsPolicyError(f"minimum_version {minimum.name} is above {maximum.name}")


def _apply_policy(
    ctx: ssl.SSLContext, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion, strict: bool
) -> None:
    ctx.minimum_version = minimum
    ctx.maximum_version = maximum
    ctx.options |= _COMMON_OPTIONS
    ctx.set_ciphers(":".join(TLS12_CIPHERS))
    _check_ciphers(ctx)
    flags = ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_TRUSTED_FIRST
    if strict:
        flags |= ssl.VERIFY_X509_STRICT
    ctx.verify_flags |= flags


def _check_ciphers(ctx: ssl.SSLContext) -> None:
    """Refuse a context whose effective suites are not all ECDHE/AEAD (TLS 1.2) or AEAD."""
    for suite in ctx.get_ciphers():
        if not suite["aead"] or (suite["protocol"] == "TLSv1.2" and not _tls12_ok(suite)):
            raise TlsPolicyError(f"OpenSSL still offers {suite['name']}; refusing the context")


def _tls12_ok(suite: Mapping[str, object]) -> bool:
    return suite["kea"] == _TLS12_KEA and suite["auth"] in _TLS12_AUTH


def _load_chain(ctx: ssl.SSLContext, chain: Path, key: Path, password: bytes | None) -> None:
    _check_readable(chain, "certificate chain")
    _check_readable(key, "private key")
    try:
        ctx.load_cert_chain(chain, key, password=_no_password if password is None else password)
    except _EncryptedKeyError:
        raise TlsPolicyError(
            f"private key {key} is encrypted and no password is configured", path=key
        ) from None
    except ssl.SSLError as exc:
        raise TlsPolicyError(
            f"cannot load certificate chain {chain} with private key {key}: {_reason(exc)}",
            path=key if exc.reason == "KEY_VALUES_MISMATCH" else chain,
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca_file: Path) -> None:
    _check_readable(ca_file, "CA file")
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise TlsPolicyError(
            f"cannot load CA file {ca_file}: {_reason(exc)}", path=ca_file
        ) from None


def _check_readable(path: Path, what: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise TlsPolicyError(f"{what} {path}: {exc.strerror or exc}", path=path) from None


class _EncryptedKeyError(Exception):
    """Raised by the password callback when a key turns out to be encrypted."""


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a daemon.
    raise _EncryptedKeyError


def _reason(exc: ssl.SSLError) -> str:
    reasons = {
        "KEY_VALUES_MISMATCH": "the private key does not match the certificate",
        "NO_CERTIFICATE_OR_CRL_FOUND": "no PEM certificate found",
        "EE_KEY_TOO_SMALL": "the certificate key is too small for the policy",
        "CA_MD_TOO_WEAK": "the certificate signature algorithm is too weak",
    }
    if exc.reason in reasons:
        return reasons[exc.reason]
    # "PEM lib" with no reason: OpenSSL could not parse the PEM (or the password is wrong).
    return f"unreadable PEM or wrong password ({exc.library or 'SSL'}: {exc.reason or 'PEM'})"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSessionInfo:
    """The negotiated facts of one live TLS connection, for the call security record."""

    version: str
    """Protocol version as OpenSSL names it: ``"TLSv1.2"`` or ``"TLSv1.3"``."""
    cipher: str
    """Negotiated suite, OpenSSL name (``"TLS_AES_256_GCM_SHA384"``,
    ``"ECDHE-ECDSA-AES128-GCM-SHA256"``)."""
    peer_certificate_verified: bool
    """True when the peer presented a certificate, its chain was verified during the handshake
    and, on the client side, its name was checked against ``server_hostname``."""
    peer_certificate_subject: str | None
    """RFC 4514 subject of the verified peer certificate (``"CN=gw.example.net"``); None when
    the peer presented none or it was not verified."""
    client_certificate_presented: bool | None
    """Server side: whether the client presented a (verified) certificate, i.e. mutual TLS.
    Client side: None, because Python's ``ssl`` cannot tell whether ours was sent."""


def session_info(connection: ssl.SSLObject | ssl.SSLSocket) -> TlsSessionInfo:
    """Summarize a live TLS connection from its own state, never from configuration.

    Args:
        connection: an ``SSLSocket``, or the ``SSLObject`` of an asyncio transport
            (``transport.get_extra_info("ssl_object")``), after the handshake.

    Returns:
        The negotiated version, suite and peer certificate facts.

    Raises:
        LocalProtocolError: the handshake has not completed.
    """
    version = connection.version()
    cipher = connection.cipher()
    if version is None or cipher is None:
        raise LocalProtocolError("TLS handshake not complete: no session to describe")
    der = connection.getpeercert(binary_form=True)
    decoded = connection.getpeercert()  # {} unless the context verified the peer
    verified = bool(decoded) and (connection.server_side or connection.context.check_hostname)
    subject = None
    if der is not None and verified:
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return TlsSessionInfo(
        version=version,
        cipher=cipher[0],
        peer_certificate_verified=verified,
        peer_certificate_subject=subject,
        client_certificate_presented=(der is not None) if connection.server_side else None,
    )
