"""Fuzz target: SIP over a byte stream (TLS): ``StreamFramer`` and ``SipConnection``.

The first input byte chooses how the rest is cut into reads (1 to 64 bytes, or whole)
and the message size limit; the rest is the stream. Properties:

* the framer raises nothing but :class:`RemoteProtocolError`, and after one it raises
  the same error on every later call;
* the messages, rejected frames and final error do not depend on how the stream was
  cut into reads (keep-alives may: a ping split across two reads is two pongs, by
  design);
* every framed message re-frames from its own ``to_bytes()`` to an equal message;
* :meth:`SipConnection.receive_data` (framing, UAS checks, error responses,
  transactions) never raises, and what it sends frames as responses.

Seeds: the RFC 4475 messages back to back, with keep-alives between them.

Run: ``python -m tests.fuzz.sip_stream -max_total_time=60 [corpus_dir]``.
"""

from __future__ import annotations

from collections.abc import Iterator

from tests.fuzz.harness import instrumented, main, rfc4475_messages

with instrumented(__name__, "sip_gateway.sip"):
    from sip_gateway.sip.connection import SipConnection, SipConnectionConfig
    from sip_gateway.sip.errors import RemoteProtocolError
    from sip_gateway.sip.message import SipRequest, SipResponse
    from sip_gateway.sip.parser import KeepAlive, RejectedFrame, StreamFramer

TARGET = "sip_stream"
_LIMITS = (65536, 1024, 300, 64)
_MAX_ITEMS = 1000


def one_input(data: bytes) -> None:
    """The property for one input (raises AssertionError or the crash itself)."""
    if not data:
        return
    control, stream = data[0], data[1:]
    limit = _LIMITS[control >> 6]
    whole = frame([stream], limit)
    pieces = cut(stream, control & 0x3F)
    assert frame(pieces, limit) == whole, "framing depends on how reads are cut"
    for item in whole:
        if isinstance(item, SipRequest | SipResponse):
            assert frame([item.to_bytes()], 65536) == [item], "framed message re-frames"
    connection = SipConnection(SipConnectionConfig(peer_host="192.0.2.7", peer_port=5061))
    for piece in pieces:
        connection.receive_data(piece, now=0.0)
        while connection.next_event() is not None:
            pass
    out = connection.data_to_send()
    for item in frame([out], 1 << 20):
        # Error responses copy Via/From/To/Call-ID/CSeq as received (RFC 3261 8.2.6.2),
        # so they may not parse; they must frame, as responses.
        if isinstance(item, tuple) and item[0] == "rejected":
            assert item[1].startswith(b"SIP/2.0 "), "the connection sent a non-response"
        else:
            assert isinstance(item, SipResponse), "the connection sent an unframeable response"


def cut(stream: bytes, size: int) -> list[bytes]:
    """The stream in reads of ``size`` bytes (0: a single read)."""
    if size == 0:
        return [stream]
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def frame(pieces: list[bytes], limit: int) -> list[object]:
    """What the framer returns for these reads, keep-alives left out (see module doc)."""
    framer = StreamFramer(max_message_size=limit)
    out: list[object] = []
    for piece in pieces:
        framer.receive_data(piece)
        for _ in range(_MAX_ITEMS):
            try:
                item = framer.next_message()
            except RemoteProtocolError as exc:
                failure = (type(exc), exc.status_code, str(exc))
                try:
                    framer.next_message()
                except RemoteProtocolError as again:
                    assert again is exc, "a failed framer raised a different error"
                else:
                    raise AssertionError("a failed framer recovered")
                return [*out, failure]
            if item is None:
                break
            if isinstance(item, RejectedFrame):
                out.append(("rejected", item.frame, item.error.status_code, str(item.error)))
            elif not isinstance(item, KeepAlive):
                out.append(item)
        else:
            raise AssertionError("the framer returned too many items for one read")
    return out


def seeds() -> Iterator[bytes]:
    """Pairs of RFC 4475 messages on one stream, cut several ways, with keep-alives."""
    messages = list(rfc4475_messages())
    for index, message in enumerate(messages):
        following = messages[(index + 1) % len(messages)]
        yield bytes([index % 64]) + message + b"\r\n\r\n" + following
        yield bytes([0x80 | 7]) + b"\r\n" + message


if __name__ == "__main__":
    main(TARGET, one_input, seeds)
