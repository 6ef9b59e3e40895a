"""The bridge's transaction user for browsers: what it answers over SIP on WebSocket.

Theory of operation: :class:`Signaling` receives the events of every browser connection
(SIP over secure WebSocket, RFC 7118; carriers are served by the trunk gateway). It
answers OPTIONS (keep-alive and capability queries) and runs the registrar, remembering
which WebSocket each registered Contact lives on (RFC 7118 section 5: requests toward a
browser go over its own connection; :meth:`Signaling.contacts`). Calls go to the
:class:`~bridge.call.orchestrator.Orchestrator`: new INVITEs, and ACK, CANCEL, responses and
in-dialog requests of known dialogs (481 for unknown ones). Without an orchestrator new
calls get 480. Every refused request is logged with the peer's address (malformed
messages are logged by the transport that rejected them). An unexpected error while
answering is logged and answered with 500; it never reaches the transport.

Abuse: a new INVITE or REGISTER first passes the :class:`~sip_gateway.flood.FloodGuard`
(``flood``; over its rate: 503 + Retry-After, no other work), and the answers refusing a
REGISTER's credentials are held back as long as the brute-force guard says for the source
(:class:`~bridge.answer_delay.AnswerDelays`), the same for every user name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from sip_gateway.aio.endpoint import SipEndpoint
from sip_gateway.flood import FLOODED_METHODS, FloodGuard
from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from sip_gateway.sip.events import (
    RequestReceived,
    SipEvent,
    TransactionTimedOut,
)
from sip_gateway.sip.message import SipRequest, SipResponse, build_response
from sip_gateway.sip.uri import AbsoluteUri, SipUri

from .answer_delay import AnswerDelays
from .call.orchestrator import Orchestrator
from .registrar import Registrar

__all__ = ["ALLOWED_METHODS", "Signaling"]

log = logging.getLogger("bridge.signaling")

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE")
_AUTH_REFUSALS = frozenset({400, 401, 403})
_IN_DIALOG = frozenset({"BYE", "INFO", "UPDATE", "PRACK", "NOTIFY", "REFER", "MESSAGE"})


class Signaling:
    """Answers the requests of every SIP endpoint of the bridge."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        clock: Callable[[], float],
        tag_source: Callable[[], str],
        node_id: str,
    ) -> None:
        self._registrar = registrar
        self._clock = clock
        self._tag_source = tag_source
        self._server_header = f"pstn-bridge ({node_id})"
        self.orchestrator: Orchestrator | None = None
        """Handles calls (set by the app once it exists)."""
        self.flood: FloodGuard | None = None
        """Rate limit of new INVITEs and REGISTERs per source address (None: none)."""
        self.delays = AnswerDelays()
        """Holds the REGISTER answers to sources the brute-force guard slows."""
        self._flows: dict[str, SipEndpoint] = {}

    def contacts(self, user: str) -> list[tuple[SipUri | AbsoluteUri, SipEndpoint]]:
        """The registered Contacts of ``user`` whose WebSocket is still open."""
        found = []
        for binding in self._registrar.bindings(user, self._clock()):
            endpoint = self._flows.get(str(binding.contact.uri))
            if endpoint is not None and not endpoint.is_closing:
                found.append((binding.contact.uri, endpoint))
        return found

    def handle(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        """The :data:`SipHandler` given to every listener."""
        if isinstance(event, RequestReceived):
            self._request(endpoint, event)
        elif self.orchestrator is not None and self.orchestrator.dialogs.handle(endpoint, event):
            return
        elif isinstance(event, TransactionTimedOut):
            log.info(
                "%s %s:%d transaction timed out (Timer %s)",
                endpoint.transport,
                *endpoint.peer,
                event.timer,
            )

    def _request(self, endpoint: SipEndpoint, event: RequestReceived) -> None:
        request = event.request
        if self._flooded(endpoint, event):
            return
        if self.orchestrator is not None and self._to_calls(endpoint, event):
            return
        try:
            response = self._answer(endpoint, request)
        except RemoteProtocolError as exc:
            log.warning(
                "%s %s:%d %s refused: %s", endpoint.transport, *endpoint.peer, request.method, exc
            )
            response = build_response(request, exc.status_code, exc.reason)
        except Exception:
            log.exception("answering %s from %s:%d failed", request.method, *endpoint.peer)
            response = build_response(request, 500)
        response.headers.add("Server", self._server_header)
        self._tag(response)
        if request.method == "REGISTER" and response.status_code in _AUTH_REFUSALS:
            delay = self._registrar.auth.guard.delay(endpoint.peer[0], self._clock())
            self.delays.send(endpoint, event.transaction_id, response, delay)
            return
        try:
            endpoint.send_response(event.transaction_id, response)
        except LocalProtocolError as exc:
            log.error("could not answer %s from %s:%d: %s", request.method, *endpoint.peer, exc)

    def _flooded(self, endpoint: SipEndpoint, event: RequestReceived) -> bool:
        """Answer 503 + Retry-After to a new INVITE/REGISTER over the source's rate."""
        request = event.request
        if self.flood is None or request.method not in FLOODED_METHODS or request.to_addr.tag:
            return False
        retry = self.flood.check(endpoint.peer[0], self._clock())
        if retry is None:
            return False
        if self.flood.run_started:
            log.warning(
                "%s %s:%d: new INVITEs/REGISTERs over the flood limit; 503 until the rate drops",
                endpoint.transport,
                *endpoint.peer,
            )
        response = build_response(request, 503, headers=[("Retry-After", str(retry))])
        self._tag(response)
        with contextlib.suppress(LocalProtocolError):
            endpoint.send_response(event.transaction_id, response)
        return True

    def _to_calls(self, endpoint: SipEndpoint, event: RequestReceived) -> bool:
        """Hand INVITEs and in-dialog requests to the orchestrator; True when handled."""
        assert self.orchestrator is not None
        request = event.request
        try:
            if request.to_addr.tag:
                self.orchestrator.dialogs.in_dialog(endpoint, event.transaction_id, request)
                return True
            if request.method == "INVITE":
                self.orchestrator.browser_invite(endpoint, event.transaction_id, request)
                return True
        except Exception:
            log.exception("%s from %s:%d failed", request.method, *endpoint.peer)
            with contextlib.suppress(LocalProtocolError):
                endpoint.send_response(event.transaction_id, build_response(request, 500))
            return True
        return False

    def _remember_flows(self, endpoint: SipEndpoint, request: SipRequest) -> None:
        """After a 200 to REGISTER: which WebSocket each Contact is reached on."""
        for contact in request.contacts:
            key = str(contact.uri)
            if contact.param("expires") == "0" or request.headers.get("Expires") == "0":
                self._flows.pop(key, None)
            else:
                self._flows[key] = endpoint
        for key in [k for k, e in self._flows.items() if e.is_closing]:
            del self._flows[key]

    def _answer(self, endpoint: SipEndpoint, request: SipRequest) -> SipResponse:
        method = request.method
        if method == "OPTIONS":
            response = build_response(request, 200)
            response.headers.add("Allow", ", ".join(ALLOWED_METHODS))
            response.headers.add("Accept", "application/sdp")
            return response
        if method == "REGISTER":
            peer = f"{endpoint.peer[0]}:{endpoint.peer[1]}"
            response = self._registrar.handle_register(request, now=self._clock(), peer=peer)
            if response.status_code == 200:
                self._remember_flows(endpoint, request)
            return response
        if request.to_addr.tag or method in _IN_DIALOG:
            return build_response(request, 481)
        if method == "INVITE":
            log.info(
                "%s %s:%d INVITE refused: no call routing in this build",
                endpoint.transport,
                *endpoint.peer,
            )
            return build_response(request, 480, "Temporarily Unavailable")
        return _with_allow(build_response(request, 501 if method not in ALLOWED_METHODS else 405))

    def _tag(self, response: SipResponse) -> None:
        """RFC 3261 8.2.6.2: a final response outside a dialog gets our To tag."""
        to = response.to_addr
        if response.status_code > 100 and not to.tag:
            response.headers.set("To", str(to.with_tag(self._tag_source())))


def _with_allow(response: SipResponse) -> SipResponse:
    response.headers.add("Allow", ", ".join(ALLOWED_METHODS))
    return response
