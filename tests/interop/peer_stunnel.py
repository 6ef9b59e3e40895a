"""stunnel 5 as the TLS layer of Debian's TLS-less SIPp (PEERS.md sections 5.1 and 5.2).

Client mode (SIPp UAC -> stunnel -> TLS peer under test): stunnel accepts plain TCP on a local
port and dials the target over TLS, verifying the chain against the test CA *and* the IP SAN
(``checkIP``), optionally presenting a client certificate.

Server mode (TLS client under test -> stunnel -> SIPp UAS): stunnel terminates TLS with the
server certificate, optionally requiring a client certificate from the test CA.

Config quirks handled here: comments only on their own line (a trailing ``; x`` breaks the
line), no variable expansion, so every path is written absolute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.pki import Pki

from .peers import ManagedPeer, managed

__all__ = [
    "READY_LINE",
    "Stunnel",
    "client_options",
    "render_conf",
    "server_options",
    "start_stunnel",
]

READY_LINE = "Configuration successful"
TLS_POLICY = {"sslVersionMin": "TLSv1.2", "ciphers": "ECDHE+AESGCM:ECDHE+CHACHA20"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Stunnel:
    """A running stunnel: plain side ``accept_port``, other side ``connect_port``."""

    accept_port: int
    connect_port: int
    conf: Path
    peer: ManagedPeer

    @property
    def log(self) -> Path:
        """stunnel's log (debug level 6: connections and certificate checks)."""
        return self.peer.log

    def log_text(self) -> str:
        """The log so far."""
        return self.peer.log_text()


def client_options(
    pki: Pki,
    *,
    client_cert: str | None = None,
    ca: str = "ca",
    verify: bool = True,
    check_ip: str | None = "127.0.0.1",
    check_host: str | None = None,
) -> dict[str, str]:
    """Service options for client mode (TLS towards the peer under test).

    Args:
        pki: the test PKI.
        client_cert: leaf to present for mutual TLS ("client", "rogue"...), or None.
        ca: CA to verify the peer against ("ca" or "rogue-ca").
        verify: verify the peer's chain (and name) at all.
        check_ip: IP the peer's certificate must carry as SAN (None: do not check).
        check_host: DNS name the peer's certificate must carry (None: do not check).
    """
    opts = {"client": "yes", **TLS_POLICY}
    if verify:
        opts |= {"verifyChain": "yes", "CAfile": str(pki.crt(ca))}
        if check_ip:
            opts["checkIP"] = check_ip
        if check_host:
            opts["checkHost"] = check_host
    if client_cert is not None:
        opts |= {"cert": str(pki.crt(client_cert)), "key": str(pki.key(client_cert))}
    return opts


def server_options(
    pki: Pki, *, cert: str = "server", require_cert: bool = False, ca: str = "ca"
) -> dict[str, str]:
    """Service options for server mode (TLS towards the client under test).

    Args:
        pki: the test PKI.
        cert: leaf to present ("server", or "rogue" for must-fail tests).
        require_cert: mutual TLS: refuse clients without a certificate from ``ca``.
        ca: CA that client certificates must chain to.
    """
    opts = {"cert": str(pki.crt(cert)), "key": str(pki.key(cert)), **TLS_POLICY}
    if require_cert:
        opts |= {"CAfile": str(pki.crt(ca)), "verifyChain": "yes", "requireCert": "yes"}
    return opts


def render_conf(service: str, accept_port: int, connect_port: int, opts: Mapping[str, str]) -> str:
    """The text of a one-service stunnel configuration (foreground, no pid file)."""
    lines = ["foreground = yes", "pid =", "debug = 6", f"[{service}]"]
    lines += [f"accept = 127.0.0.1:{accept_port}", f"connect = 127.0.0.1:{connect_port}"]
    lines += [f"{k} = {v}" for k, v in opts.items()]
    return "\n".join(lines) + "\n"


def start_stunnel(
    stack: contextlib.ExitStack,
    workdir: Path,
    *,
    accept_port: int,
    connect_port: int,
    options: Mapping[str, str],
    max_s: float = 120,
) -> Stunnel:
    """Write ``workdir/stunnel.conf``, start stunnel and wait for ``Configuration successful``.

    The peer is stopped when ``stack`` closes.

    Raises:
        PeerError: stunnel is missing, rejected the configuration or did not listen in time.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "stunnel.conf"
    conf.write_text(render_conf(workdir.name, accept_port, connect_port, options))
    peer = stack.enter_context(
        managed(
            ["stunnel", str(conf)],
            workdir / "stunnel.log",
            ready_log=READY_LINE,
            port=accept_port,
            cwd=workdir,
            max_s=max_s,
        )
    )
    return Stunnel(accept_port=accept_port, connect_port=connect_port, conf=conf, peer=peer)
