"""StreamFramer: whole, byte by byte, with trailing data, keep-alives and limits."""

from __future__ import annotations

import pytest

from sip_gateway.sip.errors import MessageTooLargeError, RemoteProtocolError
from sip_gateway.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from sip_gateway.sip.parser import KeepAlive, RejectedFrame, StreamFramer


def make(n: int, body: bytes = b"") -> bytes:
    head = (
        f"MESSAGE sips:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK{n}\r\n"
        f"From: <sips:alice@example.com>;tag=a{n}\r\n"
        f"To: <sips:bob@example.com>\r\n"
        f"Call-ID: call-{n}\r\n"
        f"CSeq: {n} MESSAGE\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


BODY = b"binary \x00\r\n\r\n\xff body"
RESPONSE = b"SIP/2.0 200 OK\r\nCSeq: 1 MESSAGE\r\nl: 3\r\n\r\nabc"


Item = SipMessage | KeepAlive | RejectedFrame


def drain(framer: StreamFramer) -> list[Item]:
    out: list[Item] = []
    while (item := framer.next_message()) is not None:
        out.append(item)
    return out


def feed(chunks: list[bytes], max_message_size: int = 65536) -> list[Item]:
    framer = StreamFramer(max_message_size=max_message_size)
    out: list[Item] = []
    for chunk in chunks:
        framer.receive_data(chunk)
        out += drain(framer)
    assert framer.buffered == 0 or out
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


STREAM = make(1, BODY) + b"\r\n\r\n" + RESPONSE + make(2)
EXPECTED = [
    parse_message(make(1, BODY)),
    KeepAlive(ping=True),
    parse_message(RESPONSE),
    parse_message(make(2)),
]


def test_whole():
    assert feed([STREAM]) == EXPECTED


def test_byte_at_a_time():
    # a ping split across reads shows as two pongs (documented)
    expected = [EXPECTED[0], KeepAlive(ping=False), KeepAlive(ping=False), *EXPECTED[2:]]
    assert feed(bytewise(STREAM)) == expected


@pytest.mark.parametrize("cut", [1, 5, 37, 100, 150, 200, 260, 300])
def test_every_split_point(cut: int):
    assert feed([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_trailing_partial_message_waits():
    framer = StreamFramer()
    framer.receive_data(make(1) + make(2, BODY)[:-3])
    first = framer.next_message()
    assert isinstance(first, SipRequest) and first.call_id == "call-1"
    assert framer.next_message() is None
    assert framer.buffered > 0
    framer.receive_data(make(2, BODY)[-3:])
    second = framer.next_message()
    assert isinstance(second, SipRequest) and second.body == BODY


def test_two_dozen_messages_in_one_read():
    data = b"".join(make(i, BODY if i % 2 else b"") for i in range(24))
    messages = feed([data])
    assert [m.cseq.seq for m in messages] == list(range(24))  # type: ignore[union-attr]


def test_keepalives():
    assert feed([b"\r\n\r\n"]) == [KeepAlive(ping=True)]
    assert feed([b"\r\n"]) == [KeepAlive(ping=False)]
    assert feed([b"\r\n\r\n\r\n"]) == [KeepAlive(ping=True), KeepAlive(ping=False)]
    assert feed([b"\r\n" + RESPONSE]) == [KeepAlive(ping=False), parse_message(RESPONSE)]
    assert feed([b"\r\n\r", b"\n"]) == [KeepAlive(ping=True)]
    assert feed([b"\r", b"\n\r\n\r\n"]) == [KeepAlive(ping=True), KeepAlive(ping=False)]


def test_missing_content_length_counts_as_zero():
    assert feed([b"SIP/2.0 100 Trying\r\nCSeq: 1 INVITE\r\n\r\n" + RESPONSE]) == [
        parse_message(b"SIP/2.0 100 Trying\r\nCSeq: 1 INVITE\r\n\r\n"),
        parse_message(RESPONSE),
    ]


def test_header_section_too_large():
    framer = StreamFramer(max_message_size=1000)
    framer.receive_data(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 960)
    assert framer.next_message() is None
    framer.receive_data(b"a" * 50)
    with pytest.raises(MessageTooLargeError) as info:
        framer.next_message()
    assert info.value.status_code == 513
    assert framer.buffered == 0
    framer.receive_data(b"more")
    assert framer.buffered == 0
    with pytest.raises(MessageTooLargeError):
        framer.next_message()  # stays failed: the stream cannot resynchronize
    assert framer.failed_data.startswith(b"OPTIONS")


def test_endless_header_byte_by_byte_is_bounded():
    framer = StreamFramer(max_message_size=200)
    with pytest.raises(MessageTooLargeError):
        for _ in range(1000):
            framer.receive_data(b"x")
            framer.next_message()
            assert framer.buffered <= 201


def test_content_length_over_the_limit_is_rejected_before_the_body():
    framer = StreamFramer(max_message_size=1000)
    framer.receive_data(make(1).replace(b"Content-Length: 0", b"Content-Length: 5000"))
    with pytest.raises(MessageTooLargeError):
        framer.next_message()


def test_exact_limit_is_accepted():
    data = make(1, BODY)
    assert len(feed([data], max_message_size=len(data))) == 1
    with pytest.raises(MessageTooLargeError):
        feed([data], max_message_size=len(data) - 1)


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1.5", b"", b"0x10", b"99999999999999999999"])
def test_bad_content_length_is_400(value: bytes):
    framer = StreamFramer()
    framer.receive_data(make(1).replace(b"Content-Length: 0", b"Content-Length: " + value))
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_message()
    assert info.value.status_code == 400


def test_well_framed_but_malformed_message_is_rejected_and_the_stream_goes_on():
    bad = make(7, BODY).replace(b"To: <sips:bob@example.com>", b'To: "unbalanced <sips:b@c>')
    framer = StreamFramer()
    framer.receive_data(b"\x16\x03\x01 not sip\r\n\r\n" + bad + make(8))
    first, second, third = drain(framer)
    assert isinstance(first, RejectedFrame) and first.error.status_code == 400
    assert first.frame == b"\x16\x03\x01 not sip\r\n\r\n"
    assert isinstance(second, RejectedFrame) and second.frame == bad
    assert isinstance(third, SipRequest) and third.call_id == "call-8"


def test_version_error_is_a_rejected_frame_with_505():
    framer = StreamFramer()
    framer.receive_data(make(1).replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    (item,) = drain(framer)
    assert isinstance(item, RejectedFrame) and item.error.status_code == 505


def test_framing_errors_are_sticky():
    framer = StreamFramer()
    framer.receive_data(make(1).replace(b"Content-Length: 0", b"Content-Length: -1") + make(2))
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_message()
    assert info.value.status_code == 400
    with pytest.raises(RemoteProtocolError):
        framer.next_message()


def test_framing_and_parsing_agree_on_folded_and_repeated_content_length():
    folded = make(1, b"abc").replace(b"Content-Length: 3", b"Content-Length:\r\n  03\r\nl: 3")
    trick = make(2).replace(b"Call-ID: call-2", b"Subject: x\r\n l: 99\r\nCall-ID: call-2")
    items = feed([folded + trick])
    assert [m.body for m in items] == [b"abc", b""]  # type: ignore[union-attr]
    assert items[1].headers.get("Subject") == "x l: 99"  # type: ignore[union-attr]


def test_responses_and_requests_are_distinguished():
    items = feed([RESPONSE + make(3)])
    assert isinstance(items[0], SipResponse) and isinstance(items[1], SipRequest)
