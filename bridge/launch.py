"""Start-up support shared by ``pstn-bridge serve`` and ``pstn-bridge carrier-sim``.

Theory of operation: the pieces both commands need before anything listens: the error
that stops start-up with a message saying what to fix, logging set-up, the bridge's TLS
material (configured files, or a generated development PKI), the digest nonce secret kept
across restarts, and running a command until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sip_gateway.devcerts import ensure_dev_pki

from .settings import Settings

__all__ = [
    "StartupError",
    "configure_logging",
    "digest_secret",
    "run_until_signal",
    "tls_material",
]

log = logging.getLogger("bridge.app")


class StartupError(Exception):
    """The bridge cannot start (certificates, ports); the message says what to fix."""


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def tls_material(settings: Settings) -> tuple[Path, Path, Path | None]:
    """Certificate chain, key and CA file of the bridge (a generated dev PKI when unset).

    Raises:
        StartupError: only one of cert_file/key_file is set, or the dev PKI cannot be written.
    """
    tls = settings.tls
    if tls.cert_file is not None and tls.key_file is not None:
        return tls.cert_file, tls.key_file, tls.ca_file
    if tls.cert_file is not None or tls.key_file is not None:
        raise StartupError("options tls.cert_file and tls.key_file must be set together")
    try:
        pki = ensure_dev_pki(settings.node.var_dir / "tls")
    except OSError as exc:
        raise StartupError(f"cannot write development certificates: {exc}") from exc
    log.warning("using the development CA in %s: not for production", pki.ca_certificate.parent)
    return pki.server_certificate, pki.server_key, tls.ca_file or pki.ca_certificate


def digest_secret(var_dir: Path) -> bytes:
    """The nonce MAC key, kept across restarts so outstanding nonces stay valid."""
    path = var_dir / "digest.secret"
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


async def run_until_signal(work: Coroutine[Any, Any, object]) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives (then cancel it)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
