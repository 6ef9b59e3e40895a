"""The probes of ``pstn-bridge posture``: many small ``openssl s_client`` handshakes.

Theory of operation
-------------------
Python's ``ssl`` cannot offer what the audit must try (TLS 1.0/1.1 and CBC or RSA-kex suites
are refused by the system's OpenSSL security level, and a context can name only one group),
and every context the project builds comes from ``sip_gateway.tls``, which refuses all of
those on purpose. So every probe is an ``openssl s_client`` subprocess run with
``OPENSSL_CONF`` pointed at an empty file and ``@SECLEVEL=0`` in its cipher string: the local
configuration (including a ``Groups`` line meant for the bridge itself) cannot narrow what
the probe offers. One connection per question:

* each protocol version (``-ssl3``, ``-tls1``, ``-tls1_1``, ``-tls1_2``, ``-tls1_3``; a
  version the local OpenSSL was built without is reported as not testable);
* each TLS 1.2 suite family of :data:`bridge.ops.posture.SUITE_FAMILIES`;
* each group, with TLS 1.3 and again with TLS 1.2 ECDHE (where a server with an ECDSA
  certificate also needs its certificate's curve offered: the probe adds it and counts the
  group only when the ``Server Temp Key`` shows it);
* one full handshake with ``-status -showcerts -alpn http/1.1`` for the chain, its
  verification (``-CAfile`` or the system store), OCSP stapling, compression and ALPN;
* for HTTPS, ``GET /`` over one more connection to read ``Strict-Transport-Security``.

The transcripts are parsed by :func:`bridge.ops.posture.parse_s_client` and dropped; they
contain session keys and are never logged or returned.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from bridge.ops.posture import (
    GROUPS,
    PROTOCOLS,
    SUITE_FAMILIES,
    Handshake,
    Observation,
    parse_s_client,
)

__all__ = ["PostureProbeError", "ProbeConfig", "observe"]

Service = Literal["auto", "https", "tls"]

_VERSION_FLAGS = {
    "SSLv3": "-ssl3",
    "TLSv1": "-tls1",
    "TLSv1.1": "-tls1_1",
    "TLSv1.2": "-tls1_2",
    "TLSv1.3": "-tls1_3",
}
_ALL = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
_TEMP_KEY = {
    "X25519": "X25519",
    "X448": "X448",
    "P-256": "prime256v1",
    "P-384": "secp384r1",
    "P-521": "secp521r1",
    "P-224": "secp224r1",
    "P-192": "prime192v1",
}
_CURVE_GROUP = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class PostureProbeError(Exception):
    """The endpoint could not be probed at all (no ``openssl``, nothing listening)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeConfig:
    """Where and how to probe."""

    host: str
    port: int
    server_name: str | None = None
    """SNI and the name to match; None: the host when it is a DNS name, none for an IP."""
    ca_file: Path | None = None
    """Verify the chain against this PEM file; None: the system trust store."""
    service: Service = "auto"
    """``https`` reads HSTS; ``auto`` does when the server selects ALPN ``http/1.1``."""
    timeout: float = 10.0
    """Seconds per probe connection."""
    openssl: str = "openssl"


def observe(cfg: ProbeConfig) -> Observation:
    """Probe one endpoint.

    Raises:
        PostureProbeError: ``openssl`` is missing, or no handshake at all succeeded.
    """
    runner = _Runner(cfg)
    base = runner.handshake(
        ["-status", "-showcerts", "-alpn", "http/1.1", *runner.ca_args()], keep=True
    )
    if not base.accepted:
        raise PostureProbeError(f"no TLS handshake with {cfg.host}:{cfg.port}")
    chain = [der for der in runner.certificates()]
    protocols: dict[str, bool | None] = {}
    tls12: Handshake | None = None
    for name in PROTOCOLS:
        shake = runner.handshake([_VERSION_FLAGS[name], "-cipher", _ALL])
        protocols[name] = None if shake.offer_impossible else shake.accepted
        if name == "TLSv1.2" and shake.accepted:
            tls12 = shake
    suites: dict[str, tuple[str, ...] | None] = {}
    for family, cipher_string in SUITE_FAMILIES.items():
        suites[family] = runner.family(cipher_string)
    cert_group = _cert_group(chain[0]) if chain else None
    groups = {g: runner.group(g, cert_group) for g in GROUPS}
    https = cfg.service == "https" or (cfg.service == "auto" and base.alpn == "http/1.1")
    status, hsts = runner.hsts() if https else (None, None)
    return Observation(
        target=f"{cfg.host}:{cfg.port}",
        server_name=runner.server_name,
        host=cfg.host,
        protocols=protocols,
        suites=suites,
        groups=groups,
        chain=chain,
        chain_verified=base.verify_code == 0,
        verify_error=None if base.verify_code == 0 else base.verify_text,
        ca_source=str(cfg.ca_file) if cfg.ca_file else "the system trust store",
        compression=base.compression,
        secure_renegotiation=tls12.secure_renegotiation if tls12 else None,
        ocsp_stapled=base.ocsp_stapled,
        https=https,
        hsts=hsts,
        http_status=status,
        tools={
            "handshakes": f"{runner.version} s_client (OPENSSL_CONF empty, @SECLEVEL=0)",
            "certificate analysis": "python cryptography",
            "not testable with the local OpenSSL": ", ".join(_untestable(protocols, suites, groups))
            or "nothing",
        },
    )


def _untestable(*tables: dict[str, Any]) -> list[str]:
    return [name for table in tables for name, value in table.items() if value is None]


def _cert_group(der: bytes) -> str | None:
    key = x509.load_der_x509_certificate(der).public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVE_GROUP.get(key.curve.name)
    return None


class _Runner:
    def __init__(self, cfg: ProbeConfig) -> None:
        self.cfg = cfg
        self.server_name = cfg.server_name or (None if _is_ip(cfg.host) else cfg.host)
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSSL_")}
        self._env["OPENSSL_CONF"] = os.devnull
        self._pems: list[bytes] = []
        try:
            done = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
                [cfg.openssl, "version"], capture_output=True, timeout=cfg.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostureProbeError(f"cannot run {cfg.openssl}: {exc}") from None
        self.version = done.stdout.decode(errors="replace").strip()

    def ca_args(self) -> list[str]:
        return ["-CAfile", str(self.cfg.ca_file)] if self.cfg.ca_file else []

    def certificates(self) -> list[bytes]:
        return [
            x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER) for pem in self._pems
        ]

    def _run(self, args: Sequence[str], stdin: bytes = b"") -> bytes:
        sni = ["-servername", self.server_name] if self.server_name else ["-noservername"]
        command = [
            self.cfg.openssl, "s_client", "-connect", _join(self.cfg.host, self.cfg.port),
            *sni, *args,
        ]  # fmt: skip
        try:
            done = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
                command,
                input=stdin,
                capture_output=True,
                timeout=self.cfg.timeout,
                env=self._env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return b""
        return done.stdout + b"\n" + done.stderr

    def handshake(self, args: Sequence[str], *, keep: bool = False) -> Handshake:
        out = self._run(args)
        if keep:
            self._pems = _PEM.findall(out)
        return parse_s_client(out.decode(errors="replace"))

    def family(self, cipher_string: str) -> tuple[str, ...] | None:
        """Every suite of a family the server accepts (it picks one; drop it and ask again)."""
        accepted: list[str] = []
        excluded = ""
        for _ in range(32):  # bounded: no family has more suites than this
            shake = self.handshake(["-tls1_2", "-cipher", f"{cipher_string}{excluded}:@SECLEVEL=0"])
            if shake.offer_impossible:
                return tuple(accepted) if accepted else None
            if not shake.accepted or shake.cipher is None or shake.cipher in accepted:
                break
            accepted.append(shake.cipher)
            excluded += f":!{shake.cipher}"
        return tuple(accepted)

    def group(self, group: str, cert_group: str | None) -> bool | None:
        tls13 = self.handshake(["-tls1_3", "-groups", group])
        if tls13.accepted:
            return True
        if group.startswith("ffdhe"):
            return None if tls13.offer_impossible else False
        offers = [group] if cert_group in (None, group) else [group, f"{group}:{cert_group}"]
        impossible = tls13.offer_impossible
        for offer in offers:
            shake = self.handshake(["-tls1_2", "-cipher", "kECDHE:@SECLEVEL=0", "-groups", offer])
            impossible = impossible and shake.offer_impossible
            if shake.accepted and _TEMP_KEY[group] in (shake.temp_key or ""):
                return True
        return None if impossible else False

    def hsts(self) -> tuple[int | None, str | None]:
        host = self.server_name or _join(self.cfg.host, self.cfg.port).rsplit(":", 1)[0]
        request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        out = self._run(["-quiet", "-alpn", "http/1.1", *self.ca_args()], stdin=request)
        return _http_header(out, "strict-transport-security")


def _http_header(response: bytes, wanted: str) -> tuple[int | None, str | None]:
    start = response.find(b"HTTP/1.")
    if start < 0:
        return None, None
    head = response[start:].split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == wanted:
            return status, value.strip()
    return status, None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
