"""The TLS posture verdict: what an endpoint accepted, judged against the project's policy.

Theory of operation
-------------------
:mod:`bridge.ops.posture_probe` connects to an endpoint many times with ``openssl s_client``
(one protocol version, one suite family or one key-exchange group per connection) and
collects what was accepted into an :class:`Observation`. This module holds no I/O at all:
:func:`parse_s_client` turns one ``s_client`` transcript into a :class:`Handshake`, and
:func:`assess` turns an observation (plus the certificates it carries, parsed with
``cryptography``) into a :class:`Report`: the facts, and a list of :class:`Finding`.

A finding is either ``"fail"`` (the endpoint is below the policy of ``sip_gateway.tls``:
the command exits non-zero) or ``"note"`` (worth knowing, not a breach: no OCSP staple). The policy:

* protocols: TLS 1.2 and/or TLS 1.3 only (SSL 3, TLS 1.0, TLS 1.1 are failures);
* TLS 1.2 suites: ECDHE with AES-GCM or ChaCha20-Poly1305 only (CBC, RSA key exchange,
  DHE, anonymous, NULL and legacy ciphers are failures), so every session is forward
  secret; no compression; secure renegotiation (RFC 5746) when TLS 1.2 is spoken;
* groups: X25519, P-256, P-384, P-521; any other group accepted is a failure (the text says
  whether it is weak, like ffdhe2048, or strong but unlisted, like X448);
* certificate: RSA >= 2048 or ECDSA P-256+, SHA-256+ signatures, within its validity,
  chain verified against the given CA or the system store, name matching the server name;
* HTTPS: ``Strict-Transport-Security`` with ``max-age`` >= one year and
  ``includeSubDomains``.

Nothing here ever holds session secrets: the parser keeps only the named fields.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

__all__ = [
    "GROUPS",
    "HSTS_MIN_AGE",
    "POLICY_GROUPS",
    "PROTOCOLS",
    "SUITE_FAMILIES",
    "Finding",
    "Handshake",
    "Observation",
    "Report",
    "assess",
    "hostname_matches",
    "parse_s_client",
]

PROTOCOLS: tuple[str, ...] = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
"""Protocol versions probed, OpenSSL spelling, oldest first."""
_ALLOWED_PROTOCOLS = frozenset({"TLSv1.2", "TLSv1.3"})

SUITE_FAMILIES: Mapping[str, str] = {
    "ecdhe-aead": "kECDHE+AESGCM:kECDHE+CHACHA20:!aNULL",
    "ecdhe-other-aead": "kECDHE+AESCCM:kECDHE+ARIAGCM:!aNULL",
    "ecdhe-cbc": "kECDHE:!AESGCM:!CHACHA20:!AESCCM:!ARIAGCM:!eNULL:!aNULL",
    "rsa-kex": "kRSA:!eNULL",
    "dhe": "kDHE:!aNULL:!eNULL",
    "anonymous": "aNULL:!eNULL",
    "null": "eNULL",
    "legacy": "3DES:RC4:IDEA:SEED:EXPORT:DES",
}
"""TLS 1.2 suite families and the OpenSSL cipher string that offers exactly that family."""
_POLICY_FAMILIES = frozenset({"ecdhe-aead"})

POLICY_GROUPS: tuple[str, ...] = ("X25519", "P-256", "P-384", "P-521")
"""The key-exchange groups of the policy."""
GROUPS: tuple[str, ...] = (
    *POLICY_GROUPS,
    "X448",
    "ffdhe2048",
    "ffdhe3072",
    "ffdhe4096",
    "ffdhe6144",
    "ffdhe8192",
    "P-224",
    "P-192",
)
"""Every group probed (OpenSSL ``-groups`` names)."""
_WEAK_GROUPS = frozenset({"ffdhe2048", "P-224", "P-192"})

HSTS_MIN_AGE = 31536000
"""One year, in seconds: the least ``max-age`` the policy accepts."""
_MIN_RSA_BITS = 2048
_MIN_EC_BITS = 256
_WEAK_HASHES = frozenset({"md5", "sha1", "sha224"})

Severity = Literal["fail", "note"]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What one ``openssl s_client`` connection showed (no secrets are kept)."""

    accepted: bool
    """A suite was negotiated."""
    protocol: str | None = None
    """``TLSv1.2`` etc. when accepted."""
    cipher: str | None = None
    """Negotiated suite, OpenSSL name."""
    temp_key: str | None = None
    """The ephemeral key, as ``Server Temp Key`` shows it (``X25519, 253 bits``)."""
    secure_renegotiation: bool | None = None
    """RFC 5746 support as reported for this connection (meaningful below TLS 1.3)."""
    compression: str | None = None
    """``NONE`` or the compression method."""
    ocsp_stapled: bool | None = None
    """Whether an OCSP response was stapled (only when ``-status`` was sent)."""
    verify_code: int | None = None
    """OpenSSL's chain verification result; 0 is success."""
    verify_text: str | None = None
    """Its explanation (``unable to get local issuer certificate``)."""
    alpn: str | None = None
    """The ALPN protocol the server selected."""
    offer_impossible: bool = False
    """The local OpenSSL could not even offer what was asked (no such cipher or group)."""


_FIELDS = {
    "protocol": re.compile(r"^\s*Protocol\s*:\s*(\S+)", re.M),
    "cipher": re.compile(r"^\s*Cipher\s*:\s*(\S+)", re.M),
    "temp_key": re.compile(r"^Server Temp Key: (.+)$", re.M),
    "compression": re.compile(r"^Compression: (.+)$", re.M),
    "alpn": re.compile(r"^ALPN protocol: (\S+)", re.M),
}
_NEW = re.compile(r"^(?:New|Reused), (\S+), Cipher is (\S+)", re.M)
_VERIFY = re.compile(r"^\s*Verify return code: (\d+) \((.*)\)", re.M)
_CANNOT_OFFER = re.compile(
    r"no cipher match|no suitable groups|Error with command|Failed to set groups|"
    r"no ciphers available|no protocols available|unknown option|Error setting cipher",
    re.IGNORECASE,
)


def parse_s_client(transcript: str) -> Handshake:
    """Read one ``openssl s_client`` transcript (stdout and stderr together).

    Args:
        transcript: the text ``s_client`` printed (without ``-brief``).

    Returns:
        The handshake's facts; ``accepted`` is False when no suite was negotiated.
    """
    found = {
        name: (m.group(1).strip() if (m := rx.search(transcript)) else None)
        for name, rx in _FIELDS.items()
    }
    cipher, protocol = found["cipher"], found["protocol"]
    if (new := _NEW.search(transcript)) is not None:
        # TLS 1.3: s_client may print this line but not the session (no ticket yet)
        cipher = cipher or new.group(2)
        protocol = protocol or new.group(1)
    accepted = cipher not in (None, "0000", "(NONE)")
    verify = _VERIFY.search(transcript)
    renegotiation = None
    if "Secure Renegotiation IS supported" in transcript:
        renegotiation = True
    elif "Secure Renegotiation IS NOT supported" in transcript:
        renegotiation = False
    ocsp = None
    if "OCSP response: no response sent" in transcript:
        ocsp = False
    elif "OCSP Response Status:" in transcript:
        ocsp = True
    return Handshake(
        accepted=accepted,
        protocol=protocol if accepted else None,
        cipher=cipher if accepted else None,
        temp_key=found["temp_key"],
        secure_renegotiation=renegotiation if accepted else None,
        compression=found["compression"] if accepted else None,
        ocsp_stapled=ocsp if accepted else None,
        verify_code=int(verify.group(1)) if verify and accepted else None,
        verify_text=verify.group(2) if verify and accepted else None,
        alpn=found["alpn"],
        offer_impossible=not accepted and bool(_CANNOT_OFFER.search(transcript)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """Everything the probes saw of one endpoint.

    Tri-state maps: True accepted, False refused, None not testable with the local tools.
    """

    target: str
    """``host:port`` as given."""
    server_name: str | None
    """The name sent as SNI and matched against the certificate (None: an IP address)."""
    host: str
    """The host part of the target, for the name check."""
    protocols: Mapping[str, bool | None]
    """Per protocol version (``PROTOCOLS``)."""
    suites: Mapping[str, tuple[str, ...] | None]
    """Per TLS 1.2 family (``SUITE_FAMILIES``): the suites accepted (empty: refused)."""
    groups: Mapping[str, bool | None]
    """Per group (``GROUPS``): accepted in TLS 1.3 or TLS 1.2."""
    chain: Sequence[bytes] = ()
    """The certificates the server sent, DER, leaf first."""
    chain_verified: bool = False
    """OpenSSL verified the chain against the CA file or the system store."""
    verify_error: str | None = None
    """Why it did not."""
    ca_source: str = "system trust store"
    """What the chain was verified against."""
    compression: str | None = None
    """Compression reported on the best handshake."""
    secure_renegotiation: bool | None = None
    """RFC 5746 on a TLS 1.2 handshake (None: TLS 1.2 not spoken)."""
    ocsp_stapled: bool | None = None
    """Whether the server stapled an OCSP response."""
    https: bool = False
    """The endpoint speaks HTTPS (ALPN ``http/1.1`` or ``--service https``)."""
    hsts: str | None = None
    """The ``Strict-Transport-Security`` header of ``GET /`` (None: absent or not HTTPS)."""
    http_status: int | None = None
    """The status of ``GET /``."""
    tools: Mapping[str, str] = field(default_factory=dict)
    """Which tool probed what (``{"protocols": "openssl s_client 3.0.x", ...}``)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One verdict line."""

    severity: Severity
    code: str
    """Stable machine name (``protocol-below-tls12``, ``hsts-missing``...)."""
    text: str
    """What was seen, for a person."""


@dataclass(frozen=True, slots=True)
class Report:
    """The verdict on one endpoint."""

    facts: dict[str, object]
    """JSON-ready summary (protocols, suites, groups, certificate, HSTS...)."""
    findings: tuple[Finding, ...]

    @property
    def below_policy(self) -> bool:
        """True when any finding is a failure."""
        return any(f.severity == "fail" for f in self.findings)


def assess(obs: Observation, now: datetime) -> Report:
    """Judge an observation against the policy.

    Args:
        obs: what the probes saw.
        now: the current time (aware, UTC), for certificate validity.

    Returns:
        The facts and the findings.
    """
    findings: list[Finding] = []
    findings += _protocol_findings(obs)
    findings += _suite_findings(obs)
    findings += _group_findings(obs)
    cert_facts, cert_findings = _certificate(obs, now)
    findings += cert_findings
    findings += _session_findings(obs)
    findings += _hsts_findings(obs)
    tls12 = bool(obs.protocols.get("TLSv1.2"))
    forward_secret = not any(obs.suites.get(f) for f in ("rsa-kex",)) and not any(
        obs.protocols.get(p) for p in ("SSLv3", "TLSv1", "TLSv1.1")
    )
    facts: dict[str, object] = {
        "target": obs.target,
        "server_name": obs.server_name,
        "protocols": dict(obs.protocols),
        "tls12_suites": {k: (list(v) if v is not None else None) for k, v in obs.suites.items()},
        "forward_secrecy": forward_secret,
        "groups": dict(obs.groups),
        "certificate": cert_facts,
        "compression": obs.compression,
        "secure_renegotiation": obs.secure_renegotiation if tls12 else None,
        "ocsp_stapling": "offered" if obs.ocsp_stapled else "not offered",
        "https": obs.https,
        "hsts": obs.hsts,
        "tools": dict(obs.tools),
    }
    return Report(facts=facts, findings=tuple(findings))


def _protocol_findings(obs: Observation) -> list[Finding]:
    out = [
        Finding("fail", "protocol-below-tls12", f"{name} accepted")
        for name in PROTOCOLS
        if name not in _ALLOWED_PROTOCOLS and obs.protocols.get(name)
    ]
    if not any(obs.protocols.get(name) for name in _ALLOWED_PROTOCOLS):
        out.append(Finding("fail", "no-tls12-or-tls13", "neither TLS 1.2 nor TLS 1.3 accepted"))
    return out


def _suite_findings(obs: Observation) -> list[Finding]:
    out = []
    for family, accepted in obs.suites.items():
        if family not in _POLICY_FAMILIES and accepted:
            out.append(
                Finding(
                    "fail", f"suite-{family}", f"TLS 1.2 {family} suites: {', '.join(accepted)}"
                )
            )
    if obs.protocols.get("TLSv1.2") and not obs.suites.get("ecdhe-aead"):
        out.append(Finding("fail", "suite-no-ecdhe-aead", "TLS 1.2 without an ECDHE-AEAD suite"))
    return out


def _group_findings(obs: Observation) -> list[Finding]:
    out = []
    for group, accepted in obs.groups.items():
        if not accepted or group in POLICY_GROUPS:
            continue
        strength = "below 128-bit" if group in _WEAK_GROUPS else "strong, but"
        out.append(
            Finding(
                "fail",
                "group-outside-list",
                f"group {group} accepted ({strength} outside X25519/P-256/P-384/P-521)",
            )
        )
    if not any(obs.groups.get(g) for g in POLICY_GROUPS):
        out.append(Finding("fail", "group-none", "none of X25519, P-256, P-384, P-521 accepted"))
    return out


def _session_findings(obs: Observation) -> list[Finding]:
    out = []
    if obs.compression not in (None, "NONE"):
        out.append(Finding("fail", "compression", f"TLS compression {obs.compression} (CRIME)"))
    if obs.protocols.get("TLSv1.2") and obs.secure_renegotiation is False:
        out.append(Finding("fail", "no-secure-renegotiation", "RFC 5746 not supported"))
    if not obs.ocsp_stapled:
        out.append(Finding("note", "ocsp-not-stapled", "OCSP stapling: not offered"))
    return out


def _hsts_findings(obs: Observation) -> list[Finding]:
    if not obs.https:
        return []
    if obs.hsts is None:
        return [
            Finding(
                "fail",
                "hsts-missing",
                f"no Strict-Transport-Security on GET / (status {obs.http_status})",
            )
        ]
    directives = [d.strip().lower() for d in obs.hsts.split(";")]
    out = []
    ages = [d.split("=", 1)[1].strip('" ') for d in directives if d.startswith("max-age=")]
    if not ages or not ages[0].isdigit() or int(ages[0]) < HSTS_MIN_AGE:
        out.append(Finding("fail", "hsts-short", f"HSTS max-age below one year: {obs.hsts}"))
    if "includesubdomains" not in directives:
        out.append(
            Finding("fail", "hsts-no-subdomains", f"HSTS without includeSubDomains: {obs.hsts}")
        )
    return out


def _certificate(obs: Observation, now: datetime) -> tuple[dict[str, object], list[Finding]]:
    if not obs.chain:
        return {}, [Finding("fail", "certificate-none", "no certificate seen")]
    leaf = x509.load_der_x509_certificate(obs.chain[0])
    out: list[Finding] = []
    key_type, bits = _key(leaf.public_key())
    weak_key = (
        (key_type == "RSA" and bits < _MIN_RSA_BITS)
        or (key_type == "ECDSA" and bits < _MIN_EC_BITS)
        or key_type in ("DSA", "other")
    )
    if weak_key:
        out.append(Finding("fail", "certificate-weak-key", f"{key_type} {bits} bits"))
    hashes = []
    for der in obs.chain:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == cert.subject:
            continue  # a self-signed root's own signature is not checked by anyone
        algorithm = cert.signature_hash_algorithm
        name = algorithm.name if algorithm is not None else "none"
        hashes.append(name)
        if name in _WEAK_HASHES:
            out.append(
                Finding(
                    "fail",
                    "certificate-weak-signature",
                    f"{cert.subject.rfc4514_string()} signed with {name}",
                )
            )
    not_after, not_before = leaf.not_valid_after_utc, leaf.not_valid_before_utc
    days_left = (not_after - now).days
    if now > not_after:
        out.append(Finding("fail", "certificate-expired", f"expired {not_after:%Y-%m-%d}"))
    if now < not_before:
        out.append(
            Finding("fail", "certificate-not-yet-valid", f"valid from {not_before:%Y-%m-%d}")
        )
    if not obs.chain_verified:
        out.append(
            Finding(
                "fail",
                "chain-unverified",
                f"chain not verified against "
                f"{obs.ca_source}: {obs.verify_error or 'unknown error'}",
            )
        )
    name = obs.server_name or obs.host
    matches = hostname_matches(leaf, name)
    if not matches:
        out.append(Finding("fail", "hostname-mismatch", f"certificate does not name {name}"))
    facts: dict[str, object] = {
        "subject": leaf.subject.rfc4514_string(),
        "issuer": leaf.issuer.rfc4514_string(),
        "key": f"{key_type} {bits}",
        "signature": hashes[0] if hashes else "self-signed",
        "not_after": not_after.isoformat(),
        "days_left": days_left,
        "chain_length": len(obs.chain),
        "chain_verified": obs.chain_verified,
        "verified_against": obs.ca_source,
        "hostname": name,
        "hostname_match": matches,
    }
    return facts, out


def _key(key: object) -> tuple[str, int]:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return "other", 0


def hostname_matches(cert: x509.Certificate, name: str) -> bool:
    """Whether ``cert`` names ``name`` (DNS SANs with a left-most ``*`` wildcard, or IP SANs).

    The subject CN is not consulted (RFC 6125 and every current browser).
    """
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return address in sans.get_values_for_type(x509.IPAddress)
    wanted = name.lower().rstrip(".")
    for san in sans.get_values_for_type(x509.DNSName):
        pattern = san.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            head, rest = wanted.split(".", 1)
            if head and rest == pattern[2:]:
                return True
    return False
