"""A small SIP user agent for interop tests, built only on sip_gateway's public APIs.

Theory of operation: :class:`TestUserAgent` is one handler (:meth:`TestUserAgent.handle`)
shared by a :class:`~sip_gateway.aio.SipTlsServer` (inbound calls) and a
:class:`~sip_gateway.aio.SipTlsConnector` (outbound calls), plus one
:class:`~sip_gateway.sip.dialog.DialogTable` for the dialogs of both roles.

* UAS: OPTIONS gets 200. A new INVITE gets 100 (sent by the core's server transaction),
  then 180 and 200 with an SDES answer from :func:`sip_gateway.sdp.answer_offer` (fresh
  keys from ``secrets.token_bytes``); an offer the policy refuses gets the error's status
  (488/400); a re-INVITE gets 488. ACKs are recorded; BYE ends its dialog with 200 (481
  when there is none). Every other method gets 405.
* UAC: :meth:`TestUserAgent.call` sends an INVITE with an SDES offer
  (:func:`sip_gateway.sdp.build_offer`), answers 401/407 with a
  :class:`~sip_gateway.sip.auth.DigestClient` and re-sends with CSeq + 1, checks the SDP
  answer (:func:`sip_gateway.sdp.process_answer`) and ACKs the 2xx with
  :meth:`Dialog.create_ack`. :meth:`TestUserAgent.hangup` sends the BYE.

Everything the agent saw is kept for assertions: :attr:`TestUserAgent.received` (requests
in arrival order, ACKs included), :attr:`TestUserAgent.answers` (SDP answers sent) and
:attr:`TestUserAgent.rejected` (messages the core refused). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from dataclasses import dataclass, field

from sip_gateway.aio import SipEndpoint, SipEndpointConfig, SipTlsConnector, SipTlsServer
from sip_gateway.sdp import (
    LocalMedia,
    MediaConfig,
    MediaProfile,
    SdpError,
    SdpSession,
    answer_offer,
    build_offer,
    parse_sdp,
    process_answer,
)
from sip_gateway.sip.auth import AuthError, DigestAccount, DigestClient
from sip_gateway.sip.dialog import Dialog, DialogTable
from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.events import (
    AckReceived,
    CancelReceived,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    SipEvent,
)
from sip_gateway.sip.headers import Headers, NameAddr
from sip_gateway.sip.message import SipRequest, SipResponse, build_response
from sip_gateway.sip.uri import SipUri, parse_uri

__all__ = ["ALLOW", "Call", "CallFailedError", "TestUserAgent"]

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"
MAX_AUTH_ROUNDS = 2
"""At most this many challenged INVITEs are answered (one per realm is the normal case)."""
_CHALLENGE_HEADER = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}


class CallFailedError(Exception):
    """An outbound call did not get established.

    Attributes:
        status_code: the final status that ended it (None when no response was the cause).
        invites_sent: how many INVITEs the attempt sent (re-sends after 401/407 included).
    """

    def __init__(self, message: str, *, status_code: int | None, invites_sent: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.invites_sent = invites_sent


@dataclass(eq=False, kw_only=True)
class Call:
    """An established outbound call."""

    endpoint: SipEndpoint
    dialog: Dialog
    invite: SipRequest
    """The INVITE that got the 2xx (the last one sent)."""
    response: SipResponse
    """The 2xx."""
    offer: SdpSession
    media: MediaConfig
    invites_sent: int
    provisional: list[int] = field(default_factory=list)
    """Status codes of the 1xx responses seen for the INVITE, in order."""


class TestUserAgent:
    """UAS and UAC over SIP-TLS for interop tests (see the module docstring).

    Args:
        server_context: the listener's context (``sip_gateway.tls.server_context``).
        client_context: the connector's context; it verifies every peer it dials.
        media_port: the RTP port our SDP announces (no media is sent or read).
        user: the user part of our From and Contact URIs.
        profile: the media policy of both roles.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        *,
        server_context: ssl.SSLContext | None = None,
        client_context: ssl.SSLContext | None = None,
        media_port: int = 40000,
        user: str = "bridge",
        profile: MediaProfile | None = None,
        config: SipEndpointConfig | None = None,
    ) -> None:
        self.user = user
        self.profile = profile or MediaProfile()
        self.media_port = media_port
        self.dialogs = DialogTable()
        self.received: list[SipRequest] = []
        self.answers: list[SdpSession] = []
        self.inbound: list[tuple[Dialog, SipEndpoint]] = []
        """Dialogs our UAS created, with the connection their INVITE came in on."""
        self.rejected: list[MessageRejected] = []
        self.events: list[SipEvent] = []
        """Every event of every connection, in order."""
        self.endpoints: list[SipEndpoint] = []
        """Every connection an event arrived on, in order of first event."""
        self._server_context = server_context
        self._config = config or SipEndpointConfig()
        self._server: SipTlsServer | None = None
        self._changed = asyncio.Event()
        self._provisional: dict[tuple[str, int], list[int]] = {}
        self.connector = SipTlsConnector(
            self.handle, ssl_context=client_context, config=self._config
        )

    # -- lifecycle -------------------------------------------------------------------

    async def listen(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Start the SIP-TLS listener and return its port."""
        assert self._server_context is not None, "no server context"
        self._server = await SipTlsServer.start(
            host, port, self._server_context, self.handle, config=self._config
        )
        return self._server.port

    @property
    def port(self) -> int:
        """The listening port (the UA must be listening)."""
        assert self._server is not None
        return self._server.port

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - bounded close
        """Close every connection (outbound and inbound) and the listener, bounded."""
        self.connector.close()
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.connector.wait_closed()
                if self._server is not None:
                    await self._server.wait_closed()

    def methods(self) -> list[str]:
        """Methods of the requests received so far, in order."""
        return [request.method for request in self.received]

    async def wait_for(self, method: str, count: int = 1, *, timeout: float = 5.0) -> SipRequest:  # noqa: ASYNC109
        """Wait until ``count`` requests with ``method`` were received; return the last.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                matching = [r for r in self.received if r.method == method]
                if len(matching) >= count:
                    return matching[count - 1]
                self._changed.clear()
                await self._changed.wait()

    # -- the handler (UAS side, and in-dialog requests on outbound connections) -------

    def handle(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        """The :data:`~sip_gateway.aio.SipHandler` of every connection of this agent."""
        self.events.append(event)
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        if isinstance(event, RequestReceived):
            self.received.append(event.request)
            self._on_request(endpoint, event.transaction_id, event.request)
        elif isinstance(event, AckReceived):
            self.received.append(event.request)
            with contextlib.suppress(RemoteProtocolError):
                dialog = self.dialogs.match_request(event.request)
                if dialog is not None:
                    dialog.receive_request(event.request)
        elif isinstance(event, CancelReceived):
            self.received.append(event.request)
        elif isinstance(event, ResponseReceived) and event.response.status_code < 200:
            key = (event.response.call_id, event.response.cseq.seq)
            self._provisional.setdefault(key, []).append(event.response.status_code)
        elif isinstance(event, MessageRejected):
            self.rejected.append(event)
        self._changed.set()

    def _on_request(self, endpoint: SipEndpoint, tid: str, request: SipRequest) -> None:
        if request.method == "OPTIONS":
            response = build_response(
                request,
                200,
                to_tag=_tag(),
                headers=[("Allow", ALLOW), ("Accept", "application/sdp")],
            )
        elif request.method == "INVITE" and not request.to_addr.tag:
            self._answer_invite(endpoint, tid, request)
            return
        elif request.method == "INVITE":  # a re-INVITE: this agent never changes media
            response = build_response(request, 488, headers=[("Allow", ALLOW)])
        elif request.method == "BYE":
            response = self._answer_bye(request)
        else:
            response = build_response(request, 405, headers=[("Allow", ALLOW)])
        endpoint.send_response(tid, response)

    def _answer_invite(self, endpoint: SipEndpoint, tid: str, request: SipRequest) -> None:
        to_tag = _tag()
        contact = self._contact(endpoint)
        try:
            offer = parse_sdp(request.body)
            answer, _config = answer_offer(
                offer, self.profile, self._local_media(), key_source=secrets.token_bytes
            )
        except SdpError as exc:
            refusal = build_response(
                request, exc.status_code, exc.reason, to_tag=to_tag, headers=exc.headers
            )
            endpoint.send_response(tid, refusal)
            return
        ringing = build_response(request, 180, to_tag=to_tag, headers=[("Contact", str(contact))])
        endpoint.send_response(tid, ringing)
        headers = [("Contact", str(contact)), ("Allow", ALLOW), ("Content-Type", "application/sdp")]
        ok = build_response(request, 200, to_tag=to_tag, headers=headers, body=answer.to_bytes())
        dialog = Dialog.for_uas(request, ok, local_contact=contact)
        self.dialogs.add(dialog)
        self.inbound.append((dialog, endpoint))
        self.answers.append(answer)
        endpoint.send_response(tid, ok)

    def _answer_bye(self, request: SipRequest) -> SipResponse:
        try:
            dialog = self.dialogs.match_request(request)
            if dialog is None:
                raise RemoteProtocolError("BYE outside a dialog", status_code=481)
            dialog.receive_request(request)
        except RemoteProtocolError as exc:
            return build_response(request, exc.status_code, exc.reason)
        self.dialogs.remove(dialog.id)
        return build_response(request, 200)

    # -- UAC -------------------------------------------------------------------------

    async def call(
        self,
        target: str,
        *,
        account: DigestAccount | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - per-request deadline
    ) -> Call:
        """Call ``target`` (a ``sip:`` URI with host and port) and establish the dialog.

        Raises:
            CallFailedError: a final non-2xx response, credentials refused or unusable, or an
                SDP answer our policy refuses (the call is then ACKed and hung up).
            SipConnectError: the TLS connection could not be made (or verified).
            SipRequestTimeoutError: no final response within ``timeout`` seconds.
        """
        uri = parse_uri(target)
        assert isinstance(uri, SipUri)
        endpoint = await self.connector.connect(uri.host, uri.port or 5061)
        offer = build_offer(self.profile, self._local_media(), key_source=secrets.token_bytes)
        invite = self._invite(endpoint, uri, seq=1, offer=offer)
        client = None
        if account is not None:
            client = DigestClient(account, cnonce_source=lambda: secrets.token_hex(8))
        sent = 0
        while True:
            sent += 1
            response = await endpoint.request(invite, timeout=timeout)
            challenge = _CHALLENGE_HEADER.get(response.status_code)
            if challenge is None or client is None or sent > MAX_AUTH_ROUNDS:
                break
            credentials = self._answer_challenge(client, invite, response, challenge, sent)
            invite = self._invite(
                endpoint, uri, seq=invite.cseq.seq + 1, offer=offer, like=invite, extra=credentials
            )
        if response.status_code >= 300:
            after = " after digest authentication" if sent > 1 else ""
            raise CallFailedError(
                f"INVITE {target} failed{after}: {response.status_code} {response.reason}",
                status_code=response.status_code,
                invites_sent=sent,
            )
        return await self._confirm(endpoint, invite, response, offer, sent)

    def _answer_challenge(
        self,
        client: DigestClient,
        invite: SipRequest,
        response: SipResponse,
        header: str,
        sent: int,
    ) -> list[tuple[str, str]]:
        previous = invite.headers.get_lines("Authorization")
        previous += invite.headers.get_lines("Proxy-Authorization")
        try:
            return client.answer(
                response.status_code,
                response.headers.get_lines(header),
                method="INVITE",
                uri=str(invite.uri),
                sent=previous,
            )
        except (AuthError, RemoteProtocolError) as exc:
            raise CallFailedError(
                f"cannot authenticate INVITE {invite.uri}: {exc}",
                status_code=response.status_code,
                invites_sent=sent,
            ) from exc

    async def _confirm(
        self,
        endpoint: SipEndpoint,
        invite: SipRequest,
        response: SipResponse,
        offer: SdpSession,
        sent: int,
    ) -> Call:
        dialog = Dialog.for_uac(invite, response, local_contact=self._contact(endpoint))
        self.dialogs.add(dialog)
        target_endpoint = await self._endpoint_for(dialog, endpoint)
        target_endpoint.send_request(
            dialog.create_ack(invite.cseq.seq, via=target_endpoint.make_via())
        )
        try:
            media = process_answer(offer, parse_sdp(response.body), self.profile)
        except SdpError as exc:
            await self._bye(dialog, target_endpoint)
            raise CallFailedError(
                f"SDP answer refused ({exc.status_code}): {exc}",
                status_code=None,
                invites_sent=sent,
            ) from exc
        provisional = self._provisional.pop((invite.call_id, invite.cseq.seq), [])
        return Call(
            endpoint=target_endpoint,
            dialog=dialog,
            invite=invite,
            response=response,
            offer=offer,
            media=media,
            invites_sent=sent,
            provisional=provisional,
        )

    async def hangup(self, call: Call, *, timeout: float = 5.0) -> SipResponse:  # noqa: ASYNC109
        """Send BYE in the call's dialog and return the final response."""
        return await self._bye(call.dialog, call.endpoint, timeout=timeout)

    async def hangup_inbound(self, index: int = -1, *, timeout: float = 5.0) -> SipResponse:  # noqa: ASYNC109
        """Send BYE in a dialog our UAS created (the last one by default).

        The BYE goes to the caller's Contact (RFC 3261 12.2.1.1): over the connection the
        INVITE came in on only when the connector already has one to that address, else
        over a new, verified one.
        """
        dialog, endpoint = self.inbound[index]
        return await self._bye(dialog, endpoint, timeout=timeout)

    async def _bye(
        self,
        dialog: Dialog,
        fallback: SipEndpoint,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> SipResponse:
        endpoint = await self._endpoint_for(dialog, fallback)
        bye = dialog.create_request("BYE", via=endpoint.make_via())
        response = await endpoint.request(bye, timeout=timeout)
        dialog.receive_response("BYE", response)
        self.dialogs.remove(dialog.id)
        return response

    # -- building --------------------------------------------------------------------

    async def _endpoint_for(self, dialog: Dialog, fallback: SipEndpoint) -> SipEndpoint:
        """The connection to the dialog's remote target (the pool reuses the dialled one)."""
        target = dialog.remote_target
        if not isinstance(target, SipUri):
            return fallback
        return await self.connector.connect(target.host.strip("[]"), target.port or 5061)

    def _invite(
        self,
        endpoint: SipEndpoint,
        uri: SipUri,
        *,
        seq: int,
        offer: SdpSession,
        like: SipRequest | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        headers = Headers()
        headers.add("Via", str(endpoint.make_via()))
        headers.add("Max-Forwards", "70")
        if like is None:
            local = NameAddr(uri=parse_uri(f"sip:{self.user}@{endpoint.local[0]}"))
            headers.add("From", str(local.with_tag(_tag())))
            headers.add("To", str(NameAddr(uri=uri)))
            headers.add("Call-ID", f"{secrets.token_hex(12)}@pstn-bridge.test")
        else:
            for name in ("From", "To", "Call-ID"):
                headers.add(name, like.headers.get_lines(name)[0])
        headers.add("CSeq", f"{seq} INVITE")
        headers.add("Contact", str(self._contact(endpoint)))
        headers.add("Allow", ALLOW)
        headers.add("Content-Type", "application/sdp")
        for name, value in extra or ():
            headers.add(name, value)
        return SipRequest(method="INVITE", uri=uri, headers=headers, body=offer.to_bytes())

    def _contact(self, endpoint: SipEndpoint) -> NameAddr:
        host, port = endpoint.local
        if self._server is not None:
            port = self._server.port
        return NameAddr(uri=parse_uri(f"sip:{self.user}@{host}:{port};transport=tls"))

    def _local_media(self) -> LocalMedia:
        return LocalMedia(
            address="127.0.0.1", port=self.media_port, session_id=secrets.randbelow(1 << 31)
        )


def _tag() -> str:
    return secrets.token_hex(6)
