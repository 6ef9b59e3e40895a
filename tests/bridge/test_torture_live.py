"""RFC 4475 torture messages over live SIP-TLS connections to the bridge, during a call.

Each message of ``shared/testdata/rfc4475`` goes, on its own TLS connection from the trunk's
allowed source (127.0.0.1), to the bridge's carrier-facing SIP-TLS listener, all at once,
while a browser call is up and carrying audio. ``EXPECTED`` below is the answer the RFC's
text names for each message, as the bridge (a UAS for trunk-facing requests, no proxy)
gives it on a stream transport; the sans-IO verdicts of the parser and the validator are
in ``tests/sip/test_rfc4475.py``. "drop" means no response: responses that match no
transaction of ours (RFC 3261 18.1.2), and on a stream transport a message whose
Content-Length promises more bytes than ever arrive (RFC 4475 3.1.2.2: the receiver waits
for them; the bridge's ``message_timeout`` then closes the connection). "close" after a
status means the connection is closed after the answer (the stream cannot be
resynchronised: RFC 4475 3.1.2.3 and 3.3.9, RFC 3261 18.3). "not 400" means answered
but not refused as malformed: the status is the TU's business (484 for a number that is
not E.164, 481 for an unknown dialog, 405 for REGISTER or MESSAGE on a trunk, 200 for
OPTIONS). "501 / 400": either is right.

| file       | RFC       | expected  | why
|------------|-----------|-----------|------------------------------------------
| valid (13) | 3.1.1     | not 400   | requests answered by the TU, responses dropped
| badinv01   | 3.1.2.1   | 400       | empty Via/Contact elements
| clerr      | 3.1.2.2   | drop      | stream: waits for 9999 bytes, closed at message_timeout
| ncl        | 3.1.2.3   | 400 close | negative Content-Length: framing lost
| scalar02   | 3.1.2.4   | 400       | out-of-range CSeq
| scalarlg   | 3.1.2.5   | drop      | a response: discarded
| quotbal    | 3.1.2.6   | 400       | unterminated quote
| ltgtruri   | 3.1.2.7   | 400       | ``<>`` around the Request-URI
| lwsruri    | 3.1.2.8   | 400       | LWS in the Request-URI
| lwsstart   | 3.1.2.9   | 400       | several SP in the Request-Line
| trws       | 3.1.2.10  | 400       | trailing SP after SIP/2.0
| escruri    | 3.1.2.11  | 400       | escaped headers in a SIP Request-URI
| baddate    | 3.1.2.12  | 400       | Date not in GMT
| regbadct   | 3.1.2.13  | 400       | Contact with ``?`` outside ``<>``
| badaspec   | 3.1.2.14  | 400       | spaces inside ``<>``
| baddn      | 3.1.2.15  | 400       | unquoted display names (file lacks the blank line)
| badvers    | 3.1.2.16  | 505       | SIP/7.0
| mismatch01 | 3.1.2.17  | 400       | CSeq method differs
| mismatch02 | 3.1.2.18  | 501 / 400 | unknown method and CSeq mismatch: either
| bigcode    | 3.1.2.19  | drop      | a response with a bad status code: discarded
| badbranch  | 3.2.1     | not 400   | accepted (RFC 2543 matching)
| insuf      | 3.3.1     | 400       | no Call-ID, From, To
| unkscm     | 3.3.2     | 416       | unknown Request-URI scheme
| novelsc    | 3.3.3     | 416       | soap.beep (RFC: 416 or 404)
| unksm2     | 3.3.4     | 400       | REGISTER with non-SIP AORs
| bext01     | 3.3.5     | 420       | unknown Require tags
| invut      | 3.3.6     | not 400   | RFC: 415; here the TU's answer to an INVITE from a trunk
| regaut01   | 3.3.7     | not 400   | RFC: 401/405; a trunk listener is no registrar
| multi01    | 3.3.8     | 400       | repeated Call-ID, To, From, CSeq, Max-Forwards
| mcl01      | 3.3.9     | 400 close | conflicting Content-Length: framing lost
| bcast      | 3.3.10    | drop      | a response: discarded
| zeromf     | 3.3.11    | not 400   | a UAS serves it (483 is a proxy's answer)
| cparam01/02 | 3.3.12-13 | not 400   | accepted
| regescrt   | 3.3.14    | not 400   | accepted
| sdp01      | 3.3.15    | not 400   | RFC: 406; here the TU's answer to an INVITE from a trunk
| inv2543    | 3.4.1     | not 400   | 100 Trying: accepted (see INV2543 below)

Over WSS (``EXPECTED_WS``, the browser side: Signaling is the TU) each message is one
WebSocket message, so the framing cases are answered like datagrams: clerr, ncl and mcl01
get 400 and the connection stays (RFC 4475 3.1.2.2, 3.1.2.3, 3.3.9); valid requests get the
browser TU's answers (401/407 challenges, 481, 200 to OPTIONS, 501 to unknown methods).

INV2543: the RFC 2543 syntax parses (100 Trying). The trunk TU then refuses it 400 "INVITE
without Contact" (it cannot build a dialog without one, RFC 3261 8.1.1.8). With no
Content-Length on a stream (mandatory there, RFC 3261 20.14) the INVITE ends at its blank
line; its SDP lines stay in the stream and are dropped at ``message_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from tests.bridge import test_calls as _call_fixtures
from tests.bridge.test_calls import Harness
from tests.bridge.test_hostile_connections import (
    _audio_flows,
    _call_with_audio,
    _client_ctx,
    _finish,
)
from tests.sip.test_rfc4475 import MANIFEST, load

Factory = Callable[..., Awaitable[Harness]]
bridge = _call_fixtures.bridge
pki = _call_fixtures.pki

pytestmark = pytest.mark.timeout(60)

PASS = "not 400"
DROP = "drop"
EXPECTED: dict[str, str] = {
    "badinv01.dat": "400",
    "clerr.dat": DROP,
    "ncl.dat": "400 close",
    "scalar02.dat": "400",
    "scalarlg.dat": DROP,
    "quotbal.dat": "400",
    "ltgtruri.dat": "400",
    "lwsruri.dat": "400",
    "lwsstart.dat": "400",
    "trws.dat": "400",
    "escruri.dat": "400",
    "baddate.dat": "400",
    "regbadct.dat": "400",
    "badaspec.dat": "400",
    "baddn.dat": "400",
    "badvers.dat": "505",
    "mismatch01.dat": "400",
    "mismatch02.dat": "501 / 400",
    "bigcode.dat": DROP,
    "badbranch.dat": PASS,
    "insuf.dat": "400",
    "unkscm.dat": "416",
    "novelsc.dat": "416",
    "unksm2.dat": "400",
    "bext01.dat": "420",
    "invut.dat": PASS,
    "regaut01.dat": PASS,
    "multi01.dat": "400",
    "mcl01.dat": "400 close",
    "bcast.dat": DROP,
    "zeromf.dat": PASS,
    "cparam01.dat": PASS,
    "cparam02.dat": PASS,
    "regescrt.dat": PASS,
    "sdp01.dat": PASS,
    "inv2543.dat": PASS,
    # 3.1.1: requests are answered (not as malformed), responses are dropped
    "wsinv.dat": PASS,
    "intmeth.dat": PASS,
    "esc01.dat": PASS,
    "escnull.dat": PASS,
    "esc02.dat": PASS,
    "lwsdisp.dat": PASS,
    "longreq.dat": PASS,
    "dblreq.dat": PASS,
    "semiuri.dat": PASS,
    "transports.dat": PASS,
    "mpart01.dat": PASS,
    "unreason.dat": DROP,
    "noreason.dat": DROP,
}

EXPECTED_WS = EXPECTED | {
    # one SIP message per WebSocket message (RFC 7118 5): framing errors are the datagram
    # ones, answered 400 with the connection kept
    "clerr.dat": "400",
    "ncl.dat": "400",
    "mcl01.dat": "400",
    # the browser side answers an unknown method 501 (the trunk side: 405)
    "intmeth.dat": "501",
    "esc02.dat": "501",
}

STATUS = re.compile(rb"^SIP/2\.0 (\d{3}) ", re.MULTILINE)
WAIT_WS = 1.5
WAIT = 2.5
"""Seconds each connection is watched: past the 1 s message_timeout of the bridge."""


async def _send(harness: Harness, data: bytes) -> tuple[list[int], bool, float]:
    """Statuses answered, whether the bridge closed the connection, and when."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        harness.running.sip_port,
        ssl=_client_ctx(harness),
        local_addr=("127.0.0.1", 0),
        server_hostname="localhost",
    )
    start = time.monotonic()
    writer.write(data)
    received = b""
    closed = False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT):
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while chunk := await reader.read(65536):
                    received += chunk
            closed = True
    took = time.monotonic() - start
    writer.transport.abort()
    return [int(m) for m in STATUS.findall(received)], closed, took


def _framed(data: bytes) -> bytes:
    """The message as the RFC prints it: the corpus file of baddn lost its blank line."""
    return data if b"\r\n\r\n" in data else data + b"\r\n"


def _verdict(statuses: list[int], closed: bool, took: float) -> str:
    if not statuses:
        return DROP
    first = statuses[0]
    if first in (400, 505, 513):
        return f"{first} close" if closed and took < 0.9 else str(first)
    return str(first) if first in (416, 420, 501) else PASS


async def test_torture_messages_over_tls_get_the_rfc_answers_while_a_call_goes_on(
    bridge: Factory,
) -> None:
    harness = await bridge(sip={"message_timeout": 1.0})
    call = await _call_with_audio(harness)
    names = [name for name, _ in MANIFEST]
    assert sorted(names) == sorted(EXPECTED)
    results = await asyncio.gather(*(_send(harness, _framed(load(name))) for name in names))
    await _audio_flows(call)
    seen = {name: _verdict(*result) for name, result in zip(names, results, strict=True)}
    for name, (statuses, closed, took) in zip(names, results, strict=True):
        print(f"{name:15} {EXPECTED[name]:10} statuses={statuses} closed={closed} {took:.2f}s")
    wrong = {
        name: (seen[name], EXPECTED[name])
        for name in names
        if seen[name] not in EXPECTED[name].split(" / ")
    }
    assert not wrong, wrong
    await _finish(harness, call)


async def _send_ws(harness: Harness, session: aiohttp.ClientSession, data: bytes) -> list[int]:
    """Statuses answered to one torture message sent as one WebSocket message."""
    url = f"wss://127.0.0.1:{harness.running.https_port}/sip"
    statuses: list[int] = []
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_bytes(data)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_WS):
                async for message in ws:
                    raw = message.data if isinstance(message.data, bytes) else str(message.data)
                    text = raw.encode() if isinstance(raw, str) else raw
                    statuses.extend(int(m) for m in STATUS.findall(text))
    return statuses


async def test_torture_messages_over_wss_get_the_rfc_answers_while_a_call_goes_on(
    bridge: Factory,
) -> None:
    harness = await bridge(sections={"http": {"listen_port": 0, "max_websockets_per_source": 64}})
    call = await _call_with_audio(harness)
    names = [name for name, _ in MANIFEST]
    connector = aiohttp.TCPConnector(ssl=_client_ctx(harness), limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(
            *(_send_ws(harness, session, _framed(load(name))) for name in names)
        )
    await _audio_flows(call)
    for name, statuses in zip(names, results, strict=True):
        print(f"{name:15} {EXPECTED_WS[name]:10} statuses={statuses}")
    seen = {
        name: _verdict(statuses, False, 0.0) for name, statuses in zip(names, results, strict=True)
    }
    wrong = {
        name: (seen[name], EXPECTED_WS[name])
        for name in names
        if seen[name] not in EXPECTED_WS[name].split(" / ")
    }
    assert not wrong, wrong
    await _finish(harness, call)
