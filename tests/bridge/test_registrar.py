"""The registrar, sans-IO: digest through BrowserAuth, bindings, and the brute-force guard."""

from __future__ import annotations

import itertools

import pytest

from bridge.auth import AuthGuard, AuthGuardConfig, BrowserAuth
from bridge.registrar import Registrar
from sip_gateway.sip.auth import (
    DigestAccount,
    DigestAlgorithm,
    DigestClient,
    DigestServer,
    DigestServerConfig,
    compute_ha1,
)
from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.headers import Headers
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.uri import parse_uri

REALM = "pstn-bridge"
PASSWORDS = {"alice": "alice's password", "bob": "bob's password!"}


def _lookup(user: str, realm: str, algorithm: DigestAlgorithm) -> str | None:
    password = PASSWORDS.get(user)
    return None if password is None else compute_ha1(user, realm, password, algorithm)


def _auth(max_failures: int = 3) -> BrowserAuth:
    counter = itertools.count(1)
    return BrowserAuth.for_realm(
        REALM,
        b"s" * 32,
        ha1_lookup=_lookup,
        random_bytes=lambda n: next(counter).to_bytes(n, "big"),
        guard=AuthGuard(AuthGuardConfig(max_failures=max_failures)),
    )


def _register(
    aor: str = "alice", auth: list[tuple[str, str]] | None = None, *, expires: str = "600"
) -> SipRequest:
    headers = Headers()
    headers.add("Via", "SIP/2.0/WSS client.invalid;branch=z9hG4bK7;rport")
    headers.add("From", f"<sip:{aor}@127.0.0.1>;tag=t")
    headers.add("To", f"<sip:{aor}@127.0.0.1>")
    headers.add("Call-ID", "reg")
    headers.add("CSeq", "1 REGISTER")
    headers.add("Contact", "<sip:x@client.invalid;transport=ws>")
    headers.add("Expires", expires)
    for name, value in auth or ():
        headers.add(name, value)
    return SipRequest(method="REGISTER", uri=parse_uri("sip:127.0.0.1"), headers=headers)


def _registered(
    registrar: Registrar,
    *,
    user: str = "alice",
    aor: str = "alice",
    password: str | None = None,
    peer: str = "192.0.2.1:50000",
    now: float = 100.0,
    expires: str = "600",
) -> SipResponse:
    client = DigestClient(
        DigestAccount(username=user, password=password or PASSWORDS.get(user, "x" * 10)),
        cnonce_source=lambda: "c0ffee",
    )
    challenge = registrar.handle_register(_register(aor, expires=expires), now=now, peer=peer)
    assert challenge.status_code == 401
    answer = client.answer(
        401, challenge.headers.get_all("WWW-Authenticate"), method="REGISTER", uri="sip:127.0.0.1"
    )
    return registrar.handle_register(_register(aor, answer, expires=expires), now=now, peer=peer)


def test_register_binds_and_echoes_the_contact() -> None:
    registrar = Registrar(_auth())
    ok = _registered(registrar)
    assert ok.status_code == 200
    assert [(str(c.uri), c.param("expires")) for c in ok.contacts] == [
        ("sip:x@client.invalid;transport=ws", "600")
    ]
    [binding] = registrar.bindings("alice", 101.0)
    assert binding.expires_at == 700.0
    assert registrar.bindings("alice", 700.0) == []


def test_a_user_may_only_register_its_own_address() -> None:
    refused = _registered(Registrar(_auth()), user="bob", aor="alice")
    assert refused.status_code == 403


def test_too_brief_and_malformed_expiry() -> None:
    registrar = Registrar(_auth())
    brief = _registered(registrar, expires="30")
    assert brief.status_code == 423 and brief.headers.get("Min-Expires") == "60"
    with pytest.raises(RemoteProtocolError):
        _registered(registrar, expires="soon", now=200.0)


def test_a_source_that_keeps_guessing_is_blocked_by_ip_whatever_its_port() -> None:
    registrar = Registrar(_auth(max_failures=2))
    for port in (50000, 50001):
        assert (
            _registered(registrar, password="wrong guess", peer=f"192.0.2.9:{port}").status_code
            == 403
        )
    blocked = registrar.handle_register(_register(), now=101.0, peer="192.0.2.9:50002")
    assert blocked.status_code == 403 and blocked.headers.get("WWW-Authenticate") is None
    assert _registered(registrar, peer="[2001:db8::1]:443").status_code == 200


def test_a_bare_digest_server_is_still_accepted() -> None:
    server = DigestServer(
        DigestServerConfig(realm=REALM, secret=b"s" * 32),
        ha1_lookup=_lookup,
        random_bytes=lambda n: b"\x07" * n,
    )
    assert _registered(Registrar(server)).status_code == 200
