"""Two SIP connections wired back to back in memory, with a virtual clock (h11's ConnectionPair)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from sip_gateway.sip.connection import SipConnection, SipConnectionConfig
from sip_gateway.sip.events import SipEvent
from sip_gateway.sip.headers import Headers
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.parser import StreamFramer
from sip_gateway.sip.transaction import MAGIC_COOKIE, TimerSettings
from sip_gateway.sip.uri import parse_uri

_counter = itertools.count(1)


def branch() -> str:
    return f"{MAGIC_COOKIE}test{next(_counter)}"


def make_request(
    method: str,
    *,
    seq: int = 1,
    call_id: str = "call-1@test",
    to_tag: str | None = None,
    br: str | None = None,
    body: bytes = b"",
    extra: tuple[tuple[str, str], ...] = (),
    cseq_method: str | None = None,
) -> SipRequest:
    headers = Headers()
    headers.add("Via", f"SIP/2.0/TLS 127.0.0.1:5070;branch={br or branch()};rport")
    headers.add("Max-Forwards", "70")
    headers.add("From", "<sips:alice@127.0.0.1>;tag=alice-tag")
    headers.add("To", "<sips:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""))
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{seq} {cseq_method or method}")
    headers.add("Contact", "<sips:alice@127.0.0.1:5070;transport=tls>")
    for name, value in extra:
        headers.add(name, value)
    return SipRequest(
        method=method, uri=parse_uri("sips:bob@127.0.0.1:5061"), headers=headers, body=body
    )


@dataclass
class Pair:
    """A client and a server connection; ``pump()`` moves bytes both ways until quiet."""

    reliable: bool = True
    now: float = 0.0
    client: SipConnection = field(init=False)
    server: SipConnection = field(init=False)
    client_events: list[SipEvent] = field(default_factory=list)
    server_events: list[SipEvent] = field(default_factory=list)
    wire: list[tuple[str, bytes]] = field(default_factory=list)
    drop_to_server: int = 0

    def __post_init__(self) -> None:
        timers = TimerSettings(reliable=self.reliable)
        self.client = SipConnection(SipConnectionConfig(timers=timers))
        self.server = SipConnection(
            SipConnectionConfig(timers=timers, peer_host="127.0.0.1", peer_port=40000)
        )

    def pump(self) -> None:
        for _ in range(50):
            moved = False
            data = self.client.data_to_send()
            if data:
                moved = True
                self.wire.append(("c->s", data))
                if self.drop_to_server:
                    self.drop_to_server -= 1
                else:
                    self.server.receive_data(data, self.now)
            data = self.server.data_to_send()
            if data:
                moved = True
                self.wire.append(("s->c", data))
                self.client.receive_data(data, self.now)
            self._collect()
            if not moved:
                return
        raise AssertionError("pump did not settle")

    def _collect(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
        while (event := self.server.next_event()) is not None:
            self.server_events.append(event)

    def advance(self, seconds: float) -> None:
        """Jump the virtual clock, firing due timers on both sides step by step."""
        end = self.now + seconds
        for _ in range(10_000):
            deadlines = [
                t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None
            ]
            due = min((t for t in deadlines if t <= end), default=None)
            if due is None:
                break
            self.now = max(self.now, due)
            self.client.handle_timer(self.now)
            self.server.handle_timer(self.now)
            self.pump()
        self.now = end
        self.pump()

    def sent_by(self, direction: str) -> list[str]:
        """First lines of the messages sent in one direction."""
        lines: list[str] = []
        for d, data in self.wire:
            if d != direction:
                continue
            for chunk in _split(data):
                lines.append(chunk.split(b"\r\n", 1)[0].decode())
        return lines


def _split(data: bytes) -> list[bytes]:
    """Split concatenated messages into whole messages, with the core's own framer."""
    framer = StreamFramer()
    framer.receive_data(data)
    out: list[bytes] = []
    while (item := framer.next_message()) is not None:
        if isinstance(item, (SipRequest, SipResponse)):
            out.append(item.to_bytes())
    return out
