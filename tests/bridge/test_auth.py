"""Browser authentication, sans-IO: real digest exchanges, the brute-force guard, blocking."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest

from bridge.auth import AuthGuard, AuthGuardConfig, AuthOk, BrowserAuth, source_key
from sip_gateway.sip.auth import (
    DigestAccount,
    DigestAlgorithm,
    DigestClient,
    DigestCredentials,
    DigestServer,
    DigestServerConfig,
    compute_ha1,
    parse_credentials,
)
from sip_gateway.sip.headers import Headers
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.uri import parse_uri

REALM = "pstn-bridge"
PASSWORD = "correct horse battery staple"
SECRET = b"0123456789abcdef0123456789abcdef"
ALICE_IP = "192.0.2.10"
URIS = {"REGISTER": "sip:127.0.0.1", "INVITE": "sip:+441632960123@127.0.0.1"}


def _lookup(user: str, realm: str, algorithm: DigestAlgorithm) -> str | None:
    if user != "alice" or realm != REALM:
        return None
    return compute_ha1("alice", REALM, PASSWORD, algorithm)


def _random_bytes() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def _auth(**guard: float) -> BrowserAuth:
    config = AuthGuardConfig(**{"max_failures": 3, "window": 60.0, "block_time": 300.0, **guard})  # type: ignore[arg-type]
    return BrowserAuth.for_realm(
        REALM,
        SECRET,
        ha1_lookup=_lookup,
        random_bytes=_random_bytes(),
        guard=AuthGuard(config),
    )


def _request(method: str = "REGISTER", auth: list[tuple[str, str]] | None = None) -> SipRequest:
    headers = Headers()
    headers.add("Via", "SIP/2.0/WSS client.invalid;branch=z9hG4bK1;rport")
    headers.add("Max-Forwards", "70")
    headers.add("From", "<sip:alice@127.0.0.1>;tag=ws-tag")
    headers.add("To", "<sip:alice@127.0.0.1>")
    headers.add("Call-ID", "call-1")
    headers.add("CSeq", f"1 {method}")
    for name, value in auth or ():
        headers.add(name, value)
    return SipRequest(method=method, uri=parse_uri(URIS[method]), headers=headers)


def _client(username: str = "alice", password: str = PASSWORD, **kwargs: object) -> DigestClient:
    account = DigestAccount(username=username, password=password, realm=REALM)
    return DigestClient(account, cnonce_source=lambda: "0a4f113b", **kwargs)  # type: ignore[arg-type]


def _challenge_header(response: SipResponse) -> str:
    return "Proxy-Authenticate" if response.status_code == 407 else "WWW-Authenticate"


def _login(
    auth: BrowserAuth,
    *,
    method: str = "REGISTER",
    client: DigestClient | None = None,
    source: str = ALICE_IP,
    now: float = 1000.0,
) -> AuthOk | SipResponse:
    """Request -> challenge -> answered request -> verdict."""
    challenge = auth.authenticate(_request(method), source=source, now=now)
    assert isinstance(challenge, SipResponse) and challenge.status_code in (401, 407), challenge
    answer = (client or _client()).answer(
        challenge.status_code,
        challenge.headers.get_all(_challenge_header(challenge)),
        method=method,
        uri=URIS[method],
    )
    return auth.authenticate(_request(method, answer), source=source, now=now + 0.1)


# --- challenges and acceptance --------------------------------------------------------------


def test_register_is_challenged_with_401_sha256_first_md5_last_and_accepted() -> None:
    auth = _auth()
    challenge = auth.authenticate(_request(), source=ALICE_IP, now=1000.0)
    assert isinstance(challenge, SipResponse) and challenge.status_code == 401
    values = challenge.headers.get_all("WWW-Authenticate")
    assert len(values) == 2
    assert "algorithm=SHA-256" in values[0] and "algorithm=MD5" in values[1]
    assert challenge.headers.get("Proxy-Authenticate") is None
    assert _login(auth) == AuthOk(username="alice", algorithm=DigestAlgorithm.SHA_256)


def test_a_jssip_like_client_answers_the_last_challenge_with_md5() -> None:
    jssip = _client(algorithms=(DigestAlgorithm.MD5,))
    ok = _login(_auth(), client=jssip)
    assert ok == AuthOk(username="alice", algorithm=DigestAlgorithm.MD5)


def test_invite_is_challenged_with_407_proxy_authenticate() -> None:
    auth = _auth()
    challenge = auth.authenticate(_request("INVITE"), source=ALICE_IP, now=1000.0)
    assert isinstance(challenge, SipResponse) and challenge.status_code == 407
    values = challenge.headers.get_all("Proxy-Authenticate")
    assert "algorithm=SHA-256" in values[0] and "algorithm=MD5" in values[1]
    assert challenge.headers.get("WWW-Authenticate") is None
    assert _login(auth, method="INVITE") == AuthOk(
        username="alice", algorithm=DigestAlgorithm.SHA_256
    )


def test_invite_credentials_in_authorization_are_not_read() -> None:
    auth = _auth()
    first = auth.authenticate(_request(), source=ALICE_IP, now=1000.0)
    assert isinstance(first, SipResponse)
    answer = _client().answer(
        401, first.headers.get_all("WWW-Authenticate"), method="INVITE", uri=URIS["INVITE"]
    )
    assert answer[0][0] == "Authorization"
    verdict = auth.authenticate(_request("INVITE", answer), source=ALICE_IP, now=1000.1)
    assert isinstance(verdict, SipResponse) and verdict.status_code == 407


def test_ack_and_cancel_are_never_challenged() -> None:
    auth = _auth()
    for method in ("ACK", "CANCEL"):
        request = _request("INVITE")
        request.method = method
        with pytest.raises(ValueError, match="never challenged"):
            auth.authenticate(request, source=ALICE_IP, now=1.0)


def test_servers_must_match_their_roles() -> None:
    def server(proxy: bool) -> DigestServer:
        config = DigestServerConfig(realm=REALM, secret=SECRET, proxy=proxy)
        return DigestServer(config, ha1_lookup=_lookup, random_bytes=_random_bytes())

    guard = AuthGuard()
    with pytest.raises(ValueError, match="401"):
        BrowserAuth(server(True), guard=guard)
    with pytest.raises(ValueError, match="407"):
        BrowserAuth(server(False), server(False), guard=guard)
    register_only = BrowserAuth(server(False), guard=guard)
    with pytest.raises(ValueError, match="no proxy digest server"):
        register_only.authenticate(_request("INVITE"), source=ALICE_IP, now=1.0)


# --- failures --------------------------------------------------------------------------------


def _shape(response: AuthOk | SipResponse) -> tuple[int, str, list[str]]:
    assert isinstance(response, SipResponse)
    return response.status_code, response.reason, [name for name, _ in response.headers]


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
def test_unknown_user_looks_exactly_like_a_wrong_password(method: str) -> None:
    wrong = _login(_auth(), method=method, client=_client(password="wrong password"))
    unknown = _login(_auth(), method=method, client=_client(username="mallory"))
    assert (
        _shape(wrong)
        == _shape(unknown)
        == (
            403,
            "Forbidden",
            ["Via", "From", "To", "Call-ID", "CSeq"],
        )
    )


def test_a_wrong_password_is_logged_with_source_and_user_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = _auth()
    challenge = auth.authenticate(_request(), source=ALICE_IP, now=1000.0)
    assert isinstance(challenge, SipResponse)
    answer = _client(password="hunter2hunter2").answer(
        401, challenge.headers.get_all("WWW-Authenticate"), method="REGISTER", uri=URIS["REGISTER"]
    )
    auth.authenticate(_request(auth=answer), source=ALICE_IP, now=1000.1)
    credentials = parse_credentials(answer[0][1])
    assert isinstance(credentials, DigestCredentials)
    assert f"REGISTER from {ALICE_IP} refused: bad-credentials (user 'alice')" in caplog.text
    assert credentials.response not in caplog.text
    assert "hunter2" not in caplog.text


# --- the guard -------------------------------------------------------------------------------


def _fail(auth: BrowserAuth, source: str, now: float, user: str = "alice") -> SipResponse:
    verdict = _login(auth, client=_client(username=user, password="guess"), source=source, now=now)
    assert isinstance(verdict, SipResponse)
    return verdict


def test_blocked_after_max_failures_then_unblocked_after_block_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = _auth(max_failures=3, block_time=300.0)
    for now in (1000.0, 1001.0):
        assert _fail(auth, ALICE_IP, now).status_code == 403
        assert not auth.guard.is_blocked(ALICE_IP, now + 0.5)
    with caplog.at_level(logging.WARNING, logger="bridge.auth"):
        _fail(auth, ALICE_IP, 1002.0, user="bob")
    assert auth.guard.is_blocked(ALICE_IP, 1002.5)
    assert f"authentication from {ALICE_IP} blocked for 300 s" in caplog.text
    assert "(last user 'bob')" in caplog.text
    # blocked: no challenge at all, and even the right password is refused
    blocked = auth.authenticate(_request(), source=ALICE_IP, now=1100.0)
    assert _shape(blocked)[0] == 403 and blocked.headers.get("WWW-Authenticate") is None  # type: ignore[union-attr]
    assert isinstance(
        auth.authenticate(_request("INVITE"), source=ALICE_IP, now=1100.0), SipResponse
    )
    assert auth.guard.blocked_sources(1100.0) == [ALICE_IP]
    assert auth.guard.blocked_sources(1302.1) == []
    assert _login(auth, now=1302.1) == AuthOk(username="alice", algorithm=DigestAlgorithm.SHA_256)


def test_the_window_slides() -> None:
    guard = AuthGuard(AuthGuardConfig(max_failures=3, window=60.0, block_time=10.0))
    assert guard.record_failure(ALICE_IP, 0.0) is False
    assert guard.record_failure(ALICE_IP, 30.0) is False
    assert guard.record_failure(ALICE_IP, 61.0) is False  # the failure at 0 s slid out
    assert not guard.is_blocked(ALICE_IP, 61.5)
    assert guard.record_failure(ALICE_IP, 75.0) is True  # 30, 61, 75: three within 60 s
    assert guard.record_failure(ALICE_IP, 76.0) is False  # already blocked: not extended
    assert guard.is_blocked(ALICE_IP, 84.9) and not guard.is_blocked(ALICE_IP, 85.0)
    assert guard.record_failure(ALICE_IP, 85.0) is False  # the count restarts after a block
    assert guard.record_failure(ALICE_IP, 86.0) is False


def test_the_block_is_per_source_address() -> None:
    auth = _auth(max_failures=2)
    _fail(auth, "198.51.100.7", 1000.0)
    _fail(auth, "198.51.100.7", 1001.0)
    assert auth.guard.is_blocked("198.51.100.7", 1002.0)
    assert _login(auth, source=ALICE_IP, now=1002.0) == AuthOk(
        username="alice", algorithm=DigestAlgorithm.SHA_256
    )
    blocked = auth.authenticate(_request(), source="198.51.100.7", now=1002.0)
    assert isinstance(blocked, SipResponse) and blocked.status_code == 403


def test_source_keys_ignore_ports_and_group_ipv6_by_64() -> None:
    assert source_key("192.0.2.1") == "192.0.2.1"
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert source_key("2001:db8::1") == source_key("[2001:db8::ffff]") == "2001:db8::/64"
    assert source_key("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    assert source_key("not-an-ip") == "not-an-ip"
    guard = AuthGuard(AuthGuardConfig(max_failures=2))
    guard.record_failure("2001:db8::1", 0.0)
    guard.record_failure("2001:db8::2", 1.0)
    assert guard.is_blocked("2001:db8::3", 2.0)
    assert not guard.is_blocked("2001:db8:0:1::3", 2.0)


def test_guesses_with_forged_nonces_count_as_failures() -> None:
    """A forged nonce answers a right password with stale=true: such guesses must count."""
    auth = _auth(max_failures=2)
    forged = DigestCredentials(
        username="alice",
        realm=REALM,
        nonce="forged-nonce",
        uri=URIS["REGISTER"],
        response="0" * 32,
        algorithm="MD5",
        cnonce="c",
        qop="auth",
        nc="00000001",
    )
    request = _request(auth=[("Authorization", str(forged))])
    for now in (1.0, 2.0):
        verdict = auth.authenticate(request, source=ALICE_IP, now=now)
        assert isinstance(verdict, SipResponse) and verdict.status_code == 401
    assert auth.guard.is_blocked(ALICE_IP, 3.0)


def test_a_replayed_answer_is_refused_and_counts() -> None:
    auth = _auth(max_failures=2)
    challenge = auth.authenticate(_request(), source=ALICE_IP, now=1.0)
    assert isinstance(challenge, SipResponse)
    answer = _client().answer(
        401, challenge.headers.get_all("WWW-Authenticate"), method="REGISTER", uri=URIS["REGISTER"]
    )
    assert isinstance(auth.authenticate(_request(auth=answer), source=ALICE_IP, now=2.0), AuthOk)
    replayed = auth.authenticate(_request(auth=answer), source=ALICE_IP, now=3.0)
    assert _shape(replayed)[0] == 403
    assert auth.guard.tracked == 1 and not auth.guard.is_blocked(ALICE_IP, 3.5)


def test_the_guard_remembers_a_bounded_number_of_sources() -> None:
    guard = AuthGuard(AuthGuardConfig(max_failures=2, max_sources=4))
    for index in range(10):
        guard.record_failure(f"192.0.2.{index}", float(index))
    assert guard.tracked == 4
    guard.record_failure("192.0.2.9", 10.0)  # the newest survived eviction: now blocked
    assert guard.is_blocked("192.0.2.9", 10.5)
    guard.record_failure("192.0.2.0", 11.0)  # the oldest was forgotten: counts from 1
    assert not guard.is_blocked("192.0.2.0", 11.5)


@pytest.mark.parametrize(
    "values",
    [{"max_failures": 0}, {"max_sources": 0}, {"window": 0.0}, {"block_time": -1.0}],
)
def test_guard_config_is_validated(values: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        AuthGuardConfig(**values)  # type: ignore[arg-type]
