"""RFC 4475 torture messages against the SIP message layer.

Every message listed in ``shared/testdata/rfc4475/manifest.tsv`` is one case. The verdict
per file is the table ``VERDICTS`` below: where the RFC names a response, the error is
raised either by ``parse_message`` ("parse": syntax and framing) or by
``validate_request`` ("validate": UAS semantics). "accept" means: parses, and
``validate_request`` passes (the verdict, if any, belongs to a later layer).

| file       | RFC      | where    | status | why                                                 |
|------------|----------|----------|--------|-----------------------------------------------------|
| badinv01   | 3.1.2.1  | parse    | 400    | Via ``;;,;,,`` empty elements                       |
| clerr      | 3.1.2.2  | parse    | 400    | datagram shorter than Content-Length                |
| ncl        | 3.1.2.3  | parse    | 400    | negative Content-Length                             |
| scalar02   | 3.1.2.4  | parse    | 400    | CSeq > 2**31-1 (also Max-Forwards 300)              |
| scalarlg   | 3.1.2.5  | parse    | 400    | response CSeq overlarge: the caller drops it        |
| quotbal    | 3.1.2.6  | parse    | 400    | unterminated quote in To                            |
| ltgtruri   | 3.1.2.7  | parse    | 400    | ``<>`` around the Request-URI                       |
| lwsruri    | 3.1.2.8  | parse    | 400    | LWS inside the Request-URI                          |
| lwsstart   | 3.1.2.9  | parse    | 400    | several SP in the Request-Line (we chose strict)    |
| trws       | 3.1.2.10 | parse    | 400    | trailing SP on the Request-Line (strict)            |
| escruri    | 3.1.2.11 | parse    | 400    | headers in a SIP Request-URI                        |
| baddate    | 3.1.2.12 | validate | 400    | Date not in GMT                                     |
| regbadct   | 3.1.2.13 | parse    | 400    | addr-spec Contact with ``?`` needs ``<>``           |
| badaspec   | 3.1.2.14 | parse    | 400    | spaces inside ``<>``                                |
| baddn      | 3.1.2.15 | parse    | 400    | unquoted display name with ``,``                    |
| badvers    | 3.1.2.16 | parse    | 505    | SIP/7.0                                             |
| mismatch01 | 3.1.2.17 | validate | 400    | CSeq method differs from the method                 |
| mismatch02 | 3.1.2.18 | validate | 501    | unknown method (with ``methods=``; 400 without)     |
| bigcode    | 3.1.2.19 | parse    | 400    | status code not three digits: the caller drops it   |
| badbranch  | 3.2.1    | accept   |        | transaction layer falls back to RFC 2543 matching   |
| insuf      | 3.3.1    | validate | 400    | no Call-ID, From, To                                |
| unkscm     | 3.3.2    | validate | 416    | unknown Request-URI scheme                          |
| novelsc    | 3.3.3    | validate | 416    | soap.beep never accepted here                       |
| unksm2     | 3.3.4    | validate | 400    | REGISTER whose To is not a SIP AOR (registrar view) |
| bext01     | 3.3.5    | validate | 420    | Require tags listed in ``BadExtensionError``        |
| invut      | 3.3.6    | accept   |        | 415 is decided by the body's consumer               |
| regaut01   | 3.3.7    | accept   |        | 401/405 is decided by the registrar                 |
| multi01    | 3.3.8    | validate | 400    | repeated Call-ID, To, From, CSeq, Max-Forwards      |
| mcl01      | 3.3.9    | parse    | 400    | conflicting Content-Length (framing error)          |
| bcast      | 3.3.10   | accept   |        | a response; dropping it is the transport's job      |
| zeromf     | 3.3.11   | accept   |        | a UAS serves it; 483 only with ``forwarding=True``  |
| cparam01   | 3.3.12   | accept   |        | ``unknownparam`` is a contact-param                 |
| cparam02   | 3.3.13   | accept   |        | ``unknownparam`` is a url-parameter                 |
| regescrt   | 3.3.14   | accept   |        | escaped Route kept in the Contact URI               |
| sdp01      | 3.3.15   | accept   |        | 406 is decided by the INVITE handler                |
| inv2543    | 3.4.1    | accept   |        | RFC 2543 syntax kept for backward compatibility     |

The 13 valid messages (3.1.1) are "accept" too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.headers import NameAddr
from sip_gateway.sip.message import (
    BadExtensionError,
    SipRequest,
    SipResponse,
    parse_message,
    validate_request,
)
from sip_gateway.sip.uri import AbsoluteUri, SipUri

KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "INFO", "UPDATE", "PRACK"}
)

ACCEPT = ("accept", None)
VERDICTS: dict[str, tuple[str, int | None]] = {
    # 3.1.1 valid
    "wsinv.dat": ACCEPT,
    "intmeth.dat": ACCEPT,
    "esc01.dat": ACCEPT,
    "escnull.dat": ACCEPT,
    "esc02.dat": ACCEPT,
    "lwsdisp.dat": ACCEPT,
    "longreq.dat": ACCEPT,
    "dblreq.dat": ACCEPT,
    "semiuri.dat": ACCEPT,
    "transports.dat": ACCEPT,
    "mpart01.dat": ACCEPT,
    "unreason.dat": ACCEPT,
    "noreason.dat": ACCEPT,
    # 3.1.2 invalid
    "badinv01.dat": ("parse", 400),
    "clerr.dat": ("parse", 400),
    "ncl.dat": ("parse", 400),
    "scalar02.dat": ("parse", 400),
    "scalarlg.dat": ("parse", 400),
    "quotbal.dat": ("parse", 400),
    "ltgtruri.dat": ("parse", 400),
    "lwsruri.dat": ("parse", 400),
    "lwsstart.dat": ("parse", 400),
    "trws.dat": ("parse", 400),
    "escruri.dat": ("parse", 400),
    "baddate.dat": ("validate", 400),
    "regbadct.dat": ("parse", 400),
    "badaspec.dat": ("parse", 400),
    "baddn.dat": ("parse", 400),
    "badvers.dat": ("parse", 505),
    "mismatch01.dat": ("validate", 400),
    "mismatch02.dat": ("validate", 501),
    "bigcode.dat": ("parse", 400),
    # 3.2 / 3.3 / 3.4 semantic
    "badbranch.dat": ACCEPT,
    "insuf.dat": ("validate", 400),
    "unkscm.dat": ("validate", 416),
    "novelsc.dat": ("validate", 416),
    "unksm2.dat": ("validate", 400),
    "bext01.dat": ("validate", 420),
    "invut.dat": ACCEPT,
    "regaut01.dat": ACCEPT,
    "multi01.dat": ("validate", 400),
    "mcl01.dat": ("parse", 400),
    "bcast.dat": ACCEPT,
    "zeromf.dat": ACCEPT,
    "cparam01.dat": ACCEPT,
    "cparam02.dat": ACCEPT,
    "regescrt.dat": ACCEPT,
    "sdp01.dat": ACCEPT,
    "inv2543.dat": ACCEPT,
}


def corpus_dir() -> Path:
    """The RFC 4475 corpus in the ``shared`` folder beside the repository."""
    path = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "rfc4475"
    if not (path / "manifest.tsv").is_file():
        raise FileNotFoundError(
            f"RFC 4475 corpus not found at {path}: clone the project's 'shared' folder "
            "beside the repository (../shared/testdata/rfc4475/manifest.tsv)"
        )
    return path


def manifest() -> list[tuple[str, str]]:
    rows = corpus_dir().joinpath("manifest.tsv").read_text(encoding="utf-8").splitlines()
    return [(row.split("\t")[0], row.split("\t")[2]) for row in rows[1:] if row.strip()]


MANIFEST = manifest()


def load(name: str) -> bytes:
    return corpus_dir().joinpath(name).read_bytes()


def validate(message: SipRequest, **kwargs) -> None:
    validate_request(message, methods=KNOWN_METHODS, **kwargs)


def test_table_covers_the_manifest():
    names = [name for name, _ in MANIFEST]
    assert sorted(names) == sorted(VERDICTS)
    counts = {
        kind: sum(1 for _, k in MANIFEST if k == kind) for kind in ("valid", "invalid", "semantic")
    }
    assert counts == {"valid": 13, "invalid": 19, "semantic": 17}
    for name, kind in MANIFEST:
        if kind == "valid":
            assert VERDICTS[name] == ACCEPT, name
        if kind == "invalid":
            assert VERDICTS[name] != ACCEPT, name


@pytest.mark.parametrize(("name", "kind"), MANIFEST, ids=[name for name, _ in MANIFEST])
def test_verdict(name: str, kind: str):
    where, status = VERDICTS[name]
    data = load(name)
    if where == "parse":
        with pytest.raises(RemoteProtocolError) as info:
            parse_message(data)
        assert info.value.status_code == status
        return
    message = parse_message(data)
    if where == "validate":
        assert isinstance(message, SipRequest)
        with pytest.raises(RemoteProtocolError) as info:
            validate(message)
        assert info.value.status_code == status
        return
    if isinstance(message, SipRequest):
        validate_request(message)  # unknown methods (intmeth, esc02) are the UAS's call


PARSEABLE = [name for name, _ in MANIFEST if VERDICTS[name][0] != "parse"]


@pytest.mark.parametrize("name", PARSEABLE)
def test_round_trip(name: str):
    """Whatever parses survives parse -> to_bytes -> parse with the same meaning."""
    message = parse_message(load(name))
    again = parse_message(message.to_bytes())
    assert again == message
    assert again.to_bytes() == message.to_bytes()
    if isinstance(message, SipRequest):
        assert isinstance(again, SipRequest)
        assert (again.method, again.uri, list(again.headers), again.body) == (
            message.method,
            message.uri,
            list(message.headers),
            message.body,
        )


def test_test_dat_without_version_is_rejected():
    data = corpus_dir().joinpath("extra", "test.dat").read_bytes()
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status_code == 400


# -- what the valid messages mean ------------------------------------------------------


def test_wsinv_folding_and_odd_whitespace():
    m = parse_message(load("wsinv.dat"))
    assert isinstance(m, SipRequest)
    assert m.method == "INVITE"
    assert m.uri == SipUri(
        user="vivekg", host="chair-dnrc.example.com", params=(("unknownparam", None),)
    )
    assert m.to_addr.tag == "1918181833n"
    assert m.from_addr.display_name == 'J Rosenberg \\"'
    assert m.from_addr.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.cseq.seq == 9 and m.cseq.method == "INVITE"
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert m.routes[0].uri.param("unknownwith") == "value"
    assert len(m.body) == 150


def test_intmeth_odd_tokens_and_quoted_controls():
    m = parse_message(load("intmeth.dat"))
    assert isinstance(m, SipRequest)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com"
    assert "pas$wo" not in repr(m.uri)
    assert m.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_addr.tag == "_token~1'+`*%!-."
    assert m.from_addr.param("fromParam''~+*_!.-%") == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escapes_are_kept_as_on_the_wire():
    m = parse_message(load("esc01.dat"))
    assert isinstance(m, SipRequest) and isinstance(m.uri, SipUri)
    assert m.uri.user == "sips%3Auser%40example.com"
    assert m.uri.host == "example.net"
    assert m.to_addr.uri == SipUri(user="%75se%72", host="example.com")
    assert m.contacts[0].uri.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))


def test_escaped_nul_and_two_contacts():
    m = parse_message(load("escnull.dat"))
    assert [c.uri for c in m.contacts] == [
        SipUri(user="%00", host="host5.example.com"),
        SipUri(user="%00%00", host="host5.example.com"),
    ]


def test_percent_that_is_not_an_escape():
    m = parse_message(load("esc02.dat"))
    assert isinstance(m, SipRequest)
    assert m.method == "RE%47IST%45R"
    assert m.from_addr.display_name == "%Z%45"
    assert len(m.contacts) == 2
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_token_display_name_touching_uri():
    m = parse_message(load("lwsdisp.dat"))
    assert m.from_addr.display_name == "caller"
    assert m.from_addr.uri == SipUri(user="caller", host="example.com")


def test_longreq_many_vias_and_long_values():
    m = parse_message(load("longreq.dat"))
    vias = m.vias
    assert len(vias) == 34
    assert vias[0].host == "sip33.example.com"
    assert vias[-1].received == "192.0.2.5"
    assert m.to_addr.uri.port == 6000  # type: ignore[union-attr]
    assert len(m.body) == 150


def test_dblreq_ignores_bytes_after_the_body():
    m = parse_message(load("dblreq.dat"))
    assert isinstance(m, SipRequest)
    assert m.method == "REGISTER"
    assert m.body == b""


def test_semicolon_in_user_part():
    m = parse_message(load("semiuri.dat"))
    assert isinstance(m, SipRequest) and isinstance(m.uri, SipUri)
    assert m.uri.user == "user;par=u%40example.net"
    assert m.uri.host == "example.com"
    assert m.uri.params == ()
    assert m.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports():
    m = parse_message(load("transports.dat"))
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_binary_multipart_body():
    m = parse_message(load("mpart01.dat"))
    assert len(m.body) == 553
    assert b"\x00" in m.body
    assert m.top_via.rport == ""
    assert m.media_type == "multipart/mixed"


def test_unusual_and_empty_reason_phrases():
    m = parse_message(load("unreason.dat"))
    assert isinstance(m, SipResponse)
    assert m.status_code == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    n = parse_message(load("noreason.dat"))
    assert isinstance(n, SipResponse)
    assert (n.status_code, n.reason) == (100, "")


# -- what the semantic messages mean --------------------------------------------------


def request(name: str) -> SipRequest:
    m = parse_message(load(name))
    assert isinstance(m, SipRequest)
    return m


def test_mismatch02_without_a_method_list_is_400():
    with pytest.raises(RemoteProtocolError) as info:
        validate_request(request("mismatch02.dat"))
    assert info.value.status_code == 400


def test_bext01_lists_the_unsupported_tags():
    with pytest.raises(BadExtensionError) as info:
        validate(request("bext01.dat"))
    assert info.value.status_code == 420
    assert info.value.unsupported == ("nothingSupportsThis", "nothingSupportsThisEither")
    assert "nothingSupportsThisEither" in str(info.value)
    # Proxy-Require is a proxy's business: supporting the Require tags is enough.
    validate(
        request("bext01.dat"),
        supported_extensions=frozenset({"nothingSupportsThis", "nothingSupportsThisEither"}),
    )


def test_zeromf_is_served_but_not_forwarded():
    m = request("zeromf.dat")
    assert m.max_forwards == 0
    validate(m)
    with pytest.raises(RemoteProtocolError) as info:
        validate(m, forwarding=True)
    assert info.value.status_code == 483


def test_unknown_schemes_parse_as_absolute_uris():
    assert request("unkscm.dat").uri == AbsoluteUri(
        scheme="nobodyknowsthisscheme", opaque="totallyopaquecontent"
    )
    assert str(request("novelsc.dat").uri) == "soap.beep://192.0.2.103:3002"
    m = request("unksm2.dat")
    assert m.to_addr.uri == AbsoluteUri(scheme="isbn", opaque="2983792873")
    assert m.from_addr.uri == AbsoluteUri(scheme="http", opaque="//www.example.com")
    assert m.contacts[0].uri == AbsoluteUri(scheme="name", opaque="John_Smith")


def test_contact_params_versus_uri_params():
    (bare,) = request("cparam01.dat").contacts
    assert bare.uri == SipUri(user="+19725552222", host="gw1.example.net")
    assert bare.params == (("unknownparam", None),)
    (enclosed,) = request("cparam02.dat").contacts
    assert enclosed.uri.has_param("unknownparam")  # type: ignore[union-attr]
    assert enclosed.params == ()


def test_escaped_route_header_in_contact_is_kept():
    (contact,) = request("regescrt.dat").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)
    assert str(contact) == "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"


def test_inv2543_body_without_content_length():
    m = request("inv2543.dat")
    assert m.top_via.branch is None
    assert m.from_addr.tag is None
    assert m.max_forwards is None
    assert m.body.startswith(b"v=0\r\n") and m.body.endswith(b"RTP/AVP 0\r\n")


def test_bcast_response_parses_with_broadcast_via():
    m = parse_message(load("bcast.dat"))
    assert isinstance(m, SipResponse)
    assert m.vias[1].host == "255.255.255.255"


def test_insuf_can_still_be_answered():
    from sip_gateway.sip.message import build_response

    m = request("insuf.dat")
    response = build_response(m, 400, to_tag="x")
    assert response.headers.get("Via") == m.headers.get("Via")
    assert "To" not in response.headers
    assert isinstance(parse_message(response.to_bytes()), SipResponse)


def test_name_addr_type_is_exported():
    assert isinstance(request("cparam01.dat").to_addr, NameAddr)
