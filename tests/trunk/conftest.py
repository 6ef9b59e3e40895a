"""Fixtures of the trunk tests: the interop peers (PKI, SIPp, stunnel, baresip) are reused."""

import pytest

from tests.interop.conftest import (
    baresip,
    peer_stack,
    pki,
    sipp_tls_uac,
    sipp_tls_uas,
    sipp_uac,
    sipp_uas,
    stunnel_client,
    stunnel_server,
)

from .raw_peer import RawPeer


@pytest.fixture
async def peer(pki):
    """A scripted SIP-over-TLS peer (carrier, registrar) on 127.0.0.1."""
    raw = await RawPeer.start(pki)
    yield raw
    await raw.aclose()


__all__ = [
    "baresip",
    "peer_stack",
    "pki",
    "sipp_tls_uac",
    "sipp_tls_uas",
    "sipp_uac",
    "sipp_uas",
    "stunnel_client",
    "stunnel_server",
]
