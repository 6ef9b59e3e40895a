"""Helpers for the asyncio transport tests: requests, a recording handler, raw TLS clients."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from sip_gateway.aio import SipEndpoint
from sip_gateway.sip.events import RequestReceived, SipEvent
from sip_gateway.sip.headers import Headers, Via
from sip_gateway.sip.message import SipRequest, build_response
from sip_gateway.sip.uri import parse_uri

_calls = itertools.count(1)


def options(via: Via | str, *, target: str = "sips:ping@127.0.0.1", seq: int = 1) -> SipRequest:
    """An OPTIONS request with the given top Via."""
    headers = Headers()
    headers.add("Via", str(via))
    headers.add("Max-Forwards", "70")
    headers.add("From", "<sips:alice@example.test>;tag=a1")
    headers.add("To", f"<{target}>")
    headers.add("Call-ID", f"call-{next(_calls)}@test")
    headers.add("CSeq", f"{seq} OPTIONS")
    return SipRequest(method="OPTIONS", uri=parse_uri(target), headers=headers)


def raw_options(*, branch: str, content_length: int | None = 0, cseq: str = "1 OPTIONS") -> bytes:
    """OPTIONS as bytes, so tests can break it."""
    lines = [
        "OPTIONS sips:ping@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/TLS 127.0.0.1:5099;branch={branch};rport",
        "Max-Forwards: 70",
        "From: <sips:alice@example.test>;tag=a1",
        "To: <sips:ping@127.0.0.1>",
        f"Call-ID: raw-{branch}@test",
        f"CSeq: {cseq}",
    ]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Recorder:
    """A SipHandler that records events and answers requests (200 unless ``answer`` is None)."""

    answer: int | None = 200
    events: list[tuple[SipEndpoint, SipEvent]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        self.events.append((endpoint, event))
        self.arrived.set()
        if isinstance(event, RequestReceived) and self.answer is not None:
            response = build_response(event.request, self.answer, to_tag="srv")
            endpoint.send_response(event.transaction_id, response)

    def of_type(self, kind: type) -> list:
        return [event for _, event in self.events if isinstance(event, kind)]

    async def wait_for(self, kind: type, count: int = 1) -> list:
        while len(self.of_type(kind)) < count:
            self.arrived.clear()
            await self.arrived.wait()
        return self.of_type(kind)


async def raw_tls(
    port: int, context: ssl.SSLContext, *, server_hostname: str | None = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain asyncio TLS client to the listener (no SIP stack)."""
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_hostname
    )


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One body-less response from a raw client."""
    return await reader.readuntil(b"\r\n\r\n")


async def close_raw(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def eventually(predicate: Callable[[], object]) -> None:
    """Poll until ``predicate()`` is true (callers bound the wait with asyncio.timeout)."""
    while not predicate():  # noqa: ASYNC110 - polling log text and sets, not an event
        await asyncio.sleep(0.01)
