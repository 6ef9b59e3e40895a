"""The client side of SIP digest authentication (RFC 3261 22.2 and 22.3, RFC 8760).

Theory of operation: :class:`DigestClient` answers a 401/407 for one
:class:`DigestAccount`. Per realm it picks the strongest challenge it supports
(SHA-512-256, SHA-256, then MD5), whatever order the server listed them in, so reordering
the challenges cannot downgrade us to MD5. It counts requests per nonce
(:class:`NonceCounter`), re-answers a ``stale=true`` challenge without asking anyone, and
raises :class:`AuthError` when nothing can be answered or when credentials it already sent
for a realm were refused (RFC 3261 22.1: never retry rejected credentials). The cnonce
source is injected; the password and HA1s never leave this object except hashed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .auth_header import (
    DigestChallenge,
    DigestCredentials,
    UnknownAuthScheme,
    parse_challenge,
    parse_credentials,
)
from .digest import DigestAlgorithm, check_ha1, compute_ha1, compute_response
from .errors import LocalProtocolError, RemoteProtocolError

__all__ = ["CLIENT_PREFERENCE", "AuthError", "DigestAccount", "DigestClient", "NonceCounter"]

#: The client's default preference, strongest first.
CLIENT_PREFERENCE: tuple[DigestAlgorithm, ...] = tuple(
    algorithm
    for algorithm in (
        DigestAlgorithm.SHA_512_256,
        DigestAlgorithm.SHA_512_256_SESS,
        DigestAlgorithm.SHA_256,
        DigestAlgorithm.SHA_256_SESS,
        DigestAlgorithm.MD5,
        DigestAlgorithm.MD5_SESS,
    )
    if DigestAlgorithm.from_token(algorithm.value) is not None
)

_CREDENTIALS_HEADER = {401: "Authorization", 407: "Proxy-Authorization"}


class AuthError(LocalProtocolError):
    """We cannot authenticate: no challenge we can answer, or our credentials were refused.

    Attributes:
        realm: the realm concerned, when one is known.
    """

    def __init__(self, message: str, *, realm: str | None = None) -> None:
        super().__init__(message)
        self.realm = realm


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestAccount:
    """What a client knows about itself: a user name and a password or stored HA1s.

    Attributes:
        username: the user name to send.
        password: the password, or None when ``ha1`` is given. Never shown.
        ha1: stored HA1 per base algorithm, for ``realm`` only. Never shown.
        realm: when set, only challenges of this realm are answered (required with
            ``ha1``, advisable always: it stops a stranger's challenge from collecting an
            answer for offline guessing).
    """

    username: str
    password: str | None = field(default=None, repr=False)
    ha1: Mapping[DigestAlgorithm, str] = field(default_factory=dict, repr=False)
    realm: str | None = None

    def __post_init__(self) -> None:
        if self.password is None and not self.ha1:
            raise LocalProtocolError("a digest account needs a password or an HA1")
        if self.ha1 and self.realm is None:
            raise LocalProtocolError("a stored HA1 belongs to one realm: set realm")
        for algorithm, value in self.ha1.items():
            check_ha1(value, algorithm)

    def ha1_for(self, realm: str, algorithm: DigestAlgorithm) -> str | None:
        """The HA1 to use for ``realm`` and ``algorithm``, or None if we have none."""
        if self.realm is not None and realm != self.realm:
            return None
        if self.password is not None:
            return compute_ha1(self.username, realm, self.password, algorithm)
        stored = self.ha1.get(algorithm.base)
        return None if stored is None else stored.lower()


class NonceCounter:
    """The ``nc`` of each server nonce: 1 for its first use, then 2, 3 ...

    Keeps the ``max_nonces`` most recently used nonces.
    """

    def __init__(self, max_nonces: int = 64) -> None:
        self._max = max_nonces
        self._counts: OrderedDict[str, int] = OrderedDict()

    def next(self, nonce: str) -> int:
        """Count one more request for ``nonce`` and return its nonce count."""
        count = self._counts.pop(nonce, 0) + 1
        if count > 0xFFFFFFFF:
            raise LocalProtocolError("nonce count exhausted")
        self._counts[nonce] = count
        while len(self._counts) > self._max:
            self._counts.popitem(last=False)
        return count


class DigestClient:
    """Answers Digest challenges for one account (the UAC side of RFC 3261 22.2 and 22.3).

    Call :meth:`answer` with every 401/407 and add the returned header fields to the
    re-sent request (with a new CSeq). Later requests may carry credentials up front with
    :meth:`authorize`, which reuses the last challenge of each realm with the next nc.
    """

    def __init__(
        self,
        account: DigestAccount,
        *,
        cnonce_source: Callable[[], str],
        algorithms: Sequence[DigestAlgorithm] = CLIENT_PREFERENCE,
        counter: NonceCounter | None = None,
    ) -> None:
        """Create a client.

        Args:
            account: who we are.
            cnonce_source: returns a fresh unpredictable cnonce (e.g. 16 random bytes in
                hex); called once per credentials value with qop.
            algorithms: the algorithms we accept, most preferred first.
            counter: the per-nonce request counter (a fresh one by default).
        """
        self._account = account
        self._cnonce_source = cnonce_source
        self._preference = tuple(algorithms)
        self._counter = counter if counter is not None else NonceCounter()
        self._cached: dict[tuple[str, str], DigestChallenge] = {}

    def __repr__(self) -> str:
        realms = sorted({realm for _header, realm in self._cached})
        return f"DigestClient(username={self._account.username!r}, realms={realms!r})"

    def forget(self) -> None:
        """Drop the challenges kept for :meth:`authorize`.

        RFC 3261 22.3: proxy credentials are not cached across dialogs.
        """
        self._cached.clear()

    def answer(
        self,
        status_code: int,
        challenges: Sequence[str],
        *,
        method: str,
        uri: str,
        body: bytes = b"",
        sent: Sequence[str] = (),
    ) -> list[tuple[str, str]]:
        """Answer a 401 or 407: one credentials field per challenged realm.

        Args:
            status_code: 401 (answers go in Authorization) or 407 (Proxy-Authorization).
            challenges: every WWW-Authenticate / Proxy-Authenticate value of the response.
            method: the method of the request to re-send.
            uri: its Request-URI (the digest-uri).
            body: its body (hashed only for ``auth-int``).
            sent: the Authorization and Proxy-Authorization values of the request that
                was challenged; a realm answered there and challenged again without
                ``stale=true`` means our credentials were refused.

        Returns:
            ``(header name, value)`` pairs to add to the re-sent request.

        Raises:
            AuthError: no challenge we can answer (unknown schemes or algorithms only,
                unusable qop, foreign realm), or our credentials for a realm were refused.
            RemoteProtocolError: (400) every challenge value was malformed.
            LocalProtocolError: ``status_code`` is neither 401 nor 407.
        """
        header = _CREDENTIALS_HEADER.get(status_code)
        if header is None:
            raise LocalProtocolError("only a 401 or 407 carries challenges")
        chosen = self._choose(challenges)
        previous = _nonces_sent(sent)
        items = []
        for realm, challenge in chosen.items():
            if realm in previous:
                if not challenge.stale:
                    raise AuthError(f"credentials for realm {realm!r} were refused", realm=realm)
                if challenge.nonce in previous[realm]:
                    raise AuthError(f"realm {realm!r} calls its own new nonce stale", realm=realm)
            self._cached[(header, realm)] = challenge
            items.append((header, str(self._credentials(challenge, method, uri, body))))
        return items

    def authorize(self, *, method: str, uri: str, body: bytes = b"") -> list[tuple[str, str]]:
        """Credentials for a new request from the challenges seen so far (may be empty).

        Args:
            method: the request method.
            uri: the Request-URI.
            body: the body (hashed only for ``auth-int``).

        Returns:
            ``(header name, value)`` pairs to add to the request.
        """
        return [
            (header, str(self._credentials(challenge, method, uri, body)))
            for (header, _realm), challenge in self._cached.items()
        ]

    def _choose(self, values: Sequence[str]) -> dict[str, DigestChallenge]:
        """The best challenge we can answer per realm, in order of first appearance."""
        best: dict[str, tuple[int, DigestChallenge]] = {}
        error: RemoteProtocolError | None = None
        parsed = 0
        for value in values:
            try:
                challenge = parse_challenge(value)
            except RemoteProtocolError as exc:
                error = error or exc
                continue
            parsed += 1
            rank = self._rank(challenge)
            if rank is None or not isinstance(challenge, DigestChallenge):
                continue
            if challenge.realm not in best or rank < best[challenge.realm][0]:
                best[challenge.realm] = (rank, challenge)
        if not best and error is not None and parsed == 0:
            raise error
        if not best:
            raise AuthError("no Digest challenge with an algorithm, qop and realm we support")
        return {realm: challenge for realm, (_rank, challenge) in best.items()}

    def _rank(self, challenge: DigestChallenge | UnknownAuthScheme) -> int | None:
        """Our preference for ``challenge`` (lower is better), None if we cannot answer."""
        if not isinstance(challenge, DigestChallenge):
            return None
        algorithm = DigestAlgorithm.from_token(challenge.algorithm)
        if algorithm is None or algorithm not in self._preference:
            return None
        qop = _choose_qop(challenge.qop)
        if qop is None and (challenge.qop is not None or algorithm.is_session):
            return None
        if self._account.ha1_for(challenge.realm, algorithm) is None:
            return None
        return self._preference.index(algorithm)

    def _credentials(
        self, challenge: DigestChallenge, method: str, uri: str, body: bytes
    ) -> DigestCredentials:
        algorithm = DigestAlgorithm.from_token(challenge.algorithm)
        ha1 = self._account.ha1_for(challenge.realm, algorithm) if algorithm else None
        if algorithm is None or ha1 is None:
            raise AuthError("cannot answer this challenge", realm=challenge.realm)
        qop = _choose_qop(challenge.qop)
        nc = cnonce = None
        if qop is not None:
            cnonce = self._cnonce_source()
            if not cnonce:
                raise LocalProtocolError("the cnonce source returned an empty cnonce")
            nc = f"{self._counter.next(challenge.nonce):08x}"
        response = compute_response(
            algorithm=algorithm,
            ha1=ha1,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        return DigestCredentials(
            username=self._account.username,
            realm=challenge.realm,
            nonce=challenge.nonce,
            uri=uri,
            response=response,
            algorithm=challenge.algorithm,
            cnonce=cnonce,
            opaque=challenge.opaque,
            qop=qop,
            nc=nc,
        )


def _choose_qop(options: tuple[str, ...] | None) -> str | None:
    """``auth`` when offered, else ``auth-int``; None without options or with neither."""
    lowered = {option.lower() for option in options or ()}
    for qop in ("auth", "auth-int"):
        if qop in lowered:
            return qop
    return None


def _nonces_sent(values: Sequence[str]) -> dict[str, set[str]]:
    """Realm -> nonces of the Digest credentials we sent (unparsable values ignored)."""
    sent: dict[str, set[str]] = {}
    for value in values:
        try:
            credentials = parse_credentials(value)
        except RemoteProtocolError:
            continue
        if isinstance(credentials, DigestCredentials):
            sent.setdefault(credentials.realm, set()).add(credentials.nonce)
    return sent
