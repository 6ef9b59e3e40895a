"""Browser authentication: SIP digest on REGISTER and INVITE, behind a brute-force guard.

Theory of operation: :class:`BrowserAuth` decides, for one request from a browser,
whether it is authenticated (:class:`AuthOk`) or which response to send instead. It holds
two :class:`~sip_gateway.sip.auth.DigestServer` objects for the same realm and users: a
registrar-style one for REGISTER (401 with WWW-Authenticate, credentials in Authorization)
and a proxy-style one for every other method, INVITE above all (407 with
Proxy-Authenticate, credentials in Proxy-Authorization), as a DigestServer picks its
header names and status from its ``proxy`` flag. Challenges list SHA-256 first, then MD5
(RFC 8760: the preferred algorithm first). JsSIP 3.13.8 answers only with MD5 and keeps
only the LAST ``WWW-Authenticate``/``Proxy-Authenticate`` header of a response (its parser
replaces the header on each occurrence), so MD5 must come last or JsSIP users are locked out.

Answers:

* no credentials, a stale nonce, a foreign realm: the challenge (401/407);
* a wrong digest after a challenge: 403, without a new challenge (a client would loop);
  an unknown user gets exactly the same answer as a wrong password (the digest server
  compares an unknown user's digest against junk, so even the work done is the same);
* a replayed nonce count: 403; malformed or mismatched credentials: 400;
* any request from a blocked source: 403, before any digest work and without a challenge.

:class:`AuthGuard` is the brute-force protection: per source address (the IP without the
port; an IPv6 source counts as its /64, what one subscriber usually gets) it counts the
failures in a sliding window and blocks the source for ``block_time`` after
``max_failures`` of them. A failure is any answer that tells a guesser something about a
password: a wrong digest, a replay, and a wrong digest on a nonce we never issued (with a
forged nonce the digest server answers a wrong password with a plain challenge and a right
one with ``stale=true``, so such guesses must count too). Successful logins do not reset
the count: one known account must not buy unlimited guesses at others. Memory is bounded:
past ``max_sources`` tracked sources the least recently failing one is forgotten. Time is
an argument everywhere; the guard logs one line per block naming the source and the
claimed user name, never the credentials.

Before the block a guesser is slowed: :meth:`AuthGuard.delay` is how long the listener
holds every authentication answer to a source with failures in the window (``delay_step``
doubling per failure up to ``max_delay``); :class:`bridge.answer_delay.AnswerDelays` holds
them without blocking the event loop. The delay depends on the source only, never on the
user name, so it tells an enumerator nothing.

"""

from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sip_gateway.sip.auth import (
    AuthAccepted,
    AuthChallengeNeeded,
    AuthDenied,
    AuthFailure,
    AuthRejected,
    DigestAlgorithm,
    DigestCredentials,
    DigestServer,
    DigestServerConfig,
    Ha1Lookup,
    parse_credentials,
)
from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.message import SipRequest, SipResponse, build_response

__all__ = ["AuthGuard", "AuthGuardConfig", "AuthOk", "BrowserAuth", "source_key"]

log = logging.getLogger("bridge.auth")

_GUESSES = frozenset({AuthFailure.BAD_CREDENTIALS, AuthFailure.REPLAYED})
_QUIET = frozenset({AuthFailure.NO_CREDENTIALS, AuthFailure.NONCE_STALE})
_NOT_CHALLENGED = frozenset({"ACK", "CANCEL"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthGuardConfig:
    """Configuration of an :class:`AuthGuard`.

    Raises:
        ValueError: (at construction) a value is not positive.
    """

    max_failures: int = 5
    """Failures within ``window`` that block a source."""
    window: float = 60.0
    """Length of the sliding failure window, in seconds."""
    block_time: float = 300.0
    """How long a blocked source is refused, in seconds."""
    max_sources: int = 10_000
    """Most sources tracked at once; the least recently failing is forgotten first."""
    delay_step: float = 0.25
    """Delay of the answers to a source after its first failure, in seconds; it doubles
    with each further failure in the window (0: no slowing)."""
    max_delay: float = 2.0
    """Longest delay of an answer, in seconds."""

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.max_sources < 1:
            raise ValueError("max_failures and max_sources must be at least 1")
        if self.window <= 0 or self.block_time <= 0:
            raise ValueError("window and block_time must be positive")
        if self.delay_step < 0 or self.max_delay < self.delay_step:
            raise ValueError("delay_step must be >= 0 and max_delay >= delay_step")


@dataclass(slots=True)
class _Source:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float = float("-inf")


def source_key(source: str) -> str:
    """The address the guard counts for ``source``: an IPv4 address or an IPv6 /64.

    An IPv4-mapped IPv6 address counts as its IPv4 address; text that is not an IP
    address is used as it is.
    """
    try:
        address = ipaddress.ip_address(source.strip("[]"))
    except ValueError:
        return source
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AuthGuard:
    """Blocks source addresses that keep failing authentication (sans-IO)."""

    def __init__(self, config: AuthGuardConfig | None = None) -> None:
        self._config = config or AuthGuardConfig()
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.failures = 0
        """Failed authentications counted so far (metrics)."""
        self.blocks = 0
        """Sources blocked so far (metrics)."""

    def __repr__(self) -> str:
        return f"AuthGuard(tracked={len(self._sources)})"

    @property
    def tracked(self) -> int:
        """How many sources are remembered (bounded by ``max_sources``)."""
        return len(self._sources)

    def is_blocked(self, source: str, now: float) -> bool:
        """Whether requests from ``source`` are refused at ``now``."""
        state = self._sources.get(source_key(source))
        return state is not None and state.blocked_until > now

    def delay(self, source: str, now: float) -> float:
        """How long to hold an authentication answer to ``source`` at ``now``.

        Zero for a source without failures in the window and for a blocked one (its 403
        goes at once: it costs nothing); otherwise ``delay_step`` doubled per further
        failure, at most ``max_delay``. The same for every user name, known or not.
        """
        state = self._sources.get(source_key(source))
        if state is None or state.blocked_until > now:
            return 0.0
        recent = sum(1 for at in state.failures if at > now - self._config.window)
        if recent == 0:
            return 0.0
        step = self._config.delay_step * 2.0 ** min(recent - 1, 30)
        return min(self._config.max_delay, step)

    def blocked_sources(self, now: float) -> list[str]:
        """The sources blocked at ``now`` (for the ops API)."""
        return [key for key, state in self._sources.items() if state.blocked_until > now]

    def record_failure(self, source: str, now: float, *, user: str | None = None) -> bool:
        """Count one failed authentication from ``source``.

        Args:
            source: the client's IP address (no port).
            now: the current time in seconds.
            user: the user name the client claimed, for the log line of a block.

        Returns:
            True when this failure blocked the source.
        """
        key = source_key(source)
        self.failures += 1
        state = self._sources.pop(key, None) or _Source()
        self._sources[key] = state  # most recent last
        self._evict()
        if state.blocked_until > now:
            return False
        failures = state.failures
        while failures and failures[0] <= now - self._config.window:
            failures.popleft()
        failures.append(now)
        if len(failures) < self._config.max_failures:
            return False
        failures.clear()
        state.blocked_until = now + self._config.block_time
        self.blocks += 1
        log.warning(
            "authentication from %s blocked for %.0f s after %d failures within %.0f s "
            "(last user %s)",
            key,
            self._config.block_time,
            self._config.max_failures,
            self._config.window,
            _shown(user),
        )
        return True

    def _evict(self) -> None:
        while len(self._sources) > self._config.max_sources:
            self._sources.popitem(last=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthOk:
    """The request is authenticated: process it as ``username``."""

    username: str
    algorithm: DigestAlgorithm


class BrowserAuth:
    """Digest authentication of browser requests: 401 for REGISTER, 407 for the rest."""

    def __init__(
        self, www: DigestServer, proxy: DigestServer | None = None, *, guard: AuthGuard
    ) -> None:
        """Create the authenticator.

        Args:
            www: the digest server for REGISTER (``proxy=False``: 401, WWW-Authenticate).
            proxy: the digest server for INVITE and other requests (``proxy=True``: 407,
                Proxy-Authenticate); None when only REGISTER is authenticated here.
            guard: the brute-force guard shared by both.

        Raises:
            ValueError: a server is configured for the other role.
        """
        if www.challenge_status != 401:
            raise ValueError("the REGISTER digest server must challenge with 401")
        if proxy is not None and proxy.challenge_status != 407:
            raise ValueError("the INVITE digest server must challenge with 407 (proxy=True)")
        self._www = www
        self._proxy = proxy
        self._guard = guard

    @classmethod
    def for_realm(
        cls,
        realm: str,
        secret: bytes,
        *,
        ha1_lookup: Ha1Lookup,
        random_bytes: Callable[[int], bytes],
        guard: AuthGuard,
        nonce_lifetime: float = 300.0,
    ) -> BrowserAuth:
        """Both digest servers for ``realm``, challenging SHA-256 first, MD5 last (JsSIP).

        Args:
            realm: the digest realm (``sip.realm``).
            secret: the nonce MAC key (at least 16 bytes; keep it across restarts).
            ha1_lookup: the users' HA1s (:meth:`bridge.users.Ha1Cache.lookup`).
            random_bytes: the nonce randomness (``secrets.token_bytes``).
            guard: the brute-force guard.
            nonce_lifetime: seconds a nonce is accepted.

        Raises:
            LocalProtocolError: the realm or secret is unusable.
        """
        algorithms = (DigestAlgorithm.SHA_256, DigestAlgorithm.MD5)

        def server(proxy: bool) -> DigestServer:
            config = DigestServerConfig(
                realm=realm,
                secret=secret,
                algorithms=algorithms,
                nonce_lifetime=nonce_lifetime,
                proxy=proxy,
            )
            return DigestServer(config, ha1_lookup=ha1_lookup, random_bytes=random_bytes)

        return cls(server(False), server(True), guard=guard)

    @property
    def guard(self) -> AuthGuard:
        """The brute-force guard."""
        return self._guard

    def authenticate(self, request: SipRequest, *, source: str, now: float) -> AuthOk | SipResponse:
        """Authenticate a request from a browser.

        Args:
            request: the request (REGISTER, INVITE, or any other but ACK and CANCEL).
            source: the client's IP address (without port).
            now: the current time in seconds (any clock steady over a nonce lifetime).

        Returns:
            :class:`AuthOk`, or the response to send: the challenge (401/407), 403 or 400.

        Raises:
            RemoteProtocolError: malformed credentials (400).
            ValueError: ACK or CANCEL (never challenged, RFC 3261 22.1), or a method other
                than REGISTER without a proxy digest server.
        """
        server = self._server_for(request.method)
        if self._guard.is_blocked(source, now):
            log.debug("%s from %s refused: source blocked", request.method, source)
            return build_response(request, 403, "Forbidden")
        outcome = server.verify(
            request.headers.get_all(server.credentials_header),
            method=request.method,
            uri=str(request.uri),
            now=now,
            body=request.body,
        )
        if isinstance(outcome, AuthAccepted):
            return AuthOk(username=outcome.username, algorithm=outcome.algorithm)
        assert isinstance(outcome, AuthDenied)
        return self._denied(request, server, outcome, source, now)

    def _server_for(self, method: str) -> DigestServer:
        if method in _NOT_CHALLENGED:
            raise ValueError(f"{method} is never challenged (RFC 3261 22.1)")
        if method == "REGISTER":
            return self._www
        if self._proxy is None:
            raise ValueError(f"no proxy digest server to authenticate {method}")
        return self._proxy

    def _denied(
        self,
        request: SipRequest,
        server: DigestServer,
        outcome: AuthDenied,
        source: str,
        now: float,
    ) -> SipResponse:
        reason = outcome.reason
        user = None if reason in _QUIET else _claimed_user(request, server)
        if _is_guess(outcome):
            self._guard.record_failure(source, now, user=user)
        if reason not in _QUIET:
            log.warning(
                "%s from %s refused: %s (user %s)",
                request.method,
                source,
                reason.value,
                _shown(user),
            )
        if reason is AuthFailure.BAD_CREDENTIALS:
            return build_response(request, 403, "Forbidden")  # no new challenge: no loop
        response = build_response(request, outcome.status_code)
        for name, value in outcome.headers:
            response.headers.add(name, value)
        return response


def _is_guess(outcome: AuthDenied) -> bool:
    """Whether the outcome answered a password guess (and so counts as a failure)."""
    if isinstance(outcome, AuthRejected):
        return outcome.reason in _GUESSES
    return isinstance(outcome, AuthChallengeNeeded) and outcome.reason is AuthFailure.NONCE_INVALID


def _claimed_user(request: SipRequest, server: DigestServer) -> str | None:
    """The user name of the request's first Digest credentials (for logs only)."""
    for value in request.headers.get_all(server.credentials_header):
        try:
            parsed = parse_credentials(value)
        except RemoteProtocolError:
            continue
        if isinstance(parsed, DigestCredentials):
            return parsed.username
    return None


def _shown(user: str | None) -> str:
    """A claimed user name for a log line: quoted, printable, bounded."""
    if user is None:
        return "-"
    return repr("".join(c if c.isprintable() else "?" for c in user[:64]))
