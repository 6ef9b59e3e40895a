"""SIP digest authentication: the one import for challenges, answers and verification.

Theory of operation: RFC 3261 section 22 authenticates SIP requests with HTTP Digest;
RFC 8760 adds SHA-256 and SHA-512-256 to MD5 and RFC 7616 gives the algorithm and qop
rules. The work is split by concept, and this module gathers the public names:

* :mod:`~sip_gateway.sip.auth_header`: the text of WWW-Authenticate, Proxy-Authenticate,
  Authorization and Proxy-Authorization values (:func:`parse_challenge`,
  :func:`parse_credentials`, ``str()`` to serialize; unknown schemes are kept verbatim).
* :mod:`~sip_gateway.sip.digest`: the arithmetic (:class:`DigestAlgorithm`,
  :func:`compute_ha1` for ``pstn-bridge user add``, :func:`compute_response`).
* :mod:`~sip_gateway.sip.auth_client`: :class:`DigestClient` answers 401/407 for one
  :class:`DigestAccount`, raising :class:`AuthError` when it cannot or must not.
* :mod:`~sip_gateway.sip.auth_server`: :class:`DigestServer` challenges with
  self-validating nonces and verifies against stored HA1s, returning
  :class:`AuthOutcome` values.

All of it is sans-IO: clocks and random sources are arguments, nothing is logged, and
passwords, HA1s, digest responses and the server secret never appear in a ``repr`` or an
error message. Malformed headers raise :class:`~sip_gateway.sip.errors.RemoteProtocolError`
(400); ordinary authentication failures are values, not exceptions.
"""

from __future__ import annotations

from .auth_client import CLIENT_PREFERENCE, AuthError, DigestAccount, DigestClient, NonceCounter
from .auth_header import (
    DigestChallenge,
    DigestCredentials,
    UnknownAuthScheme,
    parse_challenge,
    parse_credentials,
)
from .auth_server import (
    AuthAccepted,
    AuthChallengeNeeded,
    AuthDenied,
    AuthFailure,
    AuthOutcome,
    AuthRejected,
    AuthStale,
    DigestServer,
    DigestServerConfig,
    Ha1Lookup,
)
from .digest import DigestAlgorithm, compute_ha1, compute_response

__all__ = [
    "CLIENT_PREFERENCE",
    "AuthAccepted",
    "AuthChallengeNeeded",
    "AuthDenied",
    "AuthError",
    "AuthFailure",
    "AuthOutcome",
    "AuthRejected",
    "AuthStale",
    "DigestAccount",
    "DigestAlgorithm",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestServer",
    "DigestServerConfig",
    "Ha1Lookup",
    "NonceCounter",
    "UnknownAuthScheme",
    "compute_ha1",
    "compute_response",
    "parse_challenge",
    "parse_credentials",
]
