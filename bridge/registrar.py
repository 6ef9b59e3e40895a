"""Registrar for browser users (RFC 3261 section 10) behind digest authentication.

Theory of operation: :meth:`Registrar.handle_register` takes a REGISTER received over
WSS and returns the response to send. Authentication is :class:`~bridge.auth.BrowserAuth`'s
(a 401 challenge with SHA-256 first, then MD5 last for JsSIP, RFC 8760; 403 for credentials
that do not verify or a source blocked by the brute-force guard); an authenticated user
may only register its own address of record (403 otherwise), and a 200 lists the user's
current bindings (JsSIP ignores a 200 that does not echo its Contact). Bindings live in
memory with their expiry; time is an argument. Passwords are never seen here: the digest
server checks responses against stored HA1 values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sip_gateway.sip.auth import DigestServer
from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.headers import NameAddr
from sip_gateway.sip.message import SipRequest, SipResponse, build_response
from sip_gateway.sip.uri import SipUri

from .auth import AuthGuard, BrowserAuth

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

    def __init__(self, auth: BrowserAuth | DigestServer) -> None:
        """Create a registrar.

        Args:
            auth: the browser authenticator. A bare REGISTER digest server (what
                ``bridge.app`` passed before :mod:`bridge.auth` existed) is wrapped in a
                :class:`BrowserAuth` with a default :class:`AuthGuard`.
        """
        if isinstance(auth, DigestServer):
            auth = BrowserAuth(auth, guard=AuthGuard())
        self._auth = auth
        self._bindings: dict[str, dict[str, Binding]] = {}

    @property
    def auth(self) -> BrowserAuth:
        """The browser authenticator (its guard slows and blocks guessers)."""
        return self._auth

    def bindings(self, user: str, now: float) -> list[Binding]:
        """The live bindings of ``user``."""
        live = {k: b for k, b in self._bindings.get(user, {}).items() if b.expires_at > now}
        self._bindings[user] = live
        return list(live.values())

    def handle_register(
        self, request: SipRequest, *, now: float, peer: str, source: str | None = None
    ) -> SipResponse:
        """Authenticate a REGISTER and update the bindings.

        Args:
            request: the REGISTER.
            now: current time in seconds.
            peer: the source ``host:port``, for log lines.
            source: the source IP address for the brute-force guard; by default the host
                part of ``peer``.

        Raises:
            RemoteProtocolError: malformed credentials, Contact or Expires (400).
        """
        outcome = self._auth.authenticate(request, source=source or _host(peer), now=now)
        if isinstance(outcome, SipResponse):
            return outcome
        user = _aor_user(request)
        if user != outcome.username:
            log.warning(
                "REGISTER from %s: user %r may not register %r", peer, outcome.username, user
            )
            return build_response(request, 403, "Forbidden")
        return self._update(request, user, now)

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


def _host(peer: str) -> str:
    """The host of ``host:port`` (``[v6]:port`` and bare ``v6:port`` too)."""
    host, sep, port = peer.rpartition(":")
    if not sep or not port.isdigit():
        return peer.strip("[]")
    return host.strip("[]")


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
