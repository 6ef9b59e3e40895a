"""Fuzz target: one SIP message as a datagram or WebSocket message (``parse_message``).

Property: any bytes either raise :class:`RemoteProtocolError` or give a message whose
typed accessors (Call-ID, CSeq, From, To, Via, Contact, Route, Require ...), digest
challenges and credentials, and the UAS checks (``validate_request``) again raise nothing
but :class:`RemoteProtocolError`; the header models, challenges and credentials re-parse
from their own ``str()``; ``to_bytes()`` never refuses a parsed message and
``parse_message(m.to_bytes()) == m``; an error response built for a request parses back.
Bytes that are no message go, as text, straight into the URI, name-addr, Via, CSeq and
digest grammars under the same rules. Seeds: the RFC 4475 torture messages, a digest
REGISTER exchange and its header values.

Run: ``python -m tests.fuzz.sip_message -max_total_time=60 [corpus_dir]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.fuzz.harness import instrumented, main, rfc4475_messages

with instrumented(__name__, "sip_gateway.sip"):
    from sip_gateway.sip.auth_header import parse_challenge, parse_credentials
    from sip_gateway.sip.errors import RemoteProtocolError
    from sip_gateway.sip.headers import (
        NameAddr,
        parse_cseq,
        parse_name_addr,
        parse_name_addr_list,
        parse_via,
    )
    from sip_gateway.sip.message import (
        SipMessage,
        SipRequest,
        build_response,
        parse_message,
        validate_request,
    )
    from sip_gateway.sip.uri import SipUri, parse_uri

TARGET = "sip_message"
_AUTH_PARSERS = {
    "Authorization": parse_credentials,
    "Proxy-Authorization": parse_credentials,
    "WWW-Authenticate": parse_challenge,
    "Proxy-Authenticate": parse_challenge,
}
_ACCESSORS = (
    "call_id",
    "cseq",
    "from_addr",
    "to_addr",
    "vias",
    "top_via",
    "max_forwards",
    "contacts",
    "contact_wildcard",
    "routes",
    "record_routes",
    "content_type",
    "media_type",
)


def one_input(data: bytes) -> None:
    """The property for one input (raises AssertionError or the crash itself)."""
    try:
        message = parse_message(data)
    except RemoteProtocolError:
        check_value(data.decode("utf-8", "replace"))
        return
    exercise(message)
    wire = message.to_bytes()
    again = parse_message(wire)
    assert again == message, "parse(to_bytes(m)) != m"
    assert again.to_bytes() == wire, "to_bytes is not a fixed point"


def exercise(message: SipMessage) -> None:
    """Every typed view of a parsed message: RemoteProtocolError or a model that re-parses."""
    for name in _ACCESSORS:
        try:
            value = getattr(message, name)
        except RemoteProtocolError:
            continue
        for item in value if isinstance(value, list) else [value]:
            check_model(item)
    for header in ("Require", "Supported", "Proxy-Require"):
        with contextlib.suppress(RemoteProtocolError):
            message.option_tags(header)
    check_auth(message)
    if isinstance(message, SipRequest):
        check_model(message.uri)
        try:
            validate_request(message, supported_extensions=frozenset({"timer"}))
        except RemoteProtocolError as exc:
            answer = build_response(message, exc.status_code, exc.reason, headers=exc.headers)
            assert parse_message(answer.to_bytes()) == answer, "error response does not re-parse"


def check_value(text: str) -> None:
    """Bytes that are no message, as a header value: straight into each grammar."""
    for parse in (parse_uri, parse_name_addr, parse_name_addr_list, parse_via, parse_cseq):
        try:
            parsed = parse(text)
        except RemoteProtocolError:
            continue
        for item in parsed if isinstance(parsed, list) else [parsed]:
            check_model(item)
    for name in _AUTH_PARSERS:
        check_auth_value(name, text)


def check_auth(message: SipMessage) -> None:
    """Challenges and credentials: RemoteProtocolError or a value that re-parses."""
    for name in _AUTH_PARSERS:
        for value in message.headers.get_lines(name):
            check_auth_value(name, value)


def check_auth_value(name: str, value: str) -> None:
    """One challenge or credentials value: RemoteProtocolError or a round trip."""
    parse = _AUTH_PARSERS[name]
    try:
        parsed = parse(value)
    except RemoteProtocolError:
        return
    assert parse(str(parsed)) == parsed, f"{name} does not round-trip"
    getattr(parsed, "nonce_count", None)


def check_model(item: object) -> None:
    """A header model re-parses from its own ``str()``."""
    text = str(item)
    if isinstance(item, NameAddr):
        assert parse_name_addr(text) == item, "NameAddr does not round-trip"
    elif isinstance(item, SipUri):
        assert parse_uri(text) == item, "URI does not round-trip"
    elif type(item).__name__ == "Via":
        assert parse_via(text) == [item], "Via does not round-trip"
    elif type(item).__name__ == "CSeq":
        assert parse_cseq(text) == item, "CSeq does not round-trip"


_DIGEST_EXCHANGE = (
    "SIP/2.0 401 Unauthorized\r\n"
    "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK5516;received=192.0.2.7\r\n"
    "From: <sip:alice@example.com>;tag=jt5g6\r\nTo: <sip:alice@example.com>;tag=s1\r\n"
    "Call-ID: reg-1\r\nCSeq: 1 REGISTER\r\n"
    'WWW-Authenticate: Digest realm="example.com", nonce="bm9uY2UtMQ", qop="auth",'
    ' algorithm=SHA-256, opaque="op1", stale=FALSE\r\n'
    'WWW-Authenticate: Digest realm="example.com", nonce="bm9uY2UtMQ", qop="auth,auth-int"\r\n'
    "Content-Length: 0\r\n\r\n",
    "REGISTER sip:example.com SIP/2.0\r\n"
    "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK5517;rport\r\n"
    "Max-Forwards: 69\r\nFrom: <sip:alice@example.com>;tag=jt5g6\r\n"
    "To: <sip:alice@example.com>\r\nCall-ID: reg-1\r\nCSeq: 2 REGISTER\r\n"
    'Authorization: Digest algorithm=SHA-256, username="alice", realm="example.com",'
    ' nonce="bm9uY2UtMQ", uri="sip:example.com", response="0f0f", qop=auth,'
    ' cnonce="c1", nc=00000001, opaque="op1"\r\n'
    "Contact: <sip:x1@df7jal23ls0d.invalid;transport=ws>;expires=600\r\n"
    "Content-Length: 0\r\n\r\n",
)


def seeds() -> Iterator[bytes]:
    """RFC 4475 messages, whole and as their header sections, and a digest exchange."""
    for message in rfc4475_messages():
        yield message
        yield message.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    for text in _DIGEST_EXCHANGE:
        yield text.encode()
        for line in text.split("\r\n")[1:]:
            yield line.partition(":")[2].strip().encode()


if __name__ == "__main__":
    main(TARGET, one_input, seeds)
