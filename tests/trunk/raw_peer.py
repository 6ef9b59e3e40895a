"""A scripted SIP-over-TLS peer for race and corner-case tests.

It has no transaction layer: the test reads each message our code sent
(:meth:`RawPeer.receive`) and writes exactly the responses and requests it wants, when it
wants them (delayed 1xx, a 2xx that crosses our CANCEL, a retransmitted or forked 2xx,
a re-INVITE, a session timer that is never refreshed ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets

from sip_gateway.sdp import LocalMedia, MediaProfile, SdpSession, answer_offer, parse_sdp
from sip_gateway.sip.headers import Headers
from sip_gateway.sip.message import SipMessage, SipRequest, SipResponse, build_response
from sip_gateway.sip.parser import KeepAlive, StreamFramer
from sip_gateway.sip.uri import parse_uri
from tests.pki import Pki

_branches = itertools.count(1)


class RawPeer:
    """A TLS listener on 127.0.0.1 that queues every SIP message it receives."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[SipMessage] = asyncio.Queue()
        self.log: list[SipMessage] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0
        self.to_tag = "raw" + secrets.token_hex(4)
        self.cseq = itertools.count(1)

    @classmethod
    async def start(cls, pki: Pki, cert: str = "server") -> RawPeer:
        peer = cls()
        peer._server = await asyncio.start_server(
            peer._accept, "127.0.0.1", 0, ssl=pki.server_context(cert=cert)
        )
        peer.port = peer._server.sockets[0].getsockname()[1]
        return peer

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        framer = StreamFramer()
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                framer.receive_data(data)
                while (item := framer.next_message()) is not None:
                    if not isinstance(item, KeepAlive):
                        self.log.append(item)
                        self.messages.put_nowait(item)

    async def receive(self, expected: str | int, timeout: float = 5.0) -> SipMessage:  # noqa: ASYNC109
        """The next message; ``expected`` is a method or a status code it must have."""
        async with asyncio.timeout(timeout):
            message = await self.messages.get()
        kind = message.method if isinstance(message, SipRequest) else message.status_code
        assert kind == expected, f"expected {expected}, got {kind}"
        return message

    async def silence(self, seconds: float) -> None:
        """Assert that nothing arrives for ``seconds``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                message = await self.messages.get()
                raise AssertionError(f"unexpected {message!r}")

    def send(self, message: SipMessage) -> None:
        """Write to the most recent connection."""
        self._writers[-1].write(message.to_bytes())

    def respond(self, request: SipRequest, status: int, **kwargs) -> SipResponse:
        """Send a response to ``request`` (with our To tag on dialog-forming ones)."""
        tag = kwargs.pop("to_tag", self.to_tag if status > 100 else None)
        if status > 100:
            extra = list(kwargs.pop("headers", []))
            extra.append(("Contact", f"<sip:gw@127.0.0.1:{self.port};transport=tls>"))
            kwargs["headers"] = extra
        response = build_response(request, status, to_tag=tag, **kwargs)
        self.send(response)
        return response

    def answer_sdp(self, offer_body: bytes, profile: MediaProfile | None = None, previous=None):
        """An SDES answer to our code's offer (fresh keys): (SdpSession, MediaConfig)."""
        local = LocalMedia(address="127.0.0.1", port=47000, session_id=7)
        return answer_offer(
            parse_sdp(offer_body),
            profile or MediaProfile(),
            local,
            key_source=secrets.token_bytes,
            previous=previous,
        )

    def ok_with_answer(
        self, invite: SipRequest, *extra: tuple[str, str], body: bytes | None = None, **kwargs
    ) -> SipResponse:
        if body is None:
            body = self.answer_sdp(invite.body)[0].to_bytes()
        headers = [("Content-Type", "application/sdp"), *extra]
        return self.respond(invite, 200, headers=headers, body=body, **kwargs)

    def request(
        self,
        invite: SipRequest,
        method: str,
        *,
        body: bytes = b"",
        headers=(),
        cseq: int | None = None,
    ) -> SipRequest:
        """An in-dialog request from us (the UAS of ``invite``) back to its sender."""
        contact = invite.contacts[0].uri
        hdrs = Headers()
        hdrs.add("Via", f"SIP/2.0/TLS 127.0.0.1:{self.port};branch=z9hG4bKraw{next(_branches)}")
        hdrs.add("Max-Forwards", "70")
        hdrs.add("From", f"{invite.headers.get('To')};tag={self.to_tag}")
        hdrs.add("To", invite.headers.get("From") or "")
        hdrs.add("Call-ID", invite.call_id)
        hdrs.add("CSeq", f"{cseq or next(self.cseq)} {method}")
        hdrs.add("Contact", f"<sip:gw@127.0.0.1:{self.port};transport=tls>")
        for name, value in headers:
            hdrs.add(name, value)
        if body:
            hdrs.add("Content-Type", "application/sdp")
        request = SipRequest(method=method, uri=parse_uri(str(contact)), headers=hdrs, body=body)
        self.send(request)
        return request

    async def aclose(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()


def sdp_of(message: SipMessage) -> SdpSession:
    return parse_sdp(message.body)
