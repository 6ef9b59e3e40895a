"""Bad input on one connection: the RFC's error response, a clear event, and nothing worse."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sip_gateway.sip.connection import SipConnection, SipConnectionConfig
from sip_gateway.sip.events import KeepAliveReceived, MessageRejected, RequestReceived
from sip_gateway.sip.message import parse_message

from .pair import make_request


def _events(conn: SipConnection) -> list[object]:
    out = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def _server() -> SipConnection:
    return SipConnection(
        SipConnectionConfig(peer_host="192.0.2.7", peer_port=40001, max_message_size=4096)
    )


def test_malformed_request_gets_400_and_connection_goes_on() -> None:
    conn = _server()
    bad = (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS 192.0.2.7:5061;branch=z9hG4bKbad1\r\n"
        b'From: <sip:alice@example.com>;tag=1\r\nTo: "unterminated <sip:bob@example.com>\r\n'
        b"Call-ID: bad-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    good = make_request("OPTIONS").to_bytes()
    conn.receive_data(bad + good, 0.0)
    events = _events(conn)
    rejected = [e for e in events if isinstance(e, MessageRejected)]
    assert [(r.status_code, r.response_sent, r.fatal) for r in rejected] == [(400, True, False)]
    assert [type(e) for e in events if isinstance(e, RequestReceived)] == [RequestReceived]
    response = conn.data_to_send()
    assert response.startswith(b"SIP/2.0 400 ")
    assert b"Call-ID: bad-1" in response and b"branch=z9hG4bKbad1" in response
    assert not conn.closed


def test_trailing_spaces_on_the_request_line_still_get_400() -> None:  # RFC 4475 3.1.2.10
    conn = _server()
    conn.receive_data(
        b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n"
        b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093\r\n"
        b"To: <sip:remote-target@example.com>\r\nFrom: <sip:l@example.com>;tag=329429089\r\n"
        b"Call-ID: trws.1\r\nCSeq: 238923 OPTIONS\r\nMax-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n",
        0.0,
    )
    response = conn.data_to_send()
    assert response.startswith(b"SIP/2.0 400 ")
    assert b"Call-ID: trws.1" in response and b"branch=z9hG4bK299342093" in response
    assert not conn.closed


def test_missing_call_id_from_to_gets_400() -> None:  # RFC 4475 3.3.1 insuf
    conn = _server()
    conn.receive_data(
        b"INVITE sip:user@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n"
        b"Content-Type: application/sdp\r\nl: 0\r\n\r\n",
        0.0,
    )
    assert conn.data_to_send().startswith(b"SIP/2.0 400 ")
    assert not conn.closed


def test_unsupported_require_gets_420_with_unsupported() -> None:
    conn = _server()
    conn.receive_data(
        make_request("OPTIONS", extra=(("Require", "nothingSupportsThis"),)).to_bytes(), 0.0
    )
    response = parse_message(conn.data_to_send())
    assert response.status_code == 420  # type: ignore[union-attr]
    assert response.headers.get("Unsupported") == "nothingSupportsThis"


def test_oversize_message_gets_513_and_closes() -> None:
    conn = _server()
    big = make_request("MESSAGE", body=b"x" * 8000).to_bytes()
    conn.receive_data(big, 0.0)
    events = _events(conn)
    assert any(isinstance(e, MessageRejected) and e.status_code == 513 and e.fatal for e in events)
    assert conn.closed


def test_keepalive_ping_gets_pong() -> None:
    conn = _server()
    conn.receive_data(b"\r\n\r\n", 0.0)
    assert conn.data_to_send() == b"\r\n"
    assert KeepAliveReceived(ping=True) in _events(conn)  # type: ignore[comparison-overlap]


def test_rport_and_received_are_stamped() -> None:
    conn = _server()
    conn.receive_data(make_request("OPTIONS").to_bytes(), 0.0)
    (event,) = [e for e in _events(conn) if isinstance(e, RequestReceived)]
    via = event.request.top_via
    assert via.rport == "40001" and via.received == "192.0.2.7"


def test_websocket_message_mode() -> None:
    conn = _server()
    conn.receive_message(make_request("OPTIONS").to_bytes(), 0.0)
    (event,) = [e for e in _events(conn) if isinstance(e, RequestReceived)]
    conn.send_response(event.transaction_id, _ok(event), 0.0)
    (message,) = conn.messages_to_send()
    assert message.startswith(b"SIP/2.0 200 ")


def _ok(event: RequestReceived):  # type: ignore[no-untyped-def]
    from sip_gateway.sip.message import build_response

    return build_response(event.request, 200)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_any_bytes_never_raise(chunks: list[bytes]) -> None:
    conn = _server()
    for chunk in chunks:
        conn.receive_data(chunk, 0.0)
        conn.data_to_send()
        _events(conn)


def test_invalid_ack_is_never_answered() -> None:
    conn = _server()
    ack = make_request("ACK").to_bytes().replace(b"Call-ID: call-1@test\r\n", b"")
    conn.receive_data(ack, 0.0)
    (rejected,) = [e for e in _events(conn) if isinstance(e, MessageRejected)]
    assert (rejected.status_code, rejected.response_sent) == (400, False)
    assert conn.data_to_send() == b""


def _response_lines(*drop: str, twice: str = "") -> bytes:
    lines = [
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/TLS 127.0.0.1:5070;branch=z9hG4bKfuzz1",
        "From: <sips:alice@127.0.0.1>;tag=alice-tag",
        "To: <sips:bob@127.0.0.1>;tag=bob-tag",
        "Call-ID: call-1@test",
        "CSeq: 1 OPTIONS",
    ]
    kept = [line for line in lines if line.split(":")[0] not in drop]
    kept += [line for line in lines if line.startswith(f"{twice}:")] if twice else []
    return ("\r\n".join([*kept, "Content-Length: 0"]) + "\r\n\r\n").encode()


def test_responses_without_matching_headers_are_dropped_not_raised() -> None:
    """Found by the fuzzer (tests/fuzz/regressions/sip_stream): a response whose CSeq was
    repeated made the transaction layer's matching raise out of ``receive_data``."""
    bad = [
        _response_lines(twice="CSeq"),
        _response_lines("Via"),
        _response_lines("CSeq"),
        _response_lines("Call-ID"),
        _response_lines("From", "To"),
    ]
    for receive in ("receive_data", "receive_message"):
        conn = _server()
        conn.send_request(make_request("OPTIONS", br="z9hG4bKfuzz1"), 0.0)
        conn.data_to_send()
        for data in bad:
            getattr(conn, receive)(data, 0.0)
        rejected = [e for e in _events(conn) if isinstance(e, MessageRejected)]
        assert [(r.status_code, r.response_sent, r.fatal) for r in rejected] == [
            (400, False, False)
        ] * len(bad)
        assert conn.data_to_send() == b""
        getattr(conn, receive)(_response_lines(), 0.0)
        assert "ResponseReceived" in [type(e).__name__ for e in _events(conn)]
