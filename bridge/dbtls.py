"""TLS for the database connections of the user and CDR stores.

Theory of operation: PostgreSQL over the network gets its TLS context from
:func:`sip_gateway.tls.client_context` like every other client of the bridge (TLS 1.2/1.3,
ECDHE-AEAD, chain and host name always verified against ``store.ca_file`` or the system
store). :func:`engine_options` returns the ``create_async_engine`` keyword arguments for a
URL: ``connect_args={"ssl": context}`` for ``postgresql+asyncpg`` (asyncpg takes an
``ssl.SSLContext`` and verifies the host name of the URL), nothing when TLS is off. A SQLite
file is local, so asking for TLS with it is a configuration error. The settings are
``[store] tls`` and ``[store] ca_file`` (see ``config/bridge.example.toml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from sip_gateway.tls import TlsClientConfig, client_context

__all__ = ["StoreTlsError", "engine_options", "store_tls_config"]


class StoreTlsError(ValueError):
    """``store.tls`` cannot apply to this URL (SQLite) or its CA file is unusable."""


def store_tls_config(tls: bool, ca_file: Path | None) -> TlsClientConfig | None:
    """The client configuration of ``[store]``: None when ``tls`` is off."""
    return TlsClientConfig(ca_file=ca_file) if tls else None


def engine_options(url: URL, tls: TlsClientConfig | None) -> dict[str, Any]:
    """Keyword arguments for ``create_async_engine(url, ...)``.

    Raises:
        StoreTlsError: TLS was asked for a SQLite URL.
        sip_gateway.tls.TlsPolicyError: the CA file is missing or unreadable.
    """
    if tls is None:
        return {}
    if url.get_backend_name() != "postgresql":
        raise StoreTlsError(
            f"store.tls applies to PostgreSQL; {url.get_backend_name()} is a local file"
        )
    return {"connect_args": {"ssl": client_context(tls)}}
