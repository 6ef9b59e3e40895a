"""Registrar for browser users (RFC 3261 section 10) behind digest authentication.

Theory of operation: :meth:`Registrar.handle_register` takes a REGISTER received over
WSS and returns the response to send: a 401 challenge (MD5 first, for JsSIP, then
SHA-256, RFC 8760), a 403 for credentials that do not verify, or a 200 that lists the
user's current bindings (JsSIP ignores a 200 that does not echo its Contact). Bindings
live in memory with their expiry; time is an argument. Passwords are never seen here:
the digest server checks responses against stored HA1 values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sip_gateway.sip.auth import AuthAccepted, AuthDenied, AuthFailure, DigestServer
from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.headers import NameAddr
from sip_gateway.sip.message import SipRequest, SipResponse, build_response
from sip_gateway.sip.uri import SipUri

__all__ = ["Binding", "Registrar"]

log = logging.getLogger("bridge.registrar")

DEFAULT_EXPIRES = 600
MIN_EXPIRES = 60
MAX_EXPIRES = 3600


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of a user."""

    user: str
    contact: NameAddr
    expires_at: float
    call_id: str
    cseq: int


class Registrar:
    """Digest-protected bindings of browser users."""

    def __init__(self, digest: DigestServer) -> None:
        self._digest = digest
        self._bindings: dict[str, dict[str, Binding]] = {}

    def bindings(self, user: str, now: float) -> list[Binding]:
        """The live bindings of ``user``."""
        live = {k: b for k, b in self._bindings.get(user, {}).items() if b.expires_at > now}
        self._bindings[user] = live
        return list(live.values())

    def handle_register(self, request: SipRequest, *, now: float, peer: str) -> SipResponse:
        """Authenticate a REGISTER and update the bindings.

        Args:
            request: the REGISTER.
            now: current time in seconds.
            peer: the source address, for the log line of a failure.

        Raises:
            RemoteProtocolError: malformed credentials, Contact or Expires (400).
        """
        outcome = self._digest.verify(
            request.headers.get_all(self._digest.credentials_header),
            method=request.method,
            uri=str(request.uri),
            now=now,
            body=request.body,
        )
        if isinstance(outcome, AuthDenied):
            return self._denied(request, outcome, peer)
        assert isinstance(outcome, AuthAccepted)
        user = _aor_user(request)
        if user != outcome.username:
            log.warning(
                "REGISTER from %s: user %r may not register %r", peer, outcome.username, user
            )
            return build_response(request, 403, "Forbidden")
        return self._update(request, user, now)

    def _denied(self, request: SipRequest, outcome: AuthDenied, peer: str) -> SipResponse:
        status = outcome.status_code
        if outcome.reason is AuthFailure.BAD_CREDENTIALS:
            status = 403  # wrong password after a challenge: refuse, do not loop
        if outcome.reason not in (AuthFailure.NO_CREDENTIALS, AuthFailure.NONCE_STALE):
            log.warning("REGISTER from %s refused: %s", peer, outcome.reason.value)
        response = build_response(request, status, "Forbidden" if status == 403 else None)
        if status != 403:
            for name, value in outcome.headers:
                response.headers.add(name, value)
        return response

    def _update(self, request: SipRequest, user: str, now: float) -> SipResponse:
        default = _expires_header(request)
        current = self._bindings.setdefault(user, {})
        if request.contact_wildcard:
            if default != 0:
                raise RemoteProtocolError("Contact: * requires Expires: 0")
            current.clear()
        for contact in request.contacts:
            expires = _contact_expires(contact, default)
            key = str(contact.uri)
            if expires == 0:
                current.pop(key, None)
                continue
            if expires < MIN_EXPIRES:
                response = build_response(request, 423, "Interval Too Brief")
                response.headers.add("Min-Expires", str(MIN_EXPIRES))
                return response
            current[key] = Binding(
                user, contact, now + min(expires, MAX_EXPIRES), request.call_id, request.cseq.seq
            )
        response = build_response(request, 200)
        for binding in self.bindings(user, now):
            remaining = max(0, int(binding.expires_at - now))
            response.headers.add("Contact", f"<{binding.contact.uri}>;expires={remaining}")
        return response


def _aor_user(request: SipRequest) -> str:
    uri = request.to_addr.uri
    if not isinstance(uri, SipUri) or not uri.user:
        raise RemoteProtocolError("REGISTER To has no SIP user part")
    return uri.user


def _expires_header(request: SipRequest) -> int:
    value = request.headers.get("Expires")
    if value is None:
        return DEFAULT_EXPIRES
    return _seconds(value)


def _contact_expires(contact: NameAddr, default: int) -> int:
    value = contact.param("expires")
    return default if value is None else _seconds(value)


def _seconds(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise RemoteProtocolError("Expires is not a number of seconds")
    return int(value)
