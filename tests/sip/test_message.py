"""Messages: datagram parsing, serialization, accessors, build_response, validate_request."""

from __future__ import annotations

import pytest

from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from sip_gateway.sip.headers import CSeq, Headers
from sip_gateway.sip.message import (
    BadExtensionError,
    SipRequest,
    SipResponse,
    build_response,
    parse_message,
    reason_phrase,
    validate_request,
)
from sip_gateway.sip.uri import SipUri, parse_uri


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


INVITE = (
    crlf(
        """INVITE sips:bob@example.com SIP/2.0
v: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK74bf9;rport
Max-Forwards: 70
f: "Alice" <sips:alice@example.com>;tag=9fxced76sl
t: <sips:bob@example.com>
i: 3848276298220188511@example.com
CSeq: 1 INVITE
m: <sips:alice@192.0.2.1:5061;transport=tls>
Authorization: Digest username="alice", response="0123456789abcdef"
c: application/sdp; charset=utf-8
l: 7

"""
    )
    + b"v=0\r\nx\x00"
)


def parse_request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def test_request_accessors():
    m = parse_request(INVITE)
    assert m.method == "INVITE"
    assert m.uri == SipUri(scheme="sips", user="bob", host="example.com")
    assert m.call_id == "3848276298220188511@example.com"
    assert m.cseq == CSeq(seq=1, method="INVITE")
    assert m.from_addr.display_name == "Alice" and m.from_addr.tag == "9fxced76sl"
    assert m.to_addr.tag is None
    assert m.top_via.branch == "z9hG4bK74bf9" and m.top_via.rport == ""
    assert m.max_forwards == 70
    assert m.contacts[0].uri.transport == "tls"  # type: ignore[union-attr]
    assert m.content_type == "application/sdp; charset=utf-8"
    assert m.media_type == "application/sdp"
    assert m.body == b"v=0\r\nx\x00"
    assert "Content-Length" not in m.headers  # framing is consumed
    assert m.routes == [] and m.record_routes == []
    assert not m.contact_wildcard


def test_repr_hides_body_and_credentials():
    text = repr(parse_request(INVITE))
    assert "0123456789abcdef" not in text
    assert "v=0" not in text


def test_to_bytes_round_trip_and_content_length():
    m = parse_request(INVITE)
    wire = m.to_bytes()
    assert wire.endswith(b"Content-Length: 7\r\n\r\nv=0\r\nx\x00")
    assert parse_message(wire) == m
    m.body = b"\r\n\r\n\x00binary"
    m.headers.add("Content-Length", "9999")
    again = parse_message(m.to_bytes())
    assert again.body == b"\r\n\r\n\x00binary"


def test_folding_and_whitespace():
    data = crlf(
        "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\n ;branch=z9hG4bK1\n"
        "Subject:\n\tfolded\n  twice\n"
        "To   : <sip:a@b>\n\n"
    )
    m = parse_request(data)
    assert m.headers.get("Via") == "SIP/2.0/UDP h ;branch=z9hG4bK1"
    assert m.top_via.branch == "z9hG4bK1"
    assert m.headers.get("Subject") == "folded twice"
    assert m.to_addr.uri == SipUri(user="a", host="b")


def test_response_parsing():
    m = parse_message(crlf("SIP/2.0 180 Ringing\nCSeq: 1 INVITE\nContent-Length: 0\n\n"))
    assert isinstance(m, SipResponse)
    assert (m.status_code, m.reason, m.cseq.method) == (180, "Ringing", "INVITE")
    bare = parse_message(crlf("SIP/2.0 200\n\n"))
    assert isinstance(bare, SipResponse) and bare.reason == ""
    assert parse_message(crlf("sip/2.0 200 OK\n\n")).to_bytes().startswith(b"SIP/2.0 200 OK\r\n")


def test_datagram_framing_rules():
    head = "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\n"
    assert parse_message(b"\r\n\r\n" + crlf(head + "\n")).body == b""
    assert parse_message(crlf(head)).body == b""  # no blank line, ends with CRLF
    assert parse_message(crlf(head + "\nrest of datagram")).body == b"rest of datagram"
    assert parse_message(crlf(head + "l: 4\n\nbodyEXTRA")).body == b"body"
    assert parse_message(crlf(head + "l: 4\nl: 4\n\nbody")).body == b"body"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\n\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: 1\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nabc", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: +5\r\n\r\nabcde", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: " + b"9" * 5000 + b"\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab", 400),
        (b"OPTIONS sip:a@b SIP/3.0\r\n\r\n", 505),
        (b"OPTIONS sip:a@b SIP/2.1\r\n\r\n", 505),
        (b"OPTIONS sip:a@b HTTP/1.1\r\n\r\n", 400),
        (b"OPTIONS sip:a@b\r\n\r\n", 400),
        (b"OPT<IONS sip:a@b SIP/2.0\r\n\r\n", 400),
        (b"OPTIONS sip:a@b?X=1 SIP/2.0\r\n\r\n", 400),
        (b"SIP/2.0 99 Low\r\n\r\n", 400),
        (b"SIP/2.0 700 High\r\n\r\n", 400),
        (b"SIP/2.0 2000 Long\r\n\r\n", 400),
        (b"SIP/2.0 +20 Sign\r\n\r\n", 400),
        (b"SIP/3.0 200 OK\r\n\r\n", 400),
        (b"SIP/2.0 200 O\x00K\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: x OPTIONS\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 256\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: a b\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID:\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: a\x00b\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: caf\xc3\xa9\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nContact: *, <sip:a@b>\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nRoute: <sip:a@b>,\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nRecord-Route: junk\r\n\r\n", 400),
    ],
)
def test_malformed_datagrams(data: bytes, status: int):
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status_code == status


def test_accessor_errors_are_400():
    m = parse_request(crlf("OPTIONS sip:a@b SIP/2.0\nCSeq: 1 OPTIONS\nCSeq: 2 OPTIONS\n\n"))
    for name in ("call_id", "from_addr", "to_addr", "vias", "top_via", "cseq"):
        with pytest.raises(RemoteProtocolError) as info:
            getattr(m, name)
        assert info.value.status_code == 400, name
    assert m.max_forwards is None
    m.headers.add("Max-Forwards", "1")
    m.headers.add("Max-Forwards", "2")
    with pytest.raises(RemoteProtocolError):
        _ = m.max_forwards
    m.headers.add("Call-ID", "x y")
    with pytest.raises(RemoteProtocolError):
        _ = m.call_id


def test_contact_wildcard():
    m = parse_request(crlf("REGISTER sip:r SIP/2.0\nContact: *\nExpires: 0\n\n"))
    assert m.contact_wildcard
    assert m.contacts == []


def test_option_tags():
    m = parse_request(crlf("OPTIONS sip:a@b SIP/2.0\nk: timer, 100rel\nSupported: outbound\n\n"))
    assert m.option_tags("Supported") == ["timer", "100rel", "outbound"]


def test_local_serialization_errors():
    with pytest.raises(LocalProtocolError):
        SipRequest(method="BAD METHOD", uri=SipUri(host="h"), headers=Headers()).to_bytes()
    with pytest.raises(LocalProtocolError):
        SipRequest(method="INVITE", uri=parse_uri("sip:a@b?X=1"), headers=Headers()).to_bytes()
    with pytest.raises(LocalProtocolError):
        SipResponse(status_code=99, reason="x", headers=Headers()).to_bytes()
    with pytest.raises(LocalProtocolError):
        SipResponse(status_code=200, reason="a\r\nb", headers=Headers()).to_bytes()
    with pytest.raises(LocalProtocolError):
        SipResponse(status_code=200, reason="\udcff", headers=Headers()).to_bytes()


# -- build_response ------------------------------------------------------------------------


def test_build_response_copies_the_dialog_headers():
    request = parse_request(INVITE)
    request.headers.add("Via", "SIP/2.0/TLS proxy.example.net;branch=z9hG4bK2")
    response = build_response(request, 180, to_tag="bobtag", headers=[("Contact", "<sips:bob@h>")])
    assert (response.status_code, response.reason) == (180, "Ringing")
    assert [v.host for v in response.vias] == ["192.0.2.1", "proxy.example.net"]
    assert response.from_addr == request.from_addr
    assert response.to_addr.tag == "bobtag"
    assert response.call_id == request.call_id
    assert response.cseq == request.cseq
    assert response.headers.get("Contact") == "<sips:bob@h>"
    assert "Authorization" not in response.headers
    assert response.body == b""
    assert parse_message(response.to_bytes()) == response


def test_build_response_keeps_an_existing_to_tag():
    request = parse_request(INVITE)
    request.headers.set("To", "<sips:bob@example.com>;tag=old")
    assert build_response(request, 200, to_tag="new").to_addr.tag == "old"
    assert build_response(request, 487, "Gone Away").reason == "Gone Away"


def test_build_response_100_copies_timestamp():
    request = parse_request(INVITE)
    request.headers.add("Timestamp", "54")
    assert build_response(request, 100).headers.get("Timestamp") == "54"
    assert "Timestamp" not in build_response(request, 180).headers


def test_build_response_to_a_broken_request():
    request = SipRequest(method="INVITE", uri=SipUri(host="h"), headers=Headers([("To", "junk<")]))
    response = build_response(request, 400, to_tag="t")
    assert response.headers.get("To") == "junk<"
    with pytest.raises(LocalProtocolError):
        build_response(request, 700)


def test_reason_phrases():
    assert reason_phrase(200) == "OK"
    assert reason_phrase(488) == "Not Acceptable Here"
    assert reason_phrase(499) == "Client Error"
    assert reason_phrase(299) == "OK"


# -- validate_request ----------------------------------------------------------------------


def request_with(
    *extra: str, method: str = "INVITE", uri: str = "sip:bob@example.com"
) -> SipRequest:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/TLS h;branch=z9hG4bK1",
        "From: <sip:a@b>;tag=1",
        "To: <sip:bob@example.com>",
        "Call-ID: c1",
        f"CSeq: 1 {method}",
        *extra,
    ]
    return parse_request(("\r\n".join(lines) + "\r\n\r\n").encode())


def status_of(request: SipRequest, **kwargs) -> int | None:
    try:
        validate_request(request, **kwargs)
    except RemoteProtocolError as exc:
        return exc.status_code
    return None


def test_validate_accepts_a_plain_request():
    assert status_of(request_with()) is None
    assert status_of(request_with("Date: Sat, 13 Nov 2010 23:29:00 GMT", "Max-Forwards: 0")) is None


def test_validate_rules():
    assert status_of(request_with("Date: Sat, 13 Nov 2010 23:29:00 UTC")) == 400
    assert status_of(request_with("Max-Forwards: 0"), forwarding=True) == 483
    assert status_of(request_with("Max-Forwards: 1"), forwarding=True) is None
    assert status_of(request_with(uri="tel:+15551234")) == 416
    assert status_of(request_with(uri="tel:+15551234"), schemes=frozenset({"tel"})) is None
    assert status_of(request_with(uri="sips:bob@example.com")) is None
    assert status_of(request_with(method="PUBLISH"), methods=frozenset({"INVITE"})) == 501
    assert status_of(request_with(method="REGISTER")) is None
    mismatch = request_with()
    mismatch.headers.set("CSeq", "1 BYE")
    assert status_of(mismatch) == 400
    twice = request_with("Call-ID: c2")
    assert status_of(twice) == 400


def test_validate_require():
    request = request_with("Require: 100rel, timer", "Proxy-Require: sec-agree")
    with pytest.raises(BadExtensionError) as info:
        validate_request(request, supported_extensions=frozenset({"timer"}))
    assert info.value.unsupported == ("100rel",)
    assert info.value.headers == (("Unsupported", "100rel"),)
    assert status_of(request, supported_extensions=frozenset({"timer", "100rel"})) is None
    assert status_of(request_with("Require: 100rel", method="ACK")) is None
    assert status_of(request_with("Require: 100rel", method="CANCEL")) is None


def test_validate_register_needs_a_sip_aor():
    request = request_with(method="REGISTER")
    request.headers.set("To", "<tel:+15551234>")
    assert status_of(request) == 400
