"""Fuzz target: one SIP message as a datagram or WebSocket message (``parse_message``).

Property: any bytes either raise :class:`RemoteProtocolError` or give a message whose
typed accessors (Call-ID, CSeq, From, To, Via, Contact, Route, Require ...) and the UAS
checks (``validate_request``) again raise nothing but :class:`RemoteProtocolError`; the
header models re-parse from their own ``str()``; ``to_bytes()`` never refuses a parsed
message and ``parse_message(m.to_bytes()) == m``; an error response built for a request
parses back. Seeds: the RFC 4475 torture messages.

Run: ``python -m tests.fuzz.sip_message -max_total_time=60 [corpus_dir]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.fuzz.harness import instrumented, main, rfc4475_messages

with instrumented(__name__, "sip_gateway.sip"):
    from sip_gateway.sip.errors import RemoteProtocolError
    from sip_gateway.sip.headers import NameAddr, parse_cseq, parse_name_addr, parse_via
    from sip_gateway.sip.message import (
        SipMessage,
        SipRequest,
        build_response,
        parse_message,
        validate_request,
    )
    from sip_gateway.sip.uri import SipUri, parse_uri

TARGET = "sip_message"
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
    if isinstance(message, SipRequest):
        check_model(message.uri)
        try:
            validate_request(message, supported_extensions=frozenset({"timer"}))
        except RemoteProtocolError as exc:
            answer = build_response(message, exc.status_code, exc.reason, headers=exc.headers)
            assert parse_message(answer.to_bytes()) == answer, "error response does not re-parse"


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


def seeds() -> Iterator[bytes]:
    """RFC 4475 messages, whole and as their header sections."""
    for message in rfc4475_messages():
        yield message
        yield message.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"


if __name__ == "__main__":
    main(TARGET, one_input, seeds)
