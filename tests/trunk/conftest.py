"""Fixtures of the trunk tests: the interop peers (PKI, SIPp, stunnel, baresip) are reused."""

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
