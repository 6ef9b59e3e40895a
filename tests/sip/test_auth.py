"""SIP digest authentication: RFC vectors, client <-> server in memory, failures, secrets."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.sip.auth import (
    AuthAccepted,
    AuthChallengeNeeded,
    AuthDenied,
    AuthError,
    AuthFailure,
    AuthOutcome,
    AuthRejected,
    AuthStale,
    DigestAccount,
    DigestAlgorithm,
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    DigestServer,
    DigestServerConfig,
    NonceCounter,
    compute_ha1,
    compute_response,
    parse_challenge,
    parse_credentials,
)
from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError, SipError

# RFC 7616 section 3.9.1 (reused by RFC 8760): the same request, MD5 and SHA-256.
MUFASA = "Mufasa"
LIFE = "Circle of Life"
HTTP_REALM = "http-auth@example.org"
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"

REALM = "pstn.example.net"
SECRET = b"server-secret-0123456789abcdef!!"
PASSWORD = "correct horse battery staple"
URI = "sip:+441632960123@pstn.example.net"


# --- fixtures and helpers ---------------------------------------------------------------


def _cnonces(prefix: str = "cn") -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):04d}"


def _random_bytes() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


class Users:
    """An HA1 store as ``pstn-bridge user add`` will fill it: MD5 and SHA-256 per user."""

    def __init__(self, passwords: dict[str, str], realm: str = REALM) -> None:
        self.ha1 = {
            (user, realm, algorithm): compute_ha1(user, realm, password, algorithm)
            for user, password in passwords.items()
            for algorithm in (DigestAlgorithm.MD5, DigestAlgorithm.SHA_256)
        }
        self.lookups: list[tuple[str, str, DigestAlgorithm]] = []

    def __call__(self, username: str, realm: str, algorithm: DigestAlgorithm) -> str | None:
        self.lookups.append((username, realm, algorithm))
        return self.ha1.get((username, realm, algorithm))


def _server(**overrides: object) -> DigestServer:
    config = DigestServerConfig(**{"realm": REALM, "secret": SECRET, **overrides})  # type: ignore[arg-type]
    return DigestServer(config, ha1_lookup=Users({"alice": PASSWORD}), random_bytes=_random_bytes())


def _client(password: str = PASSWORD, **kwargs: object) -> DigestClient:
    account = DigestAccount(username="alice", password=password)
    return DigestClient(account, cnonce_source=_cnonces(), **kwargs)  # type: ignore[arg-type]


def _values(items: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[str]:
    return [value for _name, value in items]


def _first_exchange(
    server: DigestServer, client: DigestClient, *, now: float = 1000.0, method: str = "REGISTER"
) -> tuple[list[tuple[str, str]], AuthOutcome]:
    """Request without credentials -> challenge -> answer -> verdict."""
    first = server.verify([], method=method, uri=URI, now=now)
    assert isinstance(first, AuthChallengeNeeded)
    answer = client.answer(first.status_code, _values(first.headers), method=method, uri=URI)
    return answer, server.verify(_values(answer), method=method, uri=URI, now=now + 0.5)


def _field(header_value: str, name: str) -> str | None:
    parsed = parse_credentials(header_value)
    assert isinstance(parsed, DigestCredentials)
    return getattr(parsed, name)  # type: ignore[no-any-return]


# --- RFC vectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [(DigestAlgorithm.MD5, RFC7616_MD5), (DigestAlgorithm.SHA_256, RFC7616_SHA256)],
)
def test_rfc7616_vectors_compute(algorithm: DigestAlgorithm, expected: str) -> None:
    ha1 = compute_ha1(MUFASA, HTTP_REALM, LIFE, algorithm)
    response = compute_response(
        algorithm=algorithm,
        ha1=ha1,
        nonce=RFC7616_NONCE,
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
    )
    assert response == expected


@pytest.mark.parametrize(
    ("algorithm", "expected"), [("MD5", RFC7616_MD5), ("SHA-256", RFC7616_SHA256)]
)
def test_rfc7616_vectors_through_the_client(algorithm: str, expected: str) -> None:
    challenge = (
        f'Digest realm="{HTTP_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    client = DigestClient(
        DigestAccount(username=MUFASA, password=LIFE), cnonce_source=lambda: RFC7616_CNONCE
    )
    [(name, value)] = client.answer(401, [challenge], method="GET", uri="/dir/index.html")
    assert name == "Authorization"
    # RFC 7616 3.9.1 prints this header; ours lists the same directives in another order.
    assert parse_credentials(value) == DigestCredentials(
        username=MUFASA,
        realm=HTTP_REALM,
        uri="/dir/index.html",
        algorithm=algorithm,
        nonce=RFC7616_NONCE,
        nc="00000001",
        cnonce=RFC7616_CNONCE,
        qop="auth",
        response=expected,
        opaque=RFC7616_OPAQUE,
    )


def test_rfc2617_md5_with_qop_vector() -> None:
    # RFC 2617 section 3.5 (its SIP twin is the RFC 3261 22.2 example).
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    client = DigestClient(
        DigestAccount(username=MUFASA, password="Circle Of Life"), cnonce_source=lambda: "0a4f113b"
    )
    [(_name, value)] = client.answer(401, [challenge], method="GET", uri="/dir/index.html")
    assert _field(value, "response") == "6629fae49393a05397450978507c4ef1"
    assert _field(value, "algorithm") is None  # absent in the challenge, absent in the answer


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_rfc2069_compatibility_without_qop() -> None:
    challenge = 'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"'
    client = DigestClient(
        DigestAccount(username=MUFASA, password="Circle Of Life"), cnonce_source=_cnonces()
    )
    [(_name, value)] = client.answer(401, [challenge], method="GET", uri="/dir/index.html")
    ha1 = _md5("Mufasa:testrealm@host.com:Circle Of Life")
    expected = _md5(f"{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{_md5('GET:/dir/index.html')}")
    assert _field(value, "response") == expected
    assert _field(value, "nc") is None
    assert _field(value, "cnonce") is None


def test_sha512_256_auth_int_and_sess_match_an_independent_computation() -> None:
    def h(text: str | bytes) -> str:
        data = text.encode() if isinstance(text, str) else text
        return hashlib.new("sha512_256", data).hexdigest()

    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    ha1 = h("Mufasa:r:pw")
    assert compute_ha1("Mufasa", "r", "pw", "SHA-512-256") == ha1
    session_ha1 = h(f"{ha1}:N:C")
    ha2 = h(f"INVITE:sip:x:{h(body)}")
    expected = h(f"{session_ha1}:N:00000002:C:auth-int:{ha2}")
    got = compute_response(
        algorithm=DigestAlgorithm.SHA_512_256_SESS,
        ha1=ha1,
        nonce="N",
        method="INVITE",
        uri="sip:x",
        qop="auth-int",
        nc="00000002",
        cnonce="C",
        body=body,
    )
    assert got == expected


def test_auth_int_empty_body_hashes_the_empty_string() -> None:
    # RFC 3261 22.4 item 7: H(entity-body) of no body is MD5("").
    ha1 = compute_ha1("u", "r", "p", DigestAlgorithm.MD5)
    ha2 = _md5("OPTIONS:sip:x:d41d8cd98f00b204e9800998ecf8427e")
    expected = _md5(f"{ha1}:n:00000001:c:auth-int:{ha2}")
    got = compute_response(
        algorithm=DigestAlgorithm.MD5,
        ha1=ha1,
        nonce="n",
        method="OPTIONS",
        uri="sip:x",
        qop="auth-int",
        nc="00000001",
        cnonce="c",
    )
    assert got == expected


def test_compute_ha1_accepts_tokens_and_refuses_unknown_algorithms() -> None:
    assert compute_ha1("u", "r", "p", "md5") == _md5("u:r:p")
    assert compute_ha1("u", "r", "p", "MD5-sess") == _md5("u:r:p")
    with pytest.raises(LocalProtocolError):
        compute_ha1("u", "r", "p", "SHA-1")


def test_algorithm_tokens() -> None:
    assert DigestAlgorithm.from_token(None) is DigestAlgorithm.MD5
    assert DigestAlgorithm.from_token("sha-256") is DigestAlgorithm.SHA_256
    assert DigestAlgorithm.from_token("SHA-512-256-SESS") is DigestAlgorithm.SHA_512_256_SESS
    assert DigestAlgorithm.from_token("AKAv1-MD5") is None
    assert DigestAlgorithm.SHA_256_SESS.base is DigestAlgorithm.SHA_256


# --- client ----------------------------------------------------------------------------------


def _challenge(
    algorithm: str | None, *, realm: str = REALM, nonce: str = "n1", **kw: object
) -> str:
    return str(DigestChallenge(realm=realm, nonce=nonce, algorithm=algorithm, qop=("auth",), **kw))  # type: ignore[arg-type]


def test_client_prefers_sha256_whatever_the_order() -> None:
    for order in (["MD5", "SHA-256"], ["SHA-256", "MD5"]):
        [(_n, value)] = _client().answer(
            401, [_challenge(a) for a in order], method="INVITE", uri=URI
        )
        assert _field(value, "algorithm") == "SHA-256"


def test_client_prefers_sha512_256_then_honours_its_own_list() -> None:
    challenges = [_challenge("MD5"), _challenge("SHA-256"), _challenge("SHA-512-256")]
    [(_n, value)] = _client().answer(401, challenges, method="INVITE", uri=URI)
    assert _field(value, "algorithm") == "SHA-512-256"
    md5_only = _client(algorithms=(DigestAlgorithm.MD5,))
    [(_n, value)] = md5_only.answer(401, challenges, method="INVITE", uri=URI)
    assert _field(value, "algorithm") == "MD5"


@pytest.mark.parametrize(
    "challenges",
    [
        [],
        [_challenge("AKAv1-MD5")],
        [_challenge("SHA-1"), _challenge("AKAv2-SHA-256")],
        ["NoOneKnowsThisScheme opaque-data=here"],
        ['Basic realm="pstn.example.net"'],
        [str(DigestChallenge(realm=REALM, nonce="n", qop=("auth-conf",)))],
        [str(DigestChallenge(realm=REALM, nonce="n", algorithm="MD5-sess"))],  # sess, no qop
    ],
)
def test_client_refuses_what_it_cannot_answer(challenges: list[str]) -> None:
    with pytest.raises(AuthError) as caught:
        _client().answer(401, challenges, method="INVITE", uri=URI)
    assert isinstance(caught.value, LocalProtocolError)
    assert PASSWORD not in str(caught.value)


def test_client_uses_auth_int_when_only_it_is_offered() -> None:
    challenge = str(DigestChallenge(realm=REALM, nonce="n", algorithm="MD5", qop=("auth-int",)))
    [(_n, value)] = _client().answer(401, [challenge], method="INVITE", uri=URI, body=b"sdp")
    assert _field(value, "qop") == "auth-int"


def test_client_skips_malformed_challenges_but_not_all_of_them() -> None:
    good = _challenge("SHA-256")
    [(_n, value)] = _client().answer(401, ['Digest realm="x', good], method="INVITE", uri=URI)
    assert _field(value, "realm") == REALM
    with pytest.raises(RemoteProtocolError):
        _client().answer(401, ['Digest realm="x', "Digest"], method="INVITE", uri=URI)


def test_client_proxy_challenge_and_bad_status() -> None:
    [(name, _value)] = _client().answer(407, [_challenge("MD5")], method="INVITE", uri=URI)
    assert name == "Proxy-Authorization"
    with pytest.raises(LocalProtocolError):
        _client().answer(403, [_challenge("MD5")], method="INVITE", uri=URI)


def test_client_answers_every_realm_but_only_its_own_when_pinned() -> None:
    challenges = [_challenge("MD5", realm="a.example"), _challenge("MD5", realm="b.example")]
    items = _client().answer(401, challenges, method="INVITE", uri=URI)
    assert [_field(value, "realm") for _n, value in items] == ["a.example", "b.example"]
    pinned = DigestClient(
        DigestAccount(username="alice", password=PASSWORD, realm="b.example"),
        cnonce_source=_cnonces(),
    )
    items = pinned.answer(401, challenges, method="INVITE", uri=URI)
    assert [_field(value, "realm") for _n, value in items] == ["b.example"]
    with pytest.raises(AuthError):
        pinned.answer(401, [_challenge("MD5", realm="evil.example")], method="INVITE", uri=URI)


def test_client_with_stored_ha1_only() -> None:
    ha1 = compute_ha1("alice", REALM, PASSWORD, DigestAlgorithm.MD5)
    account = DigestAccount(username="alice", ha1={DigestAlgorithm.MD5: ha1.upper()}, realm=REALM)
    client = DigestClient(account, cnonce_source=_cnonces())
    challenges = [_challenge("SHA-256"), _challenge("MD5")]  # no SHA-256 HA1: MD5 it is
    [(_n, answer)] = client.answer(401, challenges, method="INVITE", uri=URI)
    assert _field(answer, "algorithm") == "MD5"
    _answer, outcome = _first_exchange(_server(), client)
    assert outcome == AuthAccepted(username="alice", realm=REALM, algorithm=DigestAlgorithm.MD5)
    assert ha1 not in repr(account)
    assert ha1.upper() not in repr(account)


def test_account_validation_never_echoes_secrets() -> None:
    with pytest.raises(LocalProtocolError):
        DigestAccount(username="alice")
    with pytest.raises(LocalProtocolError):
        DigestAccount(username="alice", ha1={DigestAlgorithm.MD5: "0" * 32})  # no realm
    with pytest.raises(LocalProtocolError) as caught:
        DigestAccount(username="alice", ha1={DigestAlgorithm.MD5: PASSWORD}, realm=REALM)
    assert PASSWORD not in str(caught.value)


def test_client_ignores_sent_values_it_cannot_read() -> None:
    sent = ['Digest realm="x', "Basic QWxhZGRpbjpvcGVu", "NoOneKnowsThisScheme opaque-data=here"]
    items = _client().answer(401, [_challenge("MD5")], method="INVITE", uri=URI, sent=sent)
    assert len(items) == 1


def test_client_refuses_an_empty_cnonce() -> None:
    client = DigestClient(DigestAccount(username="alice", password=PASSWORD), cnonce_source=str)
    with pytest.raises(LocalProtocolError):
        client.answer(401, [_challenge("MD5")], method="INVITE", uri=URI)


def test_nonce_counter_counts_per_nonce_and_forgets_the_oldest() -> None:
    counter = NonceCounter(max_nonces=2)
    assert [counter.next("a"), counter.next("a"), counter.next("b"), counter.next("a")] == [
        1,
        2,
        1,
        3,
    ]
    counter.next("c")  # evicts "b", the least recently used
    assert counter.next("a") == 4
    assert counter.next("b") == 1


def test_authorize_reuses_the_last_challenge_with_the_next_nc() -> None:
    client = _client()
    assert client.authorize(method="INVITE", uri=URI) == []
    client.answer(401, [_challenge("SHA-256")], method="REGISTER", uri=URI)
    [(name, value)] = client.authorize(method="INVITE", uri=URI)
    assert name == "Authorization"
    assert _field(value, "nc") == "00000002"
    assert _field(value, "cnonce") == "cn0002"
    assert repr(client) == f"DigestClient(username='alice', realms={[REALM]!r})"
    client.forget()
    assert client.authorize(method="INVITE", uri=URI) == []


# --- client <-> server round trips -------------------------------------------------------


def test_round_trip_sha256_then_preemptive_reuse() -> None:
    server, client = _server(), _client()
    _answer, outcome = _first_exchange(server, client)
    assert outcome == AuthAccepted(username="alice", realm=REALM, algorithm=DigestAlgorithm.SHA_256)
    later = client.authorize(method="INVITE", uri=URI)
    assert server.verify(_values(later), method="INVITE", uri=URI, now=1010.0) == AuthAccepted(
        username="alice", realm=REALM, algorithm=DigestAlgorithm.SHA_256
    )


def test_server_challenges_md5_first_for_jssip() -> None:
    server = _server()
    headers = server.challenge(now=1.0)
    assert [name for name, _v in headers] == ["WWW-Authenticate", "WWW-Authenticate"]
    parsed = [parse_challenge(value) for _n, value in headers]
    assert [c.algorithm for c in parsed if isinstance(c, DigestChallenge)] == ["MD5", "SHA-256"]
    assert all(isinstance(c, DigestChallenge) and c.qop == ("auth",) for c in parsed)
    # A JsSIP-like client: MD5 only, answers the first header.
    jssip = _client(algorithms=(DigestAlgorithm.MD5,))
    answer = jssip.answer(401, [headers[0][1]], method="REGISTER", uri=URI)
    outcome = server.verify(_values(answer), method="REGISTER", uri=URI, now=2.0)
    assert outcome == AuthAccepted(username="alice", realm=REALM, algorithm=DigestAlgorithm.MD5)


def test_proxy_mode_round_trip() -> None:
    server, client = _server(proxy=True), _client()
    first = server.verify([], method="INVITE", uri=URI, now=5.0)
    assert isinstance(first, AuthChallengeNeeded)
    assert first.status_code == 407
    assert {name for name, _v in first.headers} == {"Proxy-Authenticate"}
    answer = client.answer(407, _values(first.headers), method="INVITE", uri=URI)
    assert {name for name, _v in answer} == {"Proxy-Authorization"}
    assert server.credentials_header == "Proxy-Authorization"
    assert isinstance(
        server.verify(_values(answer), method="INVITE", uri=URI, now=6.0), AuthAccepted
    )


def test_stale_nonce_flow_re_answers_without_the_user() -> None:
    server, client = _server(nonce_lifetime=60.0), _client()
    _answer, outcome = _first_exchange(server, client, now=1000.0)
    assert isinstance(outcome, AuthAccepted)
    later = client.authorize(method="INVITE", uri=URI)
    stale = server.verify(_values(later), method="INVITE", uri=URI, now=1061.0)
    assert isinstance(stale, AuthStale)
    assert stale.reason is AuthFailure.NONCE_STALE
    assert stale.status_code == 401
    assert all(
        isinstance(c := parse_challenge(v), DigestChallenge) and c.stale
        for v in _values(stale.headers)
    )
    retry = client.answer(
        401, _values(stale.headers), method="INVITE", uri=URI, sent=_values(later)
    )
    assert _field(retry[0][1], "nc") == "00000001"
    assert isinstance(
        server.verify(_values(retry), method="INVITE", uri=URI, now=1062.0), AuthAccepted
    )


def test_stale_is_only_said_to_a_client_that_knows_the_password() -> None:
    server = _server(nonce_lifetime=60.0)
    answer, outcome = _first_exchange(server, _client("wrong"), now=0.0)
    assert isinstance(outcome, AuthRejected)
    late = server.verify(_values(answer), method="REGISTER", uri=URI, now=500.0)
    assert isinstance(late, AuthRejected)
    assert late.reason is AuthFailure.BAD_CREDENTIALS


def test_a_nonce_from_the_future_is_stale() -> None:
    server, client = _server(), _client()
    challenge = server.challenge(now=2000.0)
    answer = client.answer(401, _values(challenge), method="REGISTER", uri=URI)
    assert isinstance(
        server.verify(_values(answer), method="REGISTER", uri=URI, now=1000.0), AuthStale
    )


def test_wrong_password_is_rechallenged_then_the_client_gives_up() -> None:
    server, client = _server(), _client("hunter2")
    answer, outcome = _first_exchange(server, client)
    assert isinstance(outcome, AuthRejected)
    assert outcome.reason is AuthFailure.BAD_CREDENTIALS
    assert outcome.status_code == 401
    assert outcome.headers  # a fresh challenge, stale=false
    with pytest.raises(AuthError) as caught:
        client.answer(
            401, _values(outcome.headers), method="REGISTER", uri=URI, sent=_values(answer)
        )
    assert caught.value.realm == REALM
    assert "hunter2" not in str(caught.value)


def test_unknown_user_looks_like_a_wrong_password() -> None:
    server = _server()
    stranger = DigestClient(
        DigestAccount(username="mallory", password=PASSWORD), cnonce_source=_cnonces()
    )
    _answer, outcome = _first_exchange(server, stranger)
    assert isinstance(outcome, AuthRejected)
    assert outcome.reason is AuthFailure.BAD_CREDENTIALS


def test_client_refuses_a_server_that_calls_its_own_nonce_stale() -> None:
    client = _client()
    sent = client.answer(401, [_challenge("MD5", nonce="same")], method="INVITE", uri=URI)
    again = _challenge("MD5", nonce="same", stale=True)
    with pytest.raises(AuthError):
        client.answer(401, [again], method="INVITE", uri=URI, sent=_values(sent))


def test_replayed_nonce_count_is_rejected() -> None:
    server, client = _server(), _client()
    answer, outcome = _first_exchange(server, client)
    assert isinstance(outcome, AuthAccepted)
    replay = server.verify(_values(answer), method="REGISTER", uri=URI, now=1001.0)
    assert replay == AuthRejected(reason=AuthFailure.REPLAYED, status_code=403)
    third = client.authorize(method="REGISTER", uri=URI)  # nc=2
    fourth = client.authorize(method="REGISTER", uri=URI)  # nc=3
    assert isinstance(
        server.verify(_values(fourth), method="REGISTER", uri=URI, now=1002.0), AuthAccepted
    )
    late = server.verify(_values(third), method="REGISTER", uri=URI, now=1003.0)
    assert isinstance(late, AuthRejected)
    assert late.reason is AuthFailure.REPLAYED


def test_a_forged_response_does_not_burn_the_nonce_count() -> None:
    server, client = _server(), _client()
    first = server.verify([], method="REGISTER", uri=URI, now=1.0)
    assert isinstance(first, AuthDenied)
    [(_n, good)] = client.answer(401, _values(first.headers), method="REGISTER", uri=URI)
    parsed = parse_credentials(good)
    assert isinstance(parsed, DigestCredentials)
    forged = replace(parsed, nc="ffffffff", response="0" * 64)
    assert isinstance(
        server.verify([str(forged)], method="REGISTER", uri=URI, now=2.0), AuthRejected
    )
    assert isinstance(server.verify([good], method="REGISTER", uri=URI, now=3.0), AuthAccepted)


def test_uri_mismatch_is_rejected_unless_disabled() -> None:
    for verify_uri, expected in ((True, AuthRejected), (False, AuthAccepted)):
        server, client = _server(verify_uri=verify_uri), _client()
        first = server.verify([], method="INVITE", uri=URI, now=1.0)
        assert isinstance(first, AuthDenied)
        answer = client.answer(401, _values(first.headers), method="INVITE", uri="sip:other@x")
        outcome = server.verify(_values(answer), method="INVITE", uri=URI, now=2.0)
        assert isinstance(outcome, expected)
        if isinstance(outcome, AuthRejected):
            assert (outcome.reason, outcome.status_code) == (AuthFailure.URI_MISMATCH, 400)


def test_realm_mismatch_and_missing_credentials_get_a_challenge() -> None:
    server = _server()
    other = _server(realm="other.example")
    first = other.verify([], method="INVITE", uri=URI, now=1.0)
    assert isinstance(first, AuthDenied)
    answer = _client().answer(401, _values(first.headers), method="INVITE", uri=URI)
    outcome = server.verify(_values(answer), method="INVITE", uri=URI, now=2.0)
    assert isinstance(outcome, AuthChallengeNeeded)
    assert outcome.reason is AuthFailure.REALM_MISMATCH
    assert outcome.status_code == 401
    assert len(outcome.headers) == 2
    for values in ([], ["NoOneKnowsThisScheme opaque-data=here"], ["Basic QWxhZGRpbjpvcGVu"]):
        outcome = server.verify(values, method="INVITE", uri=URI, now=2.0)
        assert isinstance(outcome, AuthChallengeNeeded)
        assert outcome.reason is AuthFailure.NO_CREDENTIALS


def _answer_with(
    server: DigestServer, nonce_edit: Callable[[str], str], password: str = PASSWORD
) -> AuthOutcome:
    first = server.verify([], method="INVITE", uri=URI, now=1.0)
    assert isinstance(first, AuthDenied)
    challenge = parse_challenge(first.headers[1][1])
    assert isinstance(challenge, DigestChallenge)
    edited = replace(challenge, nonce=nonce_edit(challenge.nonce))
    answer = _client(password).answer(401, [str(edited)], method="INVITE", uri=URI)
    return server.verify(_values(answer), method="INVITE", uri=URI, now=2.0)


_FOREIGN_NONCES: list[Callable[[str], str]] = [
    lambda n: n[:-1] + ("A" if n[-1] != "A" else "B"),  # tampered MAC
    lambda n: ("B" if n[0] != "B" else "C") + n[1:],  # tampered time
    lambda n: n + "A",
    lambda n: "not-our-nonce",
    lambda n: "",
]


@pytest.mark.parametrize("edit", _FOREIGN_NONCES)
def test_nonces_we_did_not_issue_get_a_plain_challenge_with_a_wrong_digest(
    edit: Callable[[str], str],
) -> None:
    outcome = _answer_with(_server(), edit, password="wrong")
    assert isinstance(outcome, AuthChallengeNeeded)
    assert outcome.reason is AuthFailure.NONCE_INVALID
    assert all("stale" not in value for _n, value in outcome.headers)


@pytest.mark.parametrize("edit", _FOREIGN_NONCES)
def test_nonces_we_did_not_issue_are_never_accepted(edit: Callable[[str], str]) -> None:
    # The digest over the foreign nonce is right: the client knows the password, so it
    # gets a stale challenge (a fresh nonce), never an acceptance.
    outcome = _answer_with(_server(), edit)
    assert isinstance(outcome, AuthStale)
    assert outcome.reason is AuthFailure.NONCE_INVALID


def test_nonces_are_bound_to_secret_and_realm() -> None:
    for alien in (_server(secret=b"another-secret-0123456789abcdef!"), _server(realm="x.example")):
        first = alien.verify([], method="INVITE", uri=URI, now=1.0)
        assert isinstance(first, AuthDenied)
        challenge = parse_challenge(first.headers[0][1])
        assert isinstance(challenge, DigestChallenge)
        answer = _client("wrong").answer(
            401, [str(replace(challenge, realm=REALM))], method="INVITE", uri=URI
        )
        outcome = _server().verify(_values(answer), method="INVITE", uri=URI, now=2.0)
        assert isinstance(outcome, AuthChallengeNeeded)
        assert outcome.reason is AuthFailure.NONCE_INVALID


def test_a_new_server_secret_costs_clients_one_stale_round_trip() -> None:
    before, client = _server(secret=b"another-secret-0123456789abcdef!"), _client()
    _answer, outcome = _first_exchange(before, client)
    assert isinstance(outcome, AuthAccepted)
    after = _server()  # restarted with another secret
    cached = client.authorize(method="INVITE", uri=URI)
    stale = after.verify(_values(cached), method="INVITE", uri=URI, now=1100.0)
    assert isinstance(stale, AuthStale)
    retry = client.answer(
        401, _values(stale.headers), method="INVITE", uri=URI, sent=_values(cached)
    )
    outcome = after.verify(_values(retry), method="INVITE", uri=URI, now=1101.0)
    assert isinstance(outcome, AuthAccepted)


def _forged_answer(nonce: str, algorithm: str) -> list[str]:
    """Credentials a client cannot compute (unknown algorithm): the server must not care."""
    credentials = DigestCredentials(
        username="alice",
        realm=REALM,
        nonce=nonce,
        uri=URI,
        response="0" * 32,
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce="c",
    )
    return [str(credentials)]


@pytest.mark.parametrize("algorithm", ["SHA-512-256", "MD5-sess", "AKAv1-MD5"])
def test_algorithm_not_offered(algorithm: str) -> None:
    server = _server()
    challenge = parse_challenge(server.challenge(now=1.0)[0][1])
    assert isinstance(challenge, DigestChallenge)
    if DigestAlgorithm.from_token(algorithm) is None:
        values = _forged_answer(challenge.nonce, algorithm)
    else:
        offered = _challenge(algorithm, nonce=challenge.nonce)
        values = _values(_client().answer(401, [offered], method="INVITE", uri=URI))
    outcome = server.verify(values, method="INVITE", uri=URI, now=2.0)
    assert isinstance(outcome, AuthChallengeNeeded)
    assert outcome.reason is AuthFailure.ALGORITHM_UNSUPPORTED


def test_rfc2069_answers_are_refused() -> None:
    server = _server()
    challenge = parse_challenge(server.challenge(now=1.0)[0][1])
    assert isinstance(challenge, DigestChallenge)
    rfc2069 = str(DigestChallenge(realm=REALM, nonce=challenge.nonce, algorithm="MD5"))
    answer = _client().answer(401, [rfc2069], method="INVITE", uri=URI)
    outcome = server.verify(_values(answer), method="INVITE", uri=URI, now=2.0)
    assert outcome == AuthRejected(reason=AuthFailure.QOP_MISMATCH, status_code=400)


def test_malformed_credentials_raise_400() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        _server().verify(['Digest username="alice", realm="x'], method="INVITE", uri=URI, now=1.0)
    assert caught.value.status_code == 400


def test_replay_window_eviction_makes_forgotten_nonces_stale() -> None:
    server, client = _server(max_tracked_nonces=2), _client()
    answers = []
    for now in (10.0, 20.0, 30.0):
        first = server.verify([], method="REGISTER", uri=URI, now=now)
        assert isinstance(first, AuthDenied)
        answer = client.answer(401, _values(first.headers), method="REGISTER", uri=URI)
        assert isinstance(
            server.verify(_values(answer), method="REGISTER", uri=URI, now=now), AuthAccepted
        )
        answers.append(answer)
    # The first nonce was evicted: its replay cannot be judged, so it is stale, not accepted.
    replay = server.verify(_values(answers[0]), method="REGISTER", uri=URI, now=31.0)
    assert isinstance(replay, AuthStale)
    # Nonces still tracked keep their replay protection; new nonces still work.
    again = server.verify(_values(answers[2]), method="REGISTER", uri=URI, now=31.0)
    assert isinstance(again, AuthRejected)
    _answer, outcome = _first_exchange(server, client, now=40.0)
    assert isinstance(outcome, AuthAccepted)


def test_config_validation() -> None:
    for bad in (
        {"secret": b"short"},
        {"algorithms": ()},
        {"algorithms": (DigestAlgorithm.MD5, DigestAlgorithm.MD5)},
        {"algorithms": (DigestAlgorithm.MD5_SESS,)},
        {"qop": ("auth-conf",)},
        {"qop": ()},
        {"nonce_lifetime": 0},
        {"max_tracked_nonces": 0},
        {"realm": "bad\r\nrealm"},
    ):
        with pytest.raises(LocalProtocolError) as caught:
            DigestServerConfig(**{"realm": REALM, "secret": SECRET, **bad})  # type: ignore[arg-type]
        assert "short" not in str(caught.value)


def test_a_plaintext_password_in_the_store_is_refused_without_echo() -> None:
    config = DigestServerConfig(realm=REALM, secret=SECRET)
    server = DigestServer(config, ha1_lookup=lambda u, r, a: PASSWORD, random_bytes=_random_bytes())
    first = server.verify([], method="INVITE", uri=URI, now=1.0)
    assert isinstance(first, AuthDenied)
    answer = _client().answer(401, _values(first.headers), method="INVITE", uri=URI)
    with pytest.raises(LocalProtocolError) as caught:
        server.verify(_values(answer), method="INVITE", uri=URI, now=2.0)
    assert PASSWORD not in str(caught.value)


def test_bad_random_source_is_refused() -> None:
    config = DigestServerConfig(realm=REALM, secret=SECRET)
    server = DigestServer(config, ha1_lookup=Users({}), random_bytes=lambda n: b"")
    with pytest.raises(LocalProtocolError):
        server.challenge(now=1.0)


# --- secrets stay secret ---------------------------------------------------------------


def _secrets(*extra: str) -> list[str]:
    ha1s = [compute_ha1("alice", REALM, PASSWORD, a) for a in DigestAlgorithm]
    return [PASSWORD, SECRET.decode(), SECRET.hex(), repr(SECRET), *ha1s, *extra]


def test_no_secret_in_any_repr() -> None:
    server, client = _server(), _client()
    answer, outcome = _first_exchange(server, client)
    response = _field(answer[0][1], "response")
    assert response is not None
    wrong_answer, wrong = _first_exchange(_server(), _client("hunter2"))
    objects: list[object] = [
        server,
        client,
        DigestAccount(username="alice", password=PASSWORD),
        DigestAccount(
            username="alice",
            ha1={DigestAlgorithm.MD5: compute_ha1("alice", REALM, PASSWORD, "MD5")},
            realm=REALM,
        ),
        DigestServerConfig(realm=REALM, secret=SECRET),
        parse_credentials(answer[0][1]),
        outcome,
        wrong,
        NonceCounter(),
    ]
    wrong_response = _field(wrong_answer[0][1], "response")
    for obj in objects:
        text = repr(obj)
        for secret in _secrets(response, wrong_response or "", "hunter2"):
            assert secret not in text, (type(obj).__name__, secret)


def test_no_secret_in_any_error() -> None:
    errors: list[SipError] = []
    client = _client()
    server = _server()
    answer, _outcome = _first_exchange(_server(), _client("hunter2"))
    response = _field(answer[0][1], "response") or ""
    attempts: list[Callable[[], object]] = [
        lambda: client.answer(401, [_challenge("MD5")], method="X", uri=URI, sent=_values(answer)),
        lambda: client.answer(401, [_challenge("AKAv1-MD5")], method="X", uri=URI),
        lambda: server.verify([answer[0][1] + ', response="x"'], method="X", uri=URI, now=1.0),
        lambda: DigestServerConfig(realm=REALM, secret=SECRET[:8]),
        lambda: DigestAccount(username="alice", ha1={DigestAlgorithm.MD5: PASSWORD}, realm=REALM),
        lambda: str(
            DigestCredentials(username="u", realm="r", nonce="n", uri="u", response=response + "\n")
        ),
    ]
    for attempt in attempts:
        with pytest.raises(SipError) as caught:
            attempt()
        errors.append(caught.value)
    for error in errors:
        for secret in _secrets(response, "hunter2"):
            assert secret not in str(error)
            assert secret not in repr(error)


# --- Hypothesis ------------------------------------------------------------------------------

_printable = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"), max_size=16
)


@settings(max_examples=200, deadline=None)
@given(
    username=_printable,
    password=st.text(max_size=16),
    algorithm=st.sampled_from(["MD5", "SHA-256"]),
)
def test_round_trip_for_any_user_and_password(username: str, password: str, algorithm: str) -> None:
    chosen = DigestAlgorithm(algorithm)
    store = {(username, REALM, chosen): compute_ha1(username, REALM, password, chosen)}
    server = DigestServer(
        DigestServerConfig(realm=REALM, secret=SECRET, algorithms=(chosen,)),
        ha1_lookup=lambda u, r, a: store.get((u, r, a)),
        random_bytes=_random_bytes(),
    )
    account = DigestAccount(username=username, password=password)
    client = DigestClient(account, cnonce_source=_cnonces())
    _answer, outcome = _first_exchange(server, client)
    assert outcome == AuthAccepted(username=username, realm=REALM, algorithm=chosen)


_PIECES = [
    "Digest ",
    'realm="',
    REALM,
    '"',
    ", ",
    "nonce=",
    "uri=",
    'username="alice"',
    "response=",
    "qop=auth",
    "nc=00000001",
    'cnonce="c"',
    "algorithm=SHA-256",
    "\\",
    "=",
    "\r\n ",
]
_hostile = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(_PIECES), max_size=20).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_hostile, max_size=3))
def test_server_verify_on_hostile_credentials(values: list[str]) -> None:
    try:
        outcome = _server().verify(values, method="INVITE", uri=URI, now=1.0)
    except RemoteProtocolError as exc:
        assert exc.status_code == 400
    else:
        assert isinstance(outcome, AuthDenied)


@settings(max_examples=300, deadline=None)
@given(st.lists(_hostile, max_size=3), st.lists(_hostile, max_size=2))
def test_client_answer_on_hostile_challenges(values: list[str], sent: list[str]) -> None:
    try:
        items = _client().answer(401, values, method="INVITE", uri=URI, sent=sent)
    except (RemoteProtocolError, AuthError):
        pass
    else:
        assert all(name == "Authorization" for name, _v in items)
