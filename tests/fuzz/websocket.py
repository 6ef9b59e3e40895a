"""Fuzz target: SIP over WebSocket (RFC 7118) from the client's raw frames to the SIP core.

What is covered: the bytes a browser sends after the upgrade, through aiohttp's
``WebSocketReader`` exactly as :class:`~sip_gateway.aio.websocket.SipWebSocketService`
configures it (``max_msg_size`` twice the SIP limit, ``decode_text=False``,
permessage-deflate negotiated or not: the input's first byte chooses, with how the
bytes are cut into reads), then every TEXT or BINARY message handed, as
:class:`~sip_gateway.aio.websocket.WebSocketWire` does, to
:meth:`SipConnection.receive_message` (keep-alives, 513 for oversize, parsing, the UAS
checks, error responses, transactions). aiohttp's WebSocket frame parser is its own code,
not ours: the server runs the Cython build of ``reader_py``; the fuzzer runs and
instruments ``reader_py`` itself, the same source. The aiohttp handshake, the asyncio
adapter (``WebSocketWire`` is a thin pump) and the write side are not covered.

Properties: the reader fails only with aiohttp's ``WebSocketError`` (answered with a
close frame and its code) or, for a corrupt permessage-deflate stream, ``zlib.error``
(aiohttp lets it through; ``WebSocketResponse.receive`` turns any exception into an
ERROR message and an abnormal closure, which ``WebSocketWire.read`` raises as
``ConnectionError`` and the endpoint takes as the connection's end);
``receive_message`` never raises; what the connection sends back is a keep-alive pong
or a SIP response.

Seeds: masked client frames carrying the RFC 4475 messages, whole and fragmented,
compressed and not, with ping, pong and close frames.

Run: ``python -m tests.fuzz.websocket -max_total_time=60 [corpus_dir]``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from tests.fuzz.harness import instrumented, main, rfc4475_messages

with instrumented(__name__, "sip_gateway.sip", "aiohttp._websocket"):
    from aiohttp._websocket.models import WebSocketError, WSMsgType
    from aiohttp._websocket.reader_py import WebSocketDataQueue, WebSocketReader

    from sip_gateway.sip.connection import SipConnection, SipConnectionConfig

TARGET = "websocket"
MAX_SIP_MESSAGE = 65536  # SipEndpointConfig.max_message_size's default
QUEUE_LIMIT = 2**18  # aiohttp's DEFAULT_CHUNK_SIZE, what WebSocketResponse passes
_MASK = b"\x37\xfa\x21\x3d"


class _Protocol:
    """The three members of aiohttp's protocol the data queue touches (flow control)."""

    def __init__(self) -> None:
        self._reading_paused = False

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False


def one_input(data: bytes) -> None:
    """The property for one input (raises AssertionError or the crash itself)."""
    if not data:
        return
    control, stream = data[0], data[1:]
    queue = WebSocketDataQueue(_Protocol(), QUEUE_LIMIT, loop=None)  # type: ignore[arg-type]
    reader = WebSocketReader(
        queue, 2 * MAX_SIP_MESSAGE, compress=bool(control & 1), decode_text=False
    )
    connection = SipConnection(
        SipConnectionConfig(transport="WSS", peer_host="192.0.2.7", peer_port=40000)
    )
    size = (control >> 1) or len(stream) or 1
    for start in range(0, len(stream), size):
        failed, _ = reader.feed_data(stream[start : start + size])
        if not deliver(queue, connection):
            return
        if failed:
            break
    error = queue.exception()
    if error is not None and not isinstance(error, WebSocketError | zlib.error):
        raise error


def deliver(queue: WebSocketDataQueue, connection: SipConnection) -> bool:
    """Hand queued messages to the SIP core as the wire does; False once closed."""
    while queue._buffer:
        message = queue._read_from_buffer()
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            connection.receive_message(message.data, now=0.0)
            while connection.next_event() is not None:
                pass
            for out in connection.messages_to_send():
                assert out == b"\r\n" or out.startswith(b"SIP/2.0 "), "not a pong or response"
        elif message.type is WSMsgType.CLOSE:
            return False
    return True


def frame(payload: bytes, opcode: int = 0x1, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One masked client frame (RFC 6455 5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return header + _MASK + masked


def deflate(payload: bytes) -> bytes:
    """permessage-deflate (RFC 7692): raw deflate without the final empty block's tail."""
    compressor = zlib.compressobj(wbits=-15)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def seeds() -> Iterator[bytes]:
    """Client frame streams: whole, fragmented, compressed, with control frames."""
    for index, message in enumerate(rfc4475_messages()):
        cut = len(message) // 2
        yield b"\x00" + frame(message)
        yield bytes([(index % 32) << 1]) + frame(message, 0x2) + frame(b"\r\n\r\n")
        yield (
            b"\x00"
            + frame(message[:cut], fin=False)
            + frame(b"hi", 0x9)
            + frame(message[cut:], 0x0)
            + frame(struct.pack("!H", 1000) + b"bye", 0x8)
        )
        yield b"\x01" + frame(deflate(message), rsv1=True) + frame(b"", 0xA)


if __name__ == "__main__":
    main(TARGET, one_input, seeds)
