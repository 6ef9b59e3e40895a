"""Shared by the fault tests (restart, faults under load): a bridge's settings and browsers.

The bridge runs the embedded carrier simulator as its trunk and keeps users and CDRs in
SQLite under ``var_dir``; per-user limits are lifted so one user can hold many calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.app import RunningBridge
from bridge.settings import Settings
from sip_gateway.tls import TlsClientConfig, client_context
from tests.interop.peers import free_port
from tests.webrtc_client import ClientConfig

__all__ = ["DID", "NUMBER", "PASSWORD", "USER", "bridge_settings", "client_config"]

PASSWORD = "correct horse battery staple"
USER, DID = "alice", "+15005550199"
NUMBER = "+441632960123"


def bridge_settings(
    tmp_path: Path, pki: Any, *, sip: dict[str, Any] | None = None, **sections: Any
) -> Settings:
    """Settings of a bridge with the embedded simulator, its database under ``tmp_path``.

    ``sip``: more ``[sip]`` options; ``sections``: more (replaced) sections.
    """
    sim_port = free_port()
    return Settings.model_validate(
        {
            "node": {"var_dir": tmp_path / "var"},
            "tls": {
                "cert_file": pki.server_certificate,
                "key_file": pki.server_key,
                "ca_file": pki.ca_certificate,
            },
            "sip": {"listen_port": 0} | (sip or {}),
            "http": {"listen_port": 0},
            "users": {"demo_user": ""},
            "trunks": [
                {
                    "name": "sim",
                    "host": "127.0.0.1",
                    "port": sim_port,
                    "ca_file": pki.ca_certificate,
                    "allowed_sources": ["127.0.0.1/32"],
                    "options_interval": 0,
                }
            ],
            "carrier_sim": {"listen_port": sim_port, "ring_time": 0.05},
            "limits": {
                "max_concurrent_calls_per_user": 100,
                "max_calls_per_minute_per_user": 1000,
            },
        }
        | sections
    )


def client_config(running: RunningBridge, settings: Settings, ca: Path) -> ClientConfig:
    """A browser of ``USER`` on the running bridge's WSS listener."""
    return ClientConfig(
        url=f"wss://127.0.0.1:{running.https_port}/sip",
        ssl=client_context(TlsClientConfig(ca_file=ca)),
        user=USER,
        password=PASSWORD,
        domain=settings.sip.realm,
    )
