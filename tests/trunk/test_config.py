"""TrunkConfig validation, E.164 normalisation, inbound matching, caller ID, failure table."""

from __future__ import annotations

from pathlib import Path

import pytest

from sip_gateway.trunk import (
    CallerIdRules,
    CallFailure,
    InvalidNumberError,
    TrunkConfig,
    TrunkRouter,
    classify_status,
    normalize_e164,
    present_caller,
)


def config(**kwargs) -> TrunkConfig:
    return TrunkConfig(name=kwargs.pop("name", "carrier"), host="sbc.example.net", **kwargs)


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("+441632960123", {}, "+441632960123"),
        ("%2B441632960123", {}, "+441632960123"),
        ("+44 (1632) 960-123", {}, "+441632960123"),
        ("00441632960123", {}, "+441632960123"),
        ("01632960123", {"country_code": "44"}, "+441632960123"),
        ("15551230001", {"country_code": "1", "national_prefix": "1"}, "+15551230001"),
        ("5551230001", {"country_code": "1", "national_prefix": ""}, "+15551230001"),
        ("+15551230001;npdi", {}, "+15551230001"),
    ],
)
def test_normalize_e164(text, kwargs, expected):
    assert normalize_e164(text, **kwargs) == expected


@pytest.mark.parametrize(
    "text",
    ["", "alice", "01632960123", "+0441632960123", "+1234567890123456", "+44abc", "+", "\x00+1"],
)
def test_normalize_e164_refuses(text):
    with pytest.raises(InvalidNumberError) as failure:
        normalize_e164(text)
    assert failure.value.status_code == 484


def test_trunk_defaults_and_derived_facts(tmp_path: Path):
    trunk = config(username="acct", password="s3cret", ca_file=tmp_path / "ca.pem")
    assert trunk.port == 5061 and trunk.tls_server_name == "sbc.example.net"
    assert trunk.domain == "sbc.example.net"
    assert "s3cret" not in repr(trunk)
    tls = trunk.tls_client_config()
    assert tls.server_hostname == "sbc.example.net" and tls.ca_file == tmp_path / "ca.pem"
    profile = trunk.media_profile()
    assert [c.name for c in profile.codecs] == ["PCMU", "PCMA"]
    assert profile.crypto_suites[0] == "AEAD_AES_256_GCM"
    account = trunk.digest_account()
    assert account is not None and account.username == "acct"
    assert config().digest_account() is None
    ordered = config(codecs=("PCMA", "PCMU"), crypto_suites=("AES_CM_128_HMAC_SHA1_80",))
    assert [c.name for c in ordered.media_profile().codecs] == ["PCMA", "PCMU"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 0},
        {"codecs": ()},
        {"codecs": ("OPUS",)},
        {"crypto_suites": ("NULL",)},
        {"min_se": 30},
        {"session_expires": 60},
        {"register": True},
        {"username": "u"},
        {"client_certificate": Path("c.pem")},
        {"allowed_sources": ("not-an-address",)},
        {"refresh_method": "OPTIONS"},
        {"country_code": "+44"},
        {"options_interval": 0},
    ],
)
def test_trunk_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        config(**kwargs)


def test_inbound_matching_by_address_and_certificate():
    by_ip = config(name="ip", allowed_sources=("203.0.113.0/28", "2001:db8::1"))
    by_cert = config(name="cert", client_certificate_names=("sbc.example.net",))
    both = config(
        name="both", allowed_sources=("198.51.100.7",), client_certificate_names=("x.test",)
    )
    nothing = config(name="none")
    router = TrunkRouter([nothing, by_ip, by_cert, both])
    none: frozenset[str] = frozenset()
    assert router.match("203.0.113.9", none) is by_ip
    assert router.match("2001:db8::1", none) is by_ip
    assert router.match("203.0.113.16", none) is None
    assert router.match("192.0.2.1", frozenset({"sbc.example.net"})) is by_cert
    assert router.match("198.51.100.7", none) is None  # "both" wants the certificate too
    assert router.match("198.51.100.7", frozenset({"x.test"})) is both
    assert router.match("garbage", none) is None
    assert not nothing.accepts_inbound


def test_caller_id_rules():
    plain = config(country_code="44")
    assert present_caller(plain, "01632960999").from_user == "+441632960999"
    assert present_caller(plain, None).from_user == "anonymous"
    rules = CallerIdRules(
        from_user="acct42",
        default_caller_id="+441632960000",
        allowed_prefixes=("+441632",),
        asserted_identity=True,
    )
    trunk = config(caller_id=rules, country_code="44")
    shown = present_caller(trunk, "+15551230001")  # not ours to present: the default
    assert (shown.from_user, shown.asserted) == ("acct42", "+441632960000")
    assert present_caller(trunk, "+441632960777").asserted == "+441632960777"
    hidden = present_caller(config(caller_id=CallerIdRules(anonymous=True)), "+441632960777")
    assert (hidden.from_user, hidden.from_host, hidden.private) == (
        "anonymous",
        "anonymous.invalid",
        True,
    )
    with pytest.raises(ValueError):
        CallerIdRules(from_user="a b")
    with pytest.raises(ValueError):
        CallerIdRules(allowed_prefixes=("44",))


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (486, CallFailure.BUSY),
        (600, CallFailure.BUSY),
        (408, CallFailure.NO_ANSWER),
        (480, CallFailure.NO_ANSWER),
        (403, CallFailure.REJECTED),
        (603, CallFailure.REJECTED),
        (500, CallFailure.REJECTED),
        (302, CallFailure.REJECTED),
        (404, CallFailure.NOT_FOUND),
        (484, CallFailure.NOT_FOUND),
        (503, CallFailure.UNREACHABLE),
        (488, CallFailure.ENCRYPTION_REFUSED),
        (606, CallFailure.ENCRYPTION_REFUSED),
        (487, CallFailure.CANCELLED),
    ],
)
def test_failure_table(status, failure):
    assert classify_status(status) is failure
