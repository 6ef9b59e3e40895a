"""The trunks at run time: connections, call registry, and the one SIP handler.

Theory of operation: a :class:`TrunkGateway` holds one :class:`Trunk` per configured carrier
and, optionally, the carrier-facing TLS listener. Every connection, inbound or outbound,
feeds the same handler (:meth:`TrunkGateway.handle`), which only dispatches:

* requests with a To tag go to the leg owning that dialog (481 when none does);
* other requests need a trunk: the one we dialled when they come on our own connection,
  else :class:`~.inbound.TrunkRouter` picks it by source address and client certificate;
  no trunk means 403 and a warning naming the peer. INVITEs are screened
  (:func:`~.inbound.screen_invite`) and handed to the routing callback; OPTIONS get 200;
* ACKs and CANCELs go to the leg or pending inbound call they belong to, and provisional
  or stray responses to the outbound call with their Call-ID.

A :class:`Trunk` owns one :class:`~sip_gateway.aio.SipTlsConnector` (its CA, server name
and client certificate), the OPTIONS monitor and the registration, and places calls
(:meth:`Trunk.call`). It implements the host protocols the legs and monitors use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sip_gateway.aio import (
    SipConnectError,
    SipEndpoint,
    SipEndpointConfig,
    SipTlsConnector,
    SipTlsServer,
)
from sip_gateway.aio.admission import ConnectionLimitsConfig
from sip_gateway.aio.endpoint import format_address
from sip_gateway.flood import FLOODED_METHODS, FloodGuard
from sip_gateway.sdp import KeySource
from sip_gateway.sip.auth import DigestClient
from sip_gateway.sip.dialog import DialogId
from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.events import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
)
from sip_gateway.sip.headers import NameAddr
from sip_gateway.sip.message import SipRequest, build_response
from sip_gateway.sip.uri import AbsoluteUri, SipUri
from sip_gateway.tls import client_context

from .config import TrunkConfig
from .errors import TrunkUnavailableError
from .inbound import InboundCall, InboundRoute, TrunkRouter, screen_invite
from .leg import ALLOW, CallLeg, EventCallback
from .monitor import (
    InviteRefused,
    OptionsMonitor,
    Registration,
    RegistrationChanged,
    TrunkStatus,
    TrunkStatusChanged,
)
from .outbound import OutboundCall, uri_host
from .state import MediaPort

__all__ = ["SUPPORTED_EXTENSIONS", "Trunk", "TrunkGateway"]

logger = logging.getLogger("sip_gateway.trunk")

SUPPORTED_EXTENSIONS = frozenset({"timer"})
"""Option tags the trunk side supports; listeners and connectors must accept them."""
SIPS_PORT = 5061


def _token() -> str:
    return secrets.token_hex(12)


class Trunk:
    """One carrier trunk at run time (create through :class:`TrunkGateway`)."""

    def __init__(
        self, config: TrunkConfig, gateway: TrunkGateway, ssl_context: ssl.SSLContext
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.profile = config.media_profile()
        self.key_source: KeySource = gateway.key_source
        self.timer_scale = gateway.timer_scale
        self.connector = SipTlsConnector(
            self._handle, ssl_context=ssl_context, config=gateway.endpoint_config
        )
        self.monitor = OptionsMonitor(self, on_change=gateway.on_status)
        self.registration = Registration(self, gateway.on_registration) if config.register else None
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<Trunk {self.config.name} {self.config.host}:{self.config.port} {self.status}>"

    @property
    def status(self) -> TrunkStatus:
        """UP/DOWN from the OPTIONS keep-alive (UNKNOWN before the first one)."""
        return self.monitor.status

    def _handle(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        self.gateway.handle(endpoint, event, trunk=self)

    # -- host protocols (legs and monitors) ------------------------------------------------

    def token(self) -> str:
        """A fresh random hex token (tags, Call-IDs, session ids)."""
        return self.gateway.token_source()

    def contact(self, endpoint: SipEndpoint) -> NameAddr:
        """Our Contact on ``endpoint``."""
        return self.gateway.contact(endpoint)

    def digest_client(self) -> DigestClient | None:
        """A fresh digest client for this trunk's account (None without credentials)."""
        account = self.config.digest_account()
        if account is None:
            return None
        return DigestClient(account, cnonce_source=lambda: secrets.token_hex(8))

    async def connect(self) -> SipEndpoint:
        """The verified TLS connection to the carrier SBC (reused while it lives).

        Raises:
            SipConnectError: TCP or TLS failed (unreachable, untrusted certificate ...).
        """
        config = self.config
        return await self.connector.connect(
            config.host, config.port, server_hostname=config.tls_server_name
        )

    async def endpoint_for(
        self, target: SipUri | AbsoluteUri, fallback: SipEndpoint | None
    ) -> SipEndpoint:
        """The connection for an in-dialog request to ``target``.

        The dialog's own connection when it goes to that address, else a verified connection
        to it (checked against the trunk's server name when it is the trunk's host); when
        that fails, the dialog's connection if it is still open.

        Raises:
            SipConnectError: no connection could be made and there is no fallback.
        """
        usable = fallback if fallback is not None and not fallback.is_closing else None
        if not isinstance(target, SipUri):
            return usable or await self.connect()
        host, port = target.host.strip("[]"), target.port or SIPS_PORT
        if usable is not None and usable.peer == (host, port):
            return usable
        name = self.config.tls_server_name if host.lower() == self.config.host.lower() else host
        try:
            return await self.connector.connect(host, port, server_hostname=name)
        except SipConnectError:
            if usable is None:
                raise
            logger.info(
                "trunk %s: %s unreachable; using the dialog's connection", self.config.name, target
            )
            return usable

    def attach(self, leg: CallLeg) -> None:
        """Route the in-dialog requests of ``leg`` to it."""
        self.gateway.attach(leg)

    def detach(self, leg: CallLeg) -> None:
        """Forget ``leg``."""
        self.gateway.detach(leg)

    # -- calls and lifecycle ---------------------------------------------------------------

    def call(
        self,
        number: str,
        *,
        media: MediaPort,
        caller: str | None = None,
        on_event: EventCallback | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> OutboundCall:
        """Place a call to ``number`` (normalised to E.164 under this trunk's rules).

        Returns at once; await :meth:`OutboundCall.wait_answered` for the outcome.

        Raises:
            InvalidNumberError: ``number`` cannot be written as E.164 (484).
        """
        call = OutboundCall(
            self,
            number=self.config.normalize(number),
            caller=caller,
            media=media,
            on_event=on_event,
            headers=headers,
        )
        self.gateway.track(call)
        call.start()
        return call

    def start(self) -> None:
        """Start the OPTIONS keep-alive and the registration (when configured)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        name = self.config.name
        self._tasks.append(loop.create_task(self.monitor.run(), name=f"{name} keep-alive"))
        if self.registration is not None:
            self._tasks.append(loop.create_task(self.registration.run(), name=f"{name} register"))

    async def aclose(self) -> None:
        """Stop the background tasks, unregister, close the connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.registration is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self.registration.unregister()
        self.connector.close()
        await self.connector.wait_closed()


class TrunkGateway:
    """All trunks, the carrier listener and the calls (see the module docstring).

    Args:
        trunks: the configured trunks; inbound matching tries them in this order.
        route: the routing callback for inbound calls (None answers every INVITE 503).
        ssl_contexts: client TLS contexts by trunk name; missing ones are built from the
            trunk's configuration with :func:`sip_gateway.tls.client_context`.
        endpoint_config: connection settings (``timer`` is added to the supported
            extensions).
        contact_host: the host to put in our Contact (default: the listener's address, or
            the connection's local address).
        user: the user part of our Contact.
        key_source: SRTP key material source (``secrets.token_bytes``).
        token_source: random hex tokens for tags and Call-IDs.
        timer_scale: test hook: session-timer intervals are multiplied by this on the
            clock (1.0 in production; the wire values stay RFC-valid).
        on_status: receives :class:`TrunkStatusChanged` (OPTIONS keep-alive).
        on_registration: receives :class:`RegistrationChanged`.
    """

    def __init__(
        self,
        trunks: Sequence[TrunkConfig],
        *,
        route: InboundRoute | None = None,
        ssl_contexts: Mapping[str, ssl.SSLContext] | None = None,
        endpoint_config: SipEndpointConfig | None = None,
        contact_host: str | None = None,
        user: str = "pstn-bridge",
        key_source: KeySource = secrets.token_bytes,
        token_source: Callable[[], str] = _token,
        timer_scale: float = 1.0,
        on_status: Callable[[TrunkStatusChanged], None] | None = None,
        on_registration: Callable[[RegistrationChanged], None] | None = None,
        on_refusal: Callable[[InviteRefused], None] | None = None,
    ) -> None:
        names = [t.name for t in trunks]
        if len(set(names)) != len(names):
            raise ValueError("trunk names must be unique")
        base = endpoint_config or SipEndpointConfig()
        self.endpoint_config = replace(
            base, supported_extensions=base.supported_extensions | SUPPORTED_EXTENSIONS
        )
        self.route = route
        self.key_source = key_source
        self.token_source = token_source
        self.timer_scale = timer_scale
        self.on_status = on_status
        self.on_registration = on_registration
        self.on_refusal = on_refusal
        self.flood: FloodGuard | None = None
        """Rate limit of new INVITEs and REGISTERs per source (None: no limit)."""
        self.router = TrunkRouter(trunks)
        self._contact_host = contact_host
        self._user = user
        self._server: SipTlsServer | None = None
        contexts = dict(ssl_contexts or {})
        self.trunks: dict[str, Trunk] = {
            t.name: Trunk(t, self, contexts.get(t.name) or client_context(t.tls_client_config()))
            for t in trunks
        }
        self._legs: dict[DialogId, CallLeg] = {}
        self._outbound: dict[str, OutboundCall] = {}
        self._pending: dict[tuple[SipEndpoint, str], InboundCall] = {}
        self._calls: set[CallLeg] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def listen(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        limits: ConnectionLimitsConfig | None = None,
    ) -> SipTlsServer:
        """Start the carrier-facing SIP-TLS listener (port 0 picks one).

        Use a server context with ``ClientAuth.OPTIONAL`` (or REQUIRED) when a trunk names
        client certificates. ``limits`` caps its connections per source and in total.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await SipTlsServer.start(
            host,
            port,
            ssl_context,
            self._handle_inbound,
            config=self.endpoint_config,
            limits=limits,
        )
        return self._server

    def start(self) -> None:
        """Start every trunk's keep-alive and registration."""
        for trunk in self.trunks.values():
            trunk.start()

    async def aclose(self) -> None:
        """End background work, stop listening and close every connection (calls are not
        hung up: do that first)."""
        for leg in list(self._calls):
            await leg.aclose()
        closing = [t.aclose() for t in self.trunks.values()]
        if self._server is not None:
            self._server.close()
            closing.append(self._server.wait_closed())
        await asyncio.gather(*closing, return_exceptions=True)

    @property
    def calls(self) -> frozenset[CallLeg]:
        """The legs that have not ended."""
        return frozenset(self._calls)

    # -- calls -----------------------------------------------------------------------

    def trunk(self, name: str) -> Trunk:
        """The trunk called ``name``.

        Raises:
            TrunkUnavailableError: no such trunk (503).
        """
        try:
            return self.trunks[name]
        except KeyError:
            raise TrunkUnavailableError(f"no trunk named {name!r}") from None

    def call(self, trunk: str, number: str, *, media: MediaPort, **kwargs: Any) -> OutboundCall:
        """Place a call through the trunk called ``trunk`` (see :meth:`Trunk.call`).

        Raises:
            TrunkUnavailableError: no such trunk (503).
            InvalidNumberError: ``number`` is not E.164 material (484).
        """
        return self.trunk(trunk).call(number, media=media, **kwargs)

    def contact(self, endpoint: SipEndpoint) -> NameAddr:
        """Our Contact: the listener when there is one, else this connection's address."""
        host, port = endpoint.local
        if self._server is not None:
            bound, port = self._server.sockets[0]
            if bound not in ("0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
                host = bound
        host = self._contact_host or host
        uri = SipUri(
            user=self._user, host=uri_host(host), port=port, params=(("transport", "tls"),)
        )
        return NameAddr(uri=uri)

    def track(self, call: OutboundCall) -> None:
        """Register a new outbound call (its provisional responses come by Call-ID)."""
        self._outbound[call.call_id] = call
        self._calls.add(call)

    def attach(self, leg: CallLeg) -> None:
        """Route the in-dialog requests of ``leg.dialog`` to ``leg``."""
        assert leg.dialog is not None
        self._legs[leg.dialog.id] = leg
        self._calls.add(leg)

    def detach(self, leg: CallLeg) -> None:
        """Forget a leg that ended."""
        if leg.dialog is not None:
            self._legs.pop(leg.dialog.id, None)
        if self._outbound.get(leg.call_id) is leg:
            del self._outbound[leg.call_id]
        if isinstance(leg, InboundCall):
            self._pending.pop((leg.endpoint_or_fail, leg.transaction_id), None)
        self._calls.discard(leg)

    # -- the handler -----------------------------------------------------------------

    def handle(self, endpoint: SipEndpoint, event: SipEvent, trunk: Trunk | None = None) -> None:
        """The :data:`~sip_gateway.aio.SipHandler` of every trunk connection.

        ``trunk`` is the trunk whose connector made the connection (None: inbound).
        """
        if isinstance(event, RequestReceived):
            self._on_request(endpoint, event.transaction_id, event.request, trunk)
        elif isinstance(event, AckReceived):
            leg = self._leg_for_request(event.request)
            if leg is not None:
                leg.receive_ack(event.request)
        elif isinstance(event, CancelReceived):
            call = self._pending.get((endpoint, event.transaction_id))
            if call is not None:
                call.receive_cancel()
        elif isinstance(event, ResponseReceived):
            response = event.response
            key = DialogId(
                response.call_id, response.from_addr.tag or "", response.to_addr.tag or ""
            )
            target = self._outbound.get(response.call_id) or self._legs.get(key)
            if target is not None:
                target.receive_response(endpoint, response)

    def _handle_inbound(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        self.handle(endpoint, event)

    def _leg_for_request(self, request: SipRequest) -> CallLeg | None:
        key = DialogId(request.call_id, request.to_addr.tag or "", request.from_addr.tag or "")
        return self._legs.get(key)

    def _on_request(
        self, endpoint: SipEndpoint, tid: str, request: SipRequest, trunk: Trunk | None
    ) -> None:
        if request.to_addr.tag:
            leg = self._leg_for_request(request)
            if leg is not None:
                leg.receive_request(endpoint, tid, request)
            elif request.method == "BYE" and (early := self._early_call(request)) is not None:
                # RFC 3261 15.1.2: a BYE in an early dialog ends it: 200 here, 487 to the INVITE.
                endpoint.send_response(tid, build_response(request, 200))
                early.receive_cancel()
            else:
                endpoint.send_response(tid, build_response(request, 481))
            return
        if self._flooded(endpoint, tid, request):
            return
        trunk = trunk or self._accept(endpoint, request)
        if trunk is None:
            endpoint.send_response(
                tid, build_response(request, 403, to_tag=self.token_source()[:12])
            )
            return
        if request.method == "INVITE":
            self._on_invite(endpoint, tid, request, trunk)
        elif request.method == "OPTIONS":
            headers = [("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "timer")]
            endpoint.send_response(
                tid, build_response(request, 200, to_tag=self.token_source()[:12], headers=headers)
            )
        else:
            status = 481 if request.method in ("BYE", "UPDATE", "INFO") else 405
            endpoint.send_response(tid, build_response(request, status, headers=[("Allow", ALLOW)]))

    def _flooded(self, endpoint: SipEndpoint, tid: str, request: SipRequest) -> bool:
        """Answer 503 + Retry-After to a new INVITE/REGISTER over the source's rate."""
        if self.flood is None or request.method not in FLOODED_METHODS:
            return False
        retry = self.flood.check(endpoint.peer[0], asyncio.get_running_loop().time())
        if retry is None:
            return False
        if self.flood.run_started:
            logger.warning(
                "%s: new INVITEs/REGISTERs over the flood limit; 503 until the rate drops",
                format_address(endpoint.peer),
            )
        headers = [("Retry-After", str(retry))]
        endpoint.send_response(
            tid, build_response(request, 503, to_tag=self.token_source()[:12], headers=headers)
        )
        return True

    def _report_refusal(
        self, endpoint: SipEndpoint, request: SipRequest, trunk: Trunk, exc: RemoteProtocolError
    ) -> None:
        if self.on_refusal is None:
            return
        caller = request.from_addr.uri
        called = request.uri
        refused = InviteRefused(
            trunk=trunk.config.name,
            call_id=request.call_id,
            caller=caller.user if isinstance(caller, SipUri) else None,
            did=called.user if isinstance(called, SipUri) else None,
            peer=format_address(endpoint.peer),
            tls=endpoint.tls,
            status_code=exc.status_code,
            policy=getattr(exc, "policy", None),
            detail=str(exc),
        )
        try:
            self.on_refusal(refused)
        except Exception:
            logger.exception("the refusal handler failed")

    def _early_call(self, request: SipRequest) -> InboundCall | None:
        """The unanswered inbound call whose early dialog this request names, if any."""
        for call in self._pending.values():
            invite = call.request
            if (
                invite.call_id == request.call_id
                and invite.from_addr.tag == request.from_addr.tag
                and call.local_tag == request.to_addr.tag
            ):
                return call
        return None

    def _accept(self, endpoint: SipEndpoint, request: SipRequest) -> Trunk | None:
        names = endpoint.peer_certificate_names
        config = self.router.match(endpoint.peer[0], names)
        if config is None:
            logger.warning(
                "refused %s from %s: no trunk accepts this address%s",
                request.method,
                format_address(endpoint.peer),
                f" and certificate {sorted(names)}" if names else " (no client certificate)",
            )
            return None
        return self.trunks[config.name]

    def _on_invite(
        self, endpoint: SipEndpoint, tid: str, request: SipRequest, trunk: Trunk
    ) -> None:
        if self.route is None:
            endpoint.send_response(
                tid, build_response(request, 503, to_tag=self.token_source()[:12])
            )
            return
        try:
            screened = screen_invite(trunk.config, request)
        except RemoteProtocolError as exc:
            logger.info(
                "refused INVITE %s from %s (%s): %s %s",
                request.call_id,
                trunk.config.name,
                format_address(endpoint.peer),
                exc.status_code,
                exc,
            )
            refusal = build_response(
                request,
                exc.status_code,
                exc.reason,
                to_tag=self.token_source()[:12],
                headers=exc.headers,
            )
            endpoint.send_response(tid, refusal)
            self._report_refusal(endpoint, request, trunk, exc)
            return
        call = InboundCall(
            trunk, endpoint=endpoint, transaction_id=tid, request=request, screened=screened
        )
        self._pending[(endpoint, tid)] = call
        self._calls.add(call)
        logger.info("inbound call %s on %s to %s", call.call_id, trunk.config.name, call.did)
        call.route(self.route)
