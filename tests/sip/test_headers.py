"""Headers container, name-addr, Via and CSeq."""

from __future__ import annotations

import pytest

from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from sip_gateway.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
)
from sip_gateway.sip.uri import AbsoluteUri, SipUri

# -- Headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("f", "From"),
        ("t", "To"),
        ("v", "Via"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("c", "Content-Type"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("u", "Allow-Events"),
        ("x", "Session-Expires"),
    ],
)
def test_compact_forms(compact: str, full: str):
    assert canonical_name(compact) == full
    assert canonical_name(compact.upper()) == full
    headers = Headers([(compact, "x")])
    assert list(headers) == [(full, "x")]
    assert headers.get(full.upper()) == "x"
    assert full.lower() in headers


def test_names_are_case_insensitive_and_canonical():
    headers = Headers([("cAlL-iD", "a"), ("CSEQ", "1 INVITE"), ("X-Custom", "v")])
    assert list(headers) == [("Call-ID", "a"), ("CSeq", "1 INVITE"), ("X-Custom", "v")]
    assert headers.get("x-custom") == "v"
    assert headers.get("missing") is None
    assert headers.get_all("missing") == []


def test_list_headers_split_outside_quotes_and_brackets():
    headers = Headers()
    headers.add("Contact", '"Bell, A." <sip:a@b;x="1,2">, <sip:c@d>;q=0.5')
    headers.add("m", "sip:e@f")
    headers.add("Allow", "INVITE, ACK,, BYE")
    headers.add("Subject", "hello, world")
    assert headers.get_all("Contact") == [
        '"Bell, A." <sip:a@b;x="1,2">',
        "<sip:c@d>;q=0.5",
        "sip:e@f",
    ]
    assert headers.get("Contact") == '"Bell, A." <sip:a@b;x="1,2">'
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert headers.get_all("Subject") == ["hello, world"]
    assert headers.get_lines("Contact") == [
        '"Bell, A." <sip:a@b;x="1,2">, <sip:c@d>;q=0.5',
        "sip:e@f",
    ]


def test_quoted_escapes_do_not_end_the_string_when_splitting():
    headers = Headers([("Route", r'"a\",b" <sip:x>, <sip:y>')])
    assert headers.get_all("Route") == [r'"a\",b" <sip:x>', "<sip:y>"]


def test_mutation():
    headers = Headers([("Via", "v1"), ("To", "t"), ("Via", "v2")])
    headers.insert_first("Via", "v0")
    assert [v for _, v in headers] == ["v0", "v1", "t", "v2"]
    headers.insert_first("Record-Route", "<sip:p>")
    assert next(iter(headers)) == ("Record-Route", "<sip:p>")
    headers.set("via", "only")
    assert list(headers) == [("Record-Route", "<sip:p>"), ("Via", "only"), ("To", "t")]
    headers.set("Max-Forwards", "70")
    assert list(headers)[-1] == ("Max-Forwards", "70")
    headers.remove("record-route")
    headers.remove("absent")
    assert len(headers) == 3
    copy = headers.copy()
    copy.add("X", "1")
    assert len(headers) == 3 and len(copy) == 4
    assert copy != headers
    assert 42 not in headers  # type: ignore[operator]


def test_equality_ignores_name_case_but_not_order():
    assert Headers([("x-a", "1")]) == Headers([("X-A", "1")])
    assert Headers([("A", "1"), ("B", "2")]) != Headers([("B", "2"), ("A", "1")])
    assert Headers() != object()


def test_values_are_stripped_and_checked():
    headers = Headers([("Subject", "  hi \t")])
    assert headers.get("Subject") == "hi"
    with pytest.raises(LocalProtocolError):
        headers.add("X", "a\r\nInjected: 1")
    with pytest.raises(LocalProtocolError):
        headers.add("Bad Name", "1")
    with pytest.raises(LocalProtocolError):
        headers.set("X", "a\nb")


def test_repr_redacts_credentials():
    headers = Headers(
        [("Authorization", 'Digest response="deadbeef"'), ("Proxy-Authorization", "x")]
    )
    assert "deadbeef" not in repr(headers)
    assert "<redacted>" in repr(headers)


# -- NameAddr ----------------------------------------------------------------------------


def test_name_addr_with_quoted_display_name():
    addr = parse_name_addr(
        r'"Alice \"A\" \\ Smith" <sips:alice@example.com;transport=tls>;tag=abc;x'
    )
    assert addr.display_name == 'Alice "A" \\ Smith'
    assert addr.uri == SipUri(
        scheme="sips", user="alice", host="example.com", params=(("transport", "tls"),)
    )
    assert addr.params == (("tag", "abc"), ("x", None))
    assert addr.tag == "abc"
    assert addr.param("X") == ""
    assert parse_name_addr(str(addr)) == addr
    assert str(addr) == r'"Alice \"A\" \\ Smith" <sips:alice@example.com;transport=tls>;tag=abc;x'


def test_addr_spec_params_belong_to_the_header():
    addr = parse_name_addr("sip:bob@example.com;tag=1;expires=60")
    assert addr.display_name is None
    assert addr.uri == SipUri(user="bob", host="example.com")
    assert addr.params == (("tag", "1"), ("expires", "60"))
    assert str(addr) == "<sip:bob@example.com>;tag=1;expires=60"


def test_token_display_names():
    assert parse_name_addr("A. G. Bell <sip:a@b>").display_name == "A. G. Bell"
    assert parse_name_addr("caller<sip:a@b>").display_name == "caller"
    assert parse_name_addr("<sip:a@b>").display_name is None
    assert parse_name_addr('""<sip:a@b>').display_name == ""


def test_absolute_uri_in_name_addr():
    addr = parse_name_addr("<tel:+15551234;phone-context=x>;tag=9")
    assert addr.uri == AbsoluteUri(scheme="tel", opaque="+15551234;phone-context=x")
    assert addr.tag == "9"
    bare = parse_name_addr("tel:+15551234;tag=9")
    assert bare.uri == AbsoluteUri(scheme="tel", opaque="+15551234")
    assert bare.tag == "9"


def test_quoted_param_values_keep_quotes():
    addr = parse_name_addr('<sip:a@b>;+sip.instance="<urn:uuid:1234>";reg-id=1')
    assert addr.param("+sip.instance") == '"<urn:uuid:1234>"'
    assert parse_name_addr(str(addr)) == addr


def test_name_addr_editing():
    addr = parse_name_addr("<sip:a@b>")
    tagged = addr.with_tag("t1")
    assert str(tagged) == "<sip:a@b>;tag=t1"
    assert tagged.with_tag("t2").tag == "t2"
    assert tagged.without_param("tag") == addr
    assert str(addr.with_param("expires", "0")) == "<sip:a@b>;expires=0"


def test_display_name_with_controls_is_escaped():
    addr = NameAddr(display_name="BEL:\x07 NUL:\x00", uri=SipUri(host="x"))
    assert str(addr) == '"BEL:\\\x07 NUL:\\\x00" <sip:x>'
    assert parse_name_addr(str(addr)) == addr
    with pytest.raises(LocalProtocolError):
        NameAddr(display_name="a\r\nb", uri=SipUri(host="x"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"unterminated <sip:a@b>',
        '"quoted" sip:a@b',
        "Bell, Alexander <sip:a@b>",
        "< sip:a@b >",
        "<sip:a@b",
        "<>",
        "<sip:a@b>;;",
        "<sip:a@b>;tag=",
        "<sip:a@b>;tag=1 junk",
        "<sip:a@b> junk",
        "sip:a@b?X=1",
        "sip:a@b;tag=1;",
        "sip:a@b junk",
        '<sip:a@b>;q="1',
        "@<sip:a@b>",
    ],
)
def test_malformed_name_addrs(text: str):
    with pytest.raises(RemoteProtocolError) as info:
        parse_name_addr(text)
    assert info.value.status_code == 400


def test_name_addr_list():
    addrs = parse_name_addr_list('<sip:a@b>;q=1, "x, y" <sip:c@d>')
    assert [a.display_name for a in addrs] == [None, "x, y"]
    with pytest.raises(RemoteProtocolError):
        parse_name_addr_list("<sip:a@b>,,<sip:c@d>")


# -- Via ---------------------------------------------------------------------------------


def test_via_with_rport_received_and_alias():
    (via,) = parse_via(
        "SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK776;rport;alias;received=192.0.2.9"
    )
    assert via.transport == "TLS"
    assert (via.host, via.port, via.sent_by) == ("192.0.2.1", 5061, "192.0.2.1:5061")
    assert via.branch == "z9hG4bK776"
    assert via.rport == ""
    assert via.received == "192.0.2.9"
    assert via.param("alias") == ""
    assert parse_via(str(via)) == [via]


def test_via_rport_absent_and_with_value():
    (plain,) = parse_via("SIP/2.0/UDP h;branch=z9hG4bKx")
    assert plain.rport is None and plain.received is None
    stamped = plain.with_params(rport="5060", received="2001:db8::9")
    assert str(stamped) == "SIP/2.0/UDP h;branch=z9hG4bKx;rport=5060;received=2001:db8::9"
    assert parse_via(str(stamped)) == [stamped]
    assert stamped.without_param("rport").rport is None
    assert plain.with_param("alias").param("alias") == ""


def test_via_ipv6_sent_by():
    (via,) = parse_via("SIP/2.0/WSS [2001:db8::1]:443;branch=z9hG4bKa;received=[2001:db8::2]")
    assert (via.transport, via.host, via.port) == ("WSS", "[2001:db8::1]", 443)
    assert str(via) == "SIP/2.0/WSS [2001:db8::1]:443;branch=z9hG4bKa;received=[2001:db8::2]"


def test_via_liberal_whitespace_and_lists():
    vias = parse_via("sip / 2.0 / tcp  a.example.com : 5060 ; branch = z9hG4bK1 , SIP/2.0/UDP b")
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("TCP", "a.example.com", 5060, "z9hG4bK1"),
        ("UDP", "b", None, None),
    ]


def test_via_construction_and_str():
    via = Via(
        transport="TLS", host="[::1]", port=5061, params=(("branch", "z9hG4bKq"), ("rport", None))
    )
    assert str(via) == "SIP/2.0/TLS [::1]:5061;branch=z9hG4bKq;rport"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 host",
        "SIP/3.0/UDP host",
        "HTTP/2.0/UDP host",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP host,",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host:",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP host;branch=",
        'SIP/2.0/UDP host;branch="quoted"',
        "SIP/2.0/UDP host;received=example.com",
        "SIP/2.0/UDP host;rport=x",
        "SIP/2.0/UDP host;ttl=256",
        "SIP/2.0/UDP host;maddr=bad host",
        "SIP/2.0/UDP host junk",
        "SIP/2.0/U{DP host",
    ],
)
def test_malformed_vias(text: str):
    with pytest.raises(RemoteProtocolError) as info:
        parse_via(text)
    assert info.value.status_code == 400


# -- CSeq --------------------------------------------------------------------------------


def test_cseq():
    assert parse_cseq("0009  INVITE") == CSeq(seq=9, method="INVITE")
    assert parse_cseq(f"{2**31 - 1} BYE").seq == 2**31 - 1
    assert str(CSeq(seq=0, method="ACK")) == "0 ACK"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "INVITE",
        "-1 INVITE",
        f"{2**31} INVITE",
        "9" * 5000 + " INVITE",
        "1 IN VITE",
        "1 <x>",
        "１ INVITE",
    ],
)
def test_malformed_cseq(text: str):
    with pytest.raises(RemoteProtocolError):
        parse_cseq(text)


def test_cseq_local_range():
    with pytest.raises(LocalProtocolError):
        CSeq(seq=2**31, method="INVITE")
    with pytest.raises(LocalProtocolError):
        CSeq(seq=1, method="IN VITE")


def test_unquoted_utf8_display_name_is_accepted():
    addr = parse_name_addr("Jörg Müller <sip:j@example.de>;tag=1")
    assert addr.display_name == "Jörg Müller"
    assert str(addr) == '"Jörg Müller" <sip:j@example.de>;tag=1'
