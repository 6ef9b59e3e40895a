"""The server side of SIP digest authentication (RFC 3261 22.2 and 22.3, RFC 8760).

Theory of operation: :class:`DigestServer` challenges and verifies for one realm.

* Challenges: one header field per configured algorithm (RFC 8760), in configured order.
  The default lists MD5 before SHA-256 although a server would normally list its
  preferred algorithm first: browser libraries such as JsSIP answer only the first field
  and only know MD5, while clients that know SHA-256 can choose it by strength.
* Nonces are self-validating: ``base64url(issued_ms | 12 random bytes | HMAC-SHA256(secret,
  realm | issued_ms | random)[:16])``. The server recognises its own nonces and their age
  without storing them.
* The only per-nonce state is a bounded replay window of the highest ``nc`` accepted per
  nonce (:class:`_ReplayWindow`). It is updated only after a correct digest, so a stranger
  cannot fill it; when it evicts a nonce, older nonces it no longer knows are answered
  as stale, so a client re-answers instead of being replayable.
* Verification order: find our realm's credentials, check algorithm, qop and uri, compare
  the digest in constant time, and only then judge the nonce: ``stale=true`` is only said
  to a client that knew the password (RFC 7616 3.3), including when the nonce is not one
  we can vouch for (issued under another secret, before a restart); a nonce that fails
  its MAC with a wrong digest gets a plain new challenge. Last come age and nonce count.

HA1s come from an injected lookup, keyed by (username, realm, algorithm); the server never
sees a password. ``now`` is an argument (seconds, from any clock that is steady across
the nonce lifetime; a wall clock if nonces must survive restarts with the same secret).
"""

from __future__ import annotations

import base64
import enum
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .auth_header import DigestChallenge, DigestCredentials, parse_credentials
from .digest import DigestAlgorithm, check_ha1, compute_response
from .errors import LocalProtocolError

__all__ = [
    "AuthAccepted",
    "AuthChallengeNeeded",
    "AuthDenied",
    "AuthFailure",
    "AuthOutcome",
    "AuthRejected",
    "AuthStale",
    "DigestServer",
    "DigestServerConfig",
    "Ha1Lookup",
]

#: Returns the stored hex HA1 of (username, realm, base algorithm), or None if unknown.
Ha1Lookup = Callable[[str, str, DigestAlgorithm], str | None]

_NONCE_MAC_CONTEXT = b"pstn-bridge digest nonce v1\x00"
_NONCE_RANDOM_BYTES = 12
_NONCE_MAC_BYTES = 16
_NONCE_TEXT = re.compile(r"[A-Za-z0-9_-]{48}")  # 36 bytes in unpadded base64url
_QOPS = frozenset({"auth", "auth-int"})


class AuthFailure(enum.Enum):
    """Why a request was not accepted (safe to log: it names no secret)."""

    NO_CREDENTIALS = "no-credentials"
    REALM_MISMATCH = "realm-mismatch"
    ALGORITHM_UNSUPPORTED = "algorithm-unsupported"
    NONCE_INVALID = "nonce-invalid"
    NONCE_STALE = "nonce-stale"
    BAD_CREDENTIALS = "bad-credentials"  # unknown user or wrong password: never told apart
    REPLAYED = "replayed"
    URI_MISMATCH = "uri-mismatch"
    QOP_MISMATCH = "qop-mismatch"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthOutcome:
    """Base class of what :meth:`DigestServer.verify` decides."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthAccepted(AuthOutcome):
    """The request carries valid, fresh credentials: process it as ``username``."""

    username: str
    realm: str
    algorithm: DigestAlgorithm


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthDenied(AuthOutcome):
    """The request is not accepted: answer ``status_code`` with ``headers`` added.

    Attributes:
        reason: why (for logs and metrics; never sent).
        status_code: the response to send (401, 407, 403 or 400).
        headers: header fields to add to it (the challenges, when there are any).
    """

    reason: AuthFailure
    status_code: int
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthChallengeNeeded(AuthDenied):
    """No usable credentials for our realm (none, foreign realm, unknown nonce or algorithm)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthStale(AuthDenied):
    """The digest was right but the nonce is too old or not ours: re-challenge ``stale=true``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRejected(AuthDenied):
    """Credentials were wrong (re-challenged), replayed (403) or mismatched (400)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestServerConfig:
    """Configuration of a :class:`DigestServer`.

    Attributes:
        realm: the realm we authenticate for (globally unique, human readable, RFC 3261
            22.1), e.g. the SIP domain.
        secret: key of the nonce MAC, at least 16 random bytes; keep it stable across
            restarts so outstanding nonces stay valid. Never shown.
        algorithms: the algorithms challenged with, one header field each, in this order.
            MD5 first is for clients that answer only the first field (JsSIP).
        qop: the qop options offered (``auth`` and/or ``auth-int``).
        nonce_lifetime: seconds a nonce is accepted; after that a correct answer gets a
            ``stale=true`` challenge.
        max_tracked_nonces: size of the nonce-count replay window.
        verify_uri: require the digest-uri to equal the Request-URI. RFC 3261 22.4 item 6
            lets a SIP server skip this check (proxies may rewrite the Request-URI); we
            face clients directly, so it is on by default.
        proxy: challenge as a proxy (407, Proxy-Authenticate / Proxy-Authorization)
            instead of as a UAS (401, WWW-Authenticate / Authorization).
    """

    realm: str
    secret: bytes = field(repr=False)
    algorithms: tuple[DigestAlgorithm, ...] = (DigestAlgorithm.MD5, DigestAlgorithm.SHA_256)
    qop: tuple[str, ...] = ("auth",)
    nonce_lifetime: float = 300.0
    max_tracked_nonces: int = 10_000
    verify_uri: bool = True
    proxy: bool = False

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise LocalProtocolError("the digest nonce secret must be at least 16 bytes")
        if not self.algorithms or len(set(self.algorithms)) != len(self.algorithms):
            raise LocalProtocolError("digest algorithms must be a non-empty list without repeats")
        for algorithm in self.algorithms:
            if algorithm.is_session or DigestAlgorithm.from_token(algorithm.value) is None:
                raise LocalProtocolError(f"cannot challenge with {algorithm.value}")
        if not self.qop or not set(self.qop) <= _QOPS:
            raise LocalProtocolError("qop must be a non-empty choice of auth and auth-int")
        if self.nonce_lifetime <= 0 or self.max_tracked_nonces < 1:
            raise LocalProtocolError("nonce lifetime and replay window must be positive")
        str(DigestChallenge(realm=self.realm, nonce="-"))  # refuses an unsendable realm


class DigestServer:
    """Issues and verifies Digest challenges for one realm."""

    def __init__(
        self,
        config: DigestServerConfig,
        *,
        ha1_lookup: Ha1Lookup,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        """Create a server.

        Args:
            config: realm, secret and policy.
            ha1_lookup: returns the stored HA1 of (username, realm, base algorithm), or
                None for an unknown user or algorithm.
            random_bytes: returns n unpredictable bytes (``secrets.token_bytes``).
        """
        self._config = config
        self._ha1_lookup = ha1_lookup
        self._random_bytes = random_bytes
        self._window = _ReplayWindow(config.max_tracked_nonces)

    def __repr__(self) -> str:
        algorithms = ",".join(algorithm.value for algorithm in self._config.algorithms)
        return f"DigestServer(realm={self._config.realm!r}, algorithms={algorithms})"

    @property
    def challenge_header(self) -> str:
        """``Proxy-Authenticate`` for a proxy, else ``WWW-Authenticate``."""
        return "Proxy-Authenticate" if self._config.proxy else "WWW-Authenticate"

    @property
    def credentials_header(self) -> str:
        """The request header to read credentials from (Proxy-Authorization/Authorization)."""
        return "Proxy-Authorization" if self._config.proxy else "Authorization"

    @property
    def challenge_status(self) -> int:
        """407 for a proxy, else 401."""
        return 407 if self._config.proxy else 401

    def challenge(self, *, now: float, stale: bool = False) -> tuple[tuple[str, str], ...]:
        """Fresh challenge header fields, one per configured algorithm, sharing one nonce.

        Args:
            now: the current time in seconds.
            stale: mark them ``stale=true``.

        Returns:
            ``(header name, value)`` pairs for the 401/407.
        """
        nonce = self._issue_nonce(now)
        return tuple(
            (
                self.challenge_header,
                str(
                    DigestChallenge(
                        realm=self._config.realm,
                        nonce=nonce,
                        algorithm=algorithm.value,
                        qop=self._config.qop,
                        stale=stale,
                    )
                ),
            )
            for algorithm in self._config.algorithms
        )

    def verify(
        self,
        credentials: Sequence[str],
        *,
        method: str,
        uri: str,
        now: float,
        body: bytes = b"",
    ) -> AuthOutcome:
        """Decide whether a request is authenticated.

        Never call this for ACK or CANCEL: RFC 3261 22.1 forbids challenging them.

        Args:
            credentials: every value of the request's :attr:`credentials_header`.
            method: the request method.
            uri: the Request-URI as it appeared on the request line.
            now: the current time in seconds.
            body: the request body (hashed only for ``auth-int``).

        Returns:
            :class:`AuthAccepted`, or an :class:`AuthDenied` naming the response to send.

        Raises:
            RemoteProtocolError: (400) a credentials value is malformed.
            LocalProtocolError: the lookup returned something that is not an HA1.
        """
        found = self._find_credentials(credentials)
        if isinstance(found, AuthFailure):
            return self._challenge_needed(found, now)
        algorithm = DigestAlgorithm.from_token(found.algorithm)
        if algorithm is None or algorithm not in self._config.algorithms:
            return self._challenge_needed(AuthFailure.ALGORITHM_UNSUPPORTED, now)
        if found.qop is None or found.qop.lower() not in self._config.qop:
            return AuthRejected(reason=AuthFailure.QOP_MISMATCH, status_code=400)
        if self._config.verify_uri and found.uri != uri:
            return AuthRejected(reason=AuthFailure.URI_MISMATCH, status_code=400)
        issued_ms = self._nonce_issued_ms(found.nonce)
        if not self._digest_matches(found, algorithm, method, body):
            if issued_ms is None:
                return self._challenge_needed(AuthFailure.NONCE_INVALID, now)
            return AuthRejected(
                reason=AuthFailure.BAD_CREDENTIALS,
                status_code=self.challenge_status,
                headers=self.challenge(now=now),
            )
        if issued_ms is None:  # right password, nonce not ours (old secret, restart)
            return self._stale(now, AuthFailure.NONCE_INVALID)
        return self._judge_freshness(found, algorithm, issued_ms, now)

    # --- steps of verify ---------------------------------------------------------------

    def _find_credentials(self, values: Sequence[str]) -> DigestCredentials | AuthFailure:
        """The first Digest credentials for our realm, or why there are none."""
        foreign = False
        for value in values:
            parsed = parse_credentials(value)
            if not isinstance(parsed, DigestCredentials):
                continue  # Basic and unknown schemes are never accepted (RFC 3261 22)
            if parsed.realm == self._config.realm:
                return parsed
            foreign = True
        return AuthFailure.REALM_MISMATCH if foreign else AuthFailure.NO_CREDENTIALS

    def _digest_matches(
        self, found: DigestCredentials, algorithm: DigestAlgorithm, method: str, body: bytes
    ) -> bool:
        """Compare the response in constant time; an unknown user compares against junk."""
        stored = self._ha1_lookup(found.username, self._config.realm, algorithm)
        ha1 = "0" * algorithm.hex_length if stored is None else check_ha1(stored, algorithm)
        expected = compute_response(
            algorithm=algorithm,
            ha1=ha1,
            nonce=found.nonce,
            method=method,
            uri=found.uri,
            qop=found.qop,
            nc=found.nc,
            cnonce=found.cnonce,
            body=body,
        )
        given = found.response.lower().encode("utf-8", "surrogatepass")
        return hmac.compare_digest(expected.encode(), given) and stored is not None

    def _judge_freshness(
        self, found: DigestCredentials, algorithm: DigestAlgorithm, issued_ms: int, now: float
    ) -> AuthOutcome:
        """Age and nonce count of a nonce whose digest was right."""
        age_ms = _to_ms(now) - issued_ms
        if age_ms < 0 or age_ms > self._config.nonce_lifetime * 1000:
            return self._stale(now)
        verdict = self._window.admit(found.nonce, issued_ms, found.nonce_count or 0)
        if verdict is AuthFailure.REPLAYED:
            return AuthRejected(reason=AuthFailure.REPLAYED, status_code=403)
        if verdict is AuthFailure.NONCE_STALE:
            return self._stale(now)
        return AuthAccepted(username=found.username, realm=found.realm, algorithm=algorithm)

    def _challenge_needed(self, reason: AuthFailure, now: float) -> AuthChallengeNeeded:
        return AuthChallengeNeeded(
            reason=reason, status_code=self.challenge_status, headers=self.challenge(now=now)
        )

    def _stale(self, now: float, reason: AuthFailure = AuthFailure.NONCE_STALE) -> AuthStale:
        return AuthStale(
            reason=reason,
            status_code=self.challenge_status,
            headers=self.challenge(now=now, stale=True),
        )

    # --- nonces -------------------------------------------------------------------------

    def _issue_nonce(self, now: float) -> str:
        random = self._random_bytes(_NONCE_RANDOM_BYTES)
        if len(random) != _NONCE_RANDOM_BYTES:
            raise LocalProtocolError("the random source returned the wrong number of bytes")
        payload = _to_ms(now).to_bytes(8, "big", signed=True) + random
        return base64.urlsafe_b64encode(payload + self._nonce_mac(payload)).decode("ascii")

    def _nonce_issued_ms(self, nonce: str) -> int | None:
        """The issue time of a nonce we made, or None for anything else."""
        if not _NONCE_TEXT.fullmatch(nonce):
            return None
        raw = base64.urlsafe_b64decode(nonce)
        payload, mac = raw[:-_NONCE_MAC_BYTES], raw[-_NONCE_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._nonce_mac(payload)):
            return None
        return int.from_bytes(payload[:8], "big", signed=True)

    def _nonce_mac(self, payload: bytes) -> bytes:
        realm = self._config.realm.encode("utf-8", "surrogatepass")
        message = _NONCE_MAC_CONTEXT + realm + b"\x00" + payload
        return hmac.digest(self._config.secret, message, "sha256")[:_NONCE_MAC_BYTES]


def _to_ms(now: float) -> int:
    return int(now * 1000)


class _ReplayWindow:
    """Highest nonce count accepted per nonce, for the most recently used nonces.

    When a nonce is evicted, ``_evicted_ms`` remembers the newest issue time evicted: a
    nonce we no longer know that is not younger than that may have been evicted, so it
    is declared stale rather than trusted with any nonce count.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[int, int]] = OrderedDict()  # nonce -> (ms, nc)
        self._evicted_ms: int | None = None

    def admit(self, nonce: str, issued_ms: int, nc: int) -> AuthFailure | None:
        """Record ``nc`` for ``nonce`` if it is new and larger; else say why not."""
        entry = self._entries.get(nonce)
        if entry is not None:
            if nc <= entry[1]:
                return AuthFailure.REPLAYED
        elif self._evicted_ms is not None and issued_ms <= self._evicted_ms:
            return AuthFailure.NONCE_STALE
        self._entries[nonce] = (issued_ms, nc)
        self._entries.move_to_end(nonce)
        while len(self._entries) > self._capacity:
            _nonce, (evicted_ms, _nc) = self._entries.popitem(last=False)
            if self._evicted_ms is None or evicted_ms > self._evicted_ms:
                self._evicted_ms = evicted_ms
        return None
