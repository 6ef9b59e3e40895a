"""SIP/SIPS and absolute URIs."""

from __future__ import annotations

import pytest

from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from sip_gateway.sip.uri import AbsoluteUri, SipUri, parse_uri


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


def test_full_sips_uri():
    uri = sip(
        "sips:alice:secret@gw.example.net:5061;transport=TLS;lr;maddr=[2001:db8::1]?Subject=hi&X="
    )
    assert uri.scheme == "sips"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "gw.example.net"
    assert uri.port == 5061
    assert uri.params == (("transport", "TLS"), ("lr", None), ("maddr", "[2001:db8::1]"))
    assert uri.headers == (("Subject", "hi"), ("X", ""))
    assert uri.transport == "tls"
    assert uri.param("LR") == ""
    assert uri.has_param("Transport")
    assert uri.param("ttl") is None
    assert uri.host_port == "gw.example.net:5061"
    assert parse_uri(str(uri)) == uri


def test_password_is_hidden_from_repr_but_serialized():
    uri = sip("sip:bob:hunter2@example.com")
    assert "hunter2" not in repr(uri)
    assert str(uri) == "sip:bob:hunter2@example.com"
    assert sip("sip:bob:@example.com").password == ""


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "[2001:db8::10]", None),
        ("sip:u@[2001:db8::10]:5070;transport=tcp", "[2001:db8::10]", 5070),
        ("sip:[::ffff:192.0.2.1]:1", "[::ffff:192.0.2.1]", 1),
        ("sip:192.0.2.4:0", "192.0.2.4", 0),
        ("SIP:Host.Example.COM", "Host.Example.COM", None),
    ],
)
def test_hosts(text: str, host: str, port: int | None):
    uri = sip(text)
    assert (uri.host, uri.port) == (host, port)
    assert parse_uri(str(uri)) == uri


def test_scheme_is_case_insensitive():
    assert sip("SIPS:a@b").scheme == "sips"
    assert str(sip("SIP:a@b")) == "sip:a@b"


def test_escapes_and_user_characters():
    uri = sip("sip:%41lice;phone-context=+1@example.com;x=%20")
    assert uri.user == "%41lice;phone-context=+1"
    assert uri.params == (("x", "%20"),)


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:alice@exa mple.com",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:port",
        "sip:alice@[2001:db8::1",
        "sip:alice@[nothex]",
        "sip:alice@[2001:db8::1]x",
        "sip:al%4@example.com",
        "sip:al%G1@example.com",
        "sip:al<ice@example.com",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;x=",
        "sip:alice@example.com;x=a b",
        "sip:alice@example.com?",
        "sip:alice@example.com?novalue",
        "sip:alice@example.com?a=b&",
        "<sip:alice@example.com>",
        "1sip:x",
        "no-colon",
        ":opaque",
        "tel:",
        "tel:+1 555",
        "http://ex<ample",
        "sip:alice@ex\u00e4mple.com",
        "sip:alice@-example.com",
    ],
)
def test_malformed_uris_are_400(text: str):
    with pytest.raises(RemoteProtocolError) as info:
        parse_uri(text)
    assert info.value.status_code == 400


def test_absolute_uris():
    uri = parse_uri("TEL:+1-201-555-0123;phone-context=example.com")
    assert uri == AbsoluteUri(scheme="tel", opaque="+1-201-555-0123;phone-context=example.com")
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"
    assert uri.scheme == "tel"
    assert parse_uri("urn:service:sos") == AbsoluteUri(scheme="urn", opaque="service:sos")


def test_params_editing():
    uri = sip("sip:a@b;transport=udp;lr")
    assert str(uri.with_params(transport="tls")) == "sip:a@b;transport=tls;lr"
    assert str(uri.with_params(ob=None)) == "sip:a@b;transport=udp;lr;ob"
    assert str(uri.with_param("x-y", "1")) == "sip:a@b;transport=udp;lr;x-y=1"
    assert str(uri.without_param("LR")) == "sip:a@b;transport=udp"
    assert uri.with_params() == uri
    assert str(sip("sip:a@b?X=1").without_headers()) == "sip:a@b"


def test_user_param():
    assert sip("sip:+15551234@gw;user=Phone").user_param == "phone"
    assert sip("sip:gw").user_param is None


def test_local_construction_is_checked():
    assert str(SipUri(host="example.com")) == "sip:example.com"
    with pytest.raises(LocalProtocolError):
        SipUri(scheme="tel", host="example.com")
    with pytest.raises(LocalProtocolError):
        SipUri(host="")
    with pytest.raises(LocalProtocolError):
        SipUri(host="a b")


@pytest.mark.parametrize(
    "fields",
    [
        {"user": "123\r\nX: injected"},
        {"user": "a b"},
        {"user": "a@b"},
        {"password": "p@ss"},
        {"host": "h;x=1"},
        {"params": (("transport", "tls\r\n"),)},
        {"params": (("", "x"),)},
        {"headers": (("Subject", "a b"),)},
    ],
)
def test_local_construction_rejects_injection(fields):
    base = {"host": "example.com", "user": "alice"}
    with pytest.raises(LocalProtocolError):
        SipUri(**(base | fields))


def test_absolute_uri_local_construction():
    with pytest.raises(LocalProtocolError):
        AbsoluteUri(scheme="tel", opaque="+1\r\nX: y")
    with pytest.raises(LocalProtocolError):
        AbsoluteUri(scheme="1x", opaque="a")
