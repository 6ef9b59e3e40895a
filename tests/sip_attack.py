"""Attack clients for the abuse tests: user enumeration, password guessing and floods.

Theory of operation: these are small versions of what SIPVicious's ``svwar`` and
``svcrack`` do, speaking SIP over TLS and over secure WebSocket (SIPVicious itself speaks
only UDP). :class:`RawSip` sends hand-written requests on one connection, from a chosen
loopback source address (``127.0.0.2`` is loopback too on Linux, so "another source" is
another address) and reads the responses with a small parser of its own, so that what
is compared is exactly what went over the wire.

* :func:`enumerate_users` sends one request per candidate user name and reduces each
  answer to its *signature*: status, reason phrase, header names, and for a challenge its
  realm, algorithms, qop, whether it has an opaque, and the nonce's length and alphabet.
  ``svwar`` classifies users by differences in exactly these; a bridge that does not leak
  gives every candidate the same signature.
* :func:`guess_passwords` runs a wordlist against one user the way ``svcrack`` does:
  fetch a challenge, answer it with the next guess, look at the status.
* :func:`flood` sends requests back to back (bounded in count) and counts the statuses.

It never logs a password or a digest response.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from sip_gateway.sip.auth_header import DigestChallenge, parse_challenge
from sip_gateway.sip.digest import DigestAlgorithm, compute_ha1, compute_response

__all__ = [
    "RawSip",
    "SipAnswer",
    "enumerate_users",
    "flood",
    "guess_passwords",
    "signature",
]

_NONCE_ALPHABETS = (("hex", re.compile(r"[0-9a-f]+")), ("b64url", re.compile(r"[A-Za-z0-9_=-]+")))


@dataclass(frozen=True, slots=True)
class SipAnswer:
    """A final response as read off the wire."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    elapsed: float
    """Seconds from sending the request to reading this response."""

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def _parse(data: bytes, elapsed: float) -> SipAnswer:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    _version, status, reason = [*lines[0].split(" ", 2), ""][:3]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return SipAnswer(int(status), reason, tuple(headers), elapsed)


class RawSip:
    """One SIP connection (TLS or WSS) from a chosen source address."""

    def __init__(self, domain: str, transport: str) -> None:
        self.domain = domain
        self.transport = transport
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.local = ("127.0.0.1", 0)
        self._cseq = 0

    @classmethod
    async def tls(
        cls, host: str, port: int, context: ssl.SSLContext, *, source: str, domain: str
    ) -> RawSip:
        conn = cls(domain, "TLS")
        conn._reader, conn._writer = await asyncio.open_connection(
            host, port, ssl=context, local_addr=(source, 0), server_hostname="localhost"
        )
        conn.local = conn._writer.get_extra_info("sockname")[:2]
        return conn

    @classmethod
    async def wss(cls, url: str, context: ssl.SSLContext, *, source: str, domain: str) -> RawSip:
        conn = cls(domain, "WSS")
        connector = aiohttp.TCPConnector(ssl=context, local_addr=(source, 0))
        conn._session = aiohttp.ClientSession(connector=connector)
        conn._ws = await conn._session.ws_connect(url, protocols=("sip",))
        conn.local = conn._ws.get_extra_info("sockname")[:2]
        return conn

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await self._writer.wait_closed()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    def build(
        self,
        method: str,
        user: str,
        *,
        call_id: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        uri: str | None = None,
    ) -> bytes:
        """A request from ``user`` (REGISTER: to itself; others: to a test number)."""
        self._cseq += 1
        host, port = self.local
        target = uri or (
            f"sip:{self.domain}" if method == "REGISTER" else f"sip:+441632960999@{self.domain}"
        )
        to = f"sip:{user}@{self.domain}" if method == "REGISTER" else target
        lines = [
            f"{method} {target} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {host}:{port};branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{self.domain}>;tag={secrets.token_hex(4)}",
            f"To: <{to}>",
            f"Call-ID: {call_id or secrets.token_hex(10)}",
            f"CSeq: {self._cseq} {method}",
            f"Contact: <sip:{user}@{host}:{port};transport={self.transport.lower()}>",
            *(f"{name}: {value}" for name, value in headers),
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode()

    async def send(self, data: bytes) -> None:
        if self._ws is not None:
            await self._ws.send_str(data.decode())
        else:
            assert self._writer is not None
            self._writer.write(data)
            await self._writer.drain()

    async def read(self) -> bytes:
        """The next message (provisional responses included)."""
        if self._ws is not None:
            msg = await self._ws.receive()
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise ConnectionError(f"WebSocket closed: {msg.type}")
            return msg.data.encode() if isinstance(msg.data, str) else bytes(msg.data)
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"\r\n(?:Content-Length|l)\s*:\s*(\d+)", head, re.IGNORECASE)
        if match and int(match.group(1)):
            head += await self._reader.readexactly(int(match.group(1)))
        return head

    async def request(self, data: bytes, timeout: float = 5.0) -> SipAnswer:  # noqa: ASYNC109
        """Send ``data`` and return its final response (1xx skipped)."""
        started = time.perf_counter()
        await self.send(data)
        async with asyncio.timeout(timeout):
            while True:
                answer = _parse(await self.read(), time.perf_counter() - started)
                if answer.status >= 200:
                    return answer


def signature(answer: SipAnswer) -> tuple[object, ...]:
    """What an enumerator compares: everything but per-response random values."""
    shape: list[object] = []
    for name in ("WWW-Authenticate", "Proxy-Authenticate"):
        for value in answer.get_all(name):
            parsed = parse_challenge(value)
            assert isinstance(parsed, DigestChallenge), value
            alphabet = next((n for n, r in _NONCE_ALPHABETS if r.fullmatch(parsed.nonce)), "?")
            shape.append(
                (
                    name,
                    parsed.realm,
                    parsed.algorithm,
                    parsed.qop,
                    parsed.opaque is not None and len(parsed.opaque),
                    parsed.stale,
                    len(parsed.nonce),
                    alphabet,
                )
            )
    names = tuple(sorted(n.lower() for n, _ in answer.headers))
    return (answer.status, answer.reason, names, tuple(shape))


async def enumerate_users(
    conn: RawSip, method: str, candidates: Sequence[str]
) -> dict[str, tuple[object, ...]]:
    """``svwar``: one request per candidate user; each answer's :func:`signature`."""
    found = {}
    for user in candidates:
        answer = await conn.request(conn.build(method, user))
        found[user] = signature(answer)
    return found


def _challenge(answer: SipAnswer) -> DigestChallenge:
    for name in ("WWW-Authenticate", "Proxy-Authenticate"):
        for value in answer.get_all(name):
            parsed = parse_challenge(value)
            if isinstance(parsed, DigestChallenge) and parsed.algorithm in (None, "MD5"):
                return parsed
    raise AssertionError(f"no MD5 challenge in {answer.status} {answer.reason}")


def authorization(
    challenge: DigestChallenge, user: str, password: str, method: str, uri: str
) -> str:
    """A Digest MD5 answer to ``challenge`` (qop=auth)."""
    ha1 = compute_ha1(user, challenge.realm, password, DigestAlgorithm.MD5)
    cnonce = secrets.token_hex(8)
    response = compute_response(
        algorithm=DigestAlgorithm.MD5,
        ha1=ha1,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop="auth",
        nc="00000001",
        cnonce=cnonce,
    )
    opaque = f', opaque="{challenge.opaque}"' if challenge.opaque is not None else ""
    return (
        f'Digest username="{user}", realm="{challenge.realm}", nonce="{challenge.nonce}", '
        f'uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc=00000001, '
        f'cnonce="{cnonce}"{opaque}'
    )


async def register_with(conn: RawSip, user: str, password: str) -> SipAnswer:
    """One REGISTER attempt: fetch a challenge, answer it with ``password``.

    Returns the answer to the credentials, or the first answer when it is no challenge
    (a blocked source gets 403 at once, a flooded one 503).
    """
    call_id = secrets.token_hex(10)
    first = await conn.request(conn.build("REGISTER", user, call_id=call_id))
    if first.status != 401:
        return first
    uri = f"sip:{conn.domain}"
    header = authorization(_challenge(first), user, password, "REGISTER", uri)
    return await conn.request(
        conn.build("REGISTER", user, call_id=call_id, headers=[("Authorization", header)])
    )


async def guess_passwords(
    conn: RawSip, user: str, wordlist: Sequence[str]
) -> list[tuple[int, float]]:
    """``svcrack``: each guess's final status and how long its answer took."""
    results = []
    for guess in wordlist:
        answer = await register_with(conn, user, guess)
        results.append((answer.status, answer.elapsed))
        if answer.status == 200:
            break
    return results


async def flood(
    conn: RawSip, method: str, count: int, *, window: int = 50, pause: float = 0.05
) -> tuple[Counter[int], set[str]]:
    """Send ``count`` requests, ``window`` at a time with ``pause`` seconds between windows
    (so that a flood lasts long enough to overlap a call); the statuses and Retry-After
    values of the answers."""
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    sent = 0
    while sent < count:
        if sent:
            await asyncio.sleep(pause)
        batch = min(window, count - sent)
        for _ in range(batch):
            await conn.send(conn.build(method, f"flood{sent}"))
            sent += 1
        got = 0
        async with asyncio.timeout(10):
            while got < batch:
                answer = _parse(await conn.read(), 0.0)
                if answer.status < 200:
                    continue
                got += 1
                statuses[answer.status] += 1
                retry_after.update(answer.get_all("Retry-After"))
    return statuses, retry_after
