"""The bridge's transaction user for browsers: what it answers over SIP on WebSocket.

Theory of operation: :class:`Signaling` receives the events of every browser connection
(SIP over secure WebSocket, RFC 7118; carriers are served by the trunk gateway) and answers
requests. For now it answers OPTIONS (keep-alive and capability queries), runs the registrar,
refuses in-dialog requests for dialogs it does not know with 481 and new calls with
480 (call routing comes with the call layer), and logs every refused request with the
peer's address (malformed messages are logged by the transport that rejected them).
An unexpected error while answering is logged and answered with 500; it never reaches
the transport.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sip_gateway.aio.endpoint import SipEndpoint
from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from sip_gateway.sip.events import (
    RequestReceived,
    SipEvent,
    TransactionTimedOut,
)
from sip_gateway.sip.message import SipRequest, SipResponse, build_response

from .registrar import Registrar

__all__ = ["ALLOWED_METHODS", "Signaling"]

log = logging.getLogger("bridge.signaling")

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE")
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

    def handle(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        """The :data:`SipHandler` given to every listener."""
        if isinstance(event, RequestReceived):
            self._request(endpoint, event)
        elif isinstance(event, TransactionTimedOut):
            log.info(
                "%s %s:%d transaction timed out (Timer %s)",
                endpoint.transport,
                *endpoint.peer,
                event.timer,
            )

    def _request(self, endpoint: SipEndpoint, event: RequestReceived) -> None:
        request = event.request
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
        try:
            endpoint.send_response(event.transaction_id, response)
        except LocalProtocolError as exc:
            log.error("could not answer %s from %s:%d: %s", request.method, *endpoint.peer, exc)

    def _answer(self, endpoint: SipEndpoint, request: SipRequest) -> SipResponse:
        method = request.method
        if method == "OPTIONS":
            response = build_response(request, 200)
            response.headers.add("Allow", ", ".join(ALLOWED_METHODS))
            response.headers.add("Accept", "application/sdp")
            return response
        if method == "REGISTER":
            peer = f"{endpoint.peer[0]}:{endpoint.peer[1]}"
            return self._registrar.handle_register(request, now=self._clock(), peer=peer)
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
