"""The interop tests' user agent: a thin wrapper over :class:`~sip_gateway.trunk.TrunkGateway`.

Theory of operation: the product's trunk does all the signaling (UAS: OPTIONS, screening,
180/200 with an SDES answer, BYE; UAC: INVITE with an SDES offer, digest retry, ACK, BYE).
This module only adds what the tests observe that the trunk API does not report:

* :class:`ObservedGateway` records every core event of every connection (requests in
  arrival order, ACKs included, and the messages the core refused) before dispatching it;
* each connection's :meth:`~sip_gateway.aio.SipEndpoint.request` is wrapped to keep the
  final responses to our requests (the trunk does not expose the BYE's answer).

:meth:`TestUserAgent.listen` starts the listener of a gateway with one trunk accepting
127.0.0.1; :meth:`TestUserAgent.call` dials through a gateway with one trunk to the target.
Media ports are stubs announcing ``media_port`` (no media is sent or read). Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any

from sip_gateway.aio import SipEndpoint, SipEndpointConfig, SipTlsConnector
from sip_gateway.sdp import MediaConfig, MediaProfile, SdpSession
from sip_gateway.sip.auth import DigestAccount
from sip_gateway.sip.events import (
    AckReceived,
    CancelReceived,
    MessageRejected,
    RequestReceived,
    SipEvent,
)
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.uri import SipUri, parse_uri
from sip_gateway.trunk import (
    Answer,
    CallerIdRules,
    CallLeg,
    InboundCall,
    OutboundCall,
    RouteDecision,
    TrunkConfig,
    TrunkGateway,
)
from sip_gateway.trunk import CallFailedError as TrunkCallFailedError

__all__ = ["Call", "CallFailedError", "ObservedGateway", "TestUserAgent"]

INBOUND = "inbound"
"""The trunk that accepts 127.0.0.1 on the listener."""


class CallFailedError(Exception):
    """An outbound call did not get established.

    Attributes:
        status_code: the final status that ended it.
        invites_sent: how many INVITEs the attempt sent (re-sends after 401/407 included).
    """

    def __init__(self, message: str, *, status_code: int | None, invites_sent: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.invites_sent = invites_sent


@dataclass(eq=False, kw_only=True)
class Call:
    """An established outbound call: the trunk's leg and what it negotiated."""

    leg: OutboundCall
    media: MediaConfig
    endpoint: SipEndpoint
    invite: SipRequest
    """The INVITE that got the 2xx (the last one sent)."""
    invites_sent: int
    provisional: list[int] = field(default_factory=list)
    """Status codes of the 1xx responses seen for the INVITE, in order."""


@dataclass(eq=False)
class StubMediaPort:
    """A :class:`~sip_gateway.trunk.MediaPort` that announces a port and records configs."""

    port: int
    applied: list[MediaConfig] = field(default_factory=list)
    closed: bool = False

    @property
    def local_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def apply(self, config: MediaConfig) -> None:
        self.applied.append(config)

    def close(self) -> None:
        self.closed = True


class ObservedGateway(TrunkGateway):
    """A trunk gateway that shows every event and final response to a :class:`TestUserAgent`."""

    def __init__(self, agent: TestUserAgent, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agent = agent
        for trunk in self.trunks.values():
            trunk.connector.connect = self._observed_connect(trunk.connector)  # type: ignore[method-assign]

    def _observed_connect(self, connector: SipTlsConnector) -> Any:
        connect = connector.connect

        async def observed(*args: Any, **kwargs: Any) -> SipEndpoint:
            endpoint = await connect(*args, **kwargs)
            self.agent.observe(endpoint)
            return endpoint

        return observed

    def handle(self, endpoint: SipEndpoint, event: SipEvent, trunk: Any = None) -> None:
        self.agent.record(endpoint, event)
        super().handle(endpoint, event, trunk)


class TestUserAgent:
    """UAS and UAC over SIP-TLS for interop tests, on the product trunk (module docstring).

    Args:
        server_context: the listener's context (``sip_gateway.tls.server_context``).
        client_context: the connectors' context; it verifies every peer they dial.
        media_port: the RTP port our SDP announces (no media is sent or read).
        user: the user part of our From and Contact URIs.
        profile: the media policy of both roles (codecs and SDES suites).
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
        self.received: list[SipRequest] = []
        self.rejected: list[MessageRejected] = []
        self.events: list[SipEvent] = []
        """Every event of every connection, in order."""
        self.endpoints: list[SipEndpoint] = []
        """Every connection an event arrived on, in order of first event."""
        self.inbound: list[InboundCall] = []
        """Calls our UAS accepted, in order."""
        self.exchanges: list[tuple[SipRequest, SipResponse]] = []
        """Our requests and their final responses, in order of the responses."""
        self._server_context = server_context
        self._client_context = client_context
        self._endpoint_config = config
        self._changed = asyncio.Event()
        self._observed: set[SipEndpoint] = set()
        self._port: int | None = None
        self.gateway = self._gateway(self._trunk(INBOUND, "127.0.0.1", 5061))
        self._gateways = [self.gateway]

    # -- configuration ---------------------------------------------------------------

    def _trunk(self, name: str, host: str, port: int, **kwargs: Any) -> TrunkConfig:
        return TrunkConfig(
            name=name,
            host=host,
            port=port,
            allowed_sources=("127.0.0.1/32",),
            caller_id=CallerIdRules(from_user=self.user),
            codecs=tuple(codec.name for codec in self.profile.codecs),
            crypto_suites=self.profile.crypto_suites,
            options_interval=None,
            **kwargs,
        )

    def _gateway(self, trunk: TrunkConfig) -> ObservedGateway:
        contexts = {trunk.name: self._client_context} if self._client_context else {}
        return ObservedGateway(
            self,
            [trunk],
            route=self._route,
            ssl_contexts=contexts,
            endpoint_config=self._endpoint_config,
            user=self.user,
        )

    # -- lifecycle -------------------------------------------------------------------

    async def listen(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Start the SIP-TLS listener and return its port."""
        assert self._server_context is not None, "no server context"
        server = await self.gateway.listen(host, port, self._server_context)
        self._port = server.port
        return server.port

    @property
    def port(self) -> int:
        """The listening port (the UA must be listening)."""
        assert self._port is not None
        return self._port

    @property
    def connector(self) -> SipTlsConnector:
        """The connector of the inbound trunk (in-dialog requests of inbound calls)."""
        return self.gateway.trunks[INBOUND].connector

    @property
    def open_calls(self) -> list[CallLeg]:
        """Calls (both roles) whose dialog or attempt has not ended."""
        return [leg for gateway in self._gateways for leg in gateway.calls]

    @property
    def answers(self) -> list[SdpSession]:
        """The SDP answers our UAS sent, in order."""
        return [call.local_sdp for call in self.inbound if call.local_sdp is not None]

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - bounded close
        """Close every gateway (connections and listener), bounded."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(gw.aclose() for gw in self._gateways))

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

    # -- observation -----------------------------------------------------------------

    def record(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        """Keep ``event`` (called by :class:`ObservedGateway` before dispatching it)."""
        self.events.append(event)
        self.observe(endpoint)
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        if isinstance(event, RequestReceived | AckReceived | CancelReceived):
            self.received.append(event.request)
        elif isinstance(event, MessageRejected):
            self.rejected.append(event)
        self._changed.set()

    def observe(self, endpoint: SipEndpoint) -> None:
        """Record the final responses to the requests we send on ``endpoint``."""
        if endpoint in self._observed:
            return
        self._observed.add(endpoint)
        request = endpoint.request

        async def observed(message: SipRequest, **kwargs: Any) -> SipResponse:
            response = await request(message, **kwargs)
            self.exchanges.append((message, response))
            return response

        endpoint.request = observed  # type: ignore[method-assign]

    def _last_response(self, method: str, call_id: str) -> SipResponse:
        for request, response in reversed(self.exchanges):
            if request.method == method and request.call_id == call_id:
                return response
        raise AssertionError(f"no response to {method} in call {call_id}")

    # -- UAS -------------------------------------------------------------------------

    async def _route(self, call: InboundCall) -> RouteDecision:
        self.inbound.append(call)
        return Answer(media=StubMediaPort(self.media_port))

    async def hangup_inbound(self, index: int = -1, *, timeout: float = 5.0) -> SipResponse:  # noqa: ASYNC109
        """Hang up a call our UAS answered (the last one by default); return the BYE's answer.

        The trunk sends the BYE to the caller's Contact (RFC 3261 12.2.1.1).
        """
        call = self.inbound[index]
        async with asyncio.timeout(timeout):
            await call.hangup()
        return self._last_response("BYE", call.call_id)

    # -- UAC -------------------------------------------------------------------------

    async def call(
        self,
        target: str,
        *,
        account: DigestAccount | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - bound of the whole attempt
    ) -> Call:
        """Call ``target`` (a ``sip:`` URI with host, port and an E.164 user) through a trunk.

        Raises:
            CallFailedError: the call was not answered, or its SDP answer was refused.
            SipConnectError: the TLS connection could not be made (or verified).
            TimeoutError: no outcome within ``timeout`` seconds.
        """
        uri = parse_uri(target)
        assert isinstance(uri, SipUri) and uri.user
        credentials: dict[str, Any] = {}
        if account is not None:
            credentials = {
                "username": account.username,
                "password": account.password,
                "auth_realm": account.realm,
            }
        trunk = self._trunk("peer", uri.host.strip("[]"), uri.port or 5061, **credentials)
        gateway = self._gateway(trunk)
        self._gateways.append(gateway)
        async with asyncio.timeout(timeout):
            await gateway.trunk("peer").connect()  # a TLS failure raises SipConnectError here
            leg = gateway.call("peer", uri.user, media=StubMediaPort(self.media_port))
            try:
                media = await leg.wait_answered()
            except TrunkCallFailedError as exc:
                raise self._failure(target, leg, exc) from exc
        assert leg.endpoint is not None and leg.invite is not None
        return Call(
            leg=leg,
            media=media,
            endpoint=leg.endpoint,
            invite=leg.invite,
            invites_sent=leg.invites_sent,
            provisional=list(leg.provisional),
        )

    @staticmethod
    def _failure(target: str, leg: OutboundCall, exc: TrunkCallFailedError) -> CallFailedError:
        after = " after digest authentication" if leg.invites_sent > 1 else ""
        reason = leg.response.reason if leg.response is not None else exc.reason
        return CallFailedError(
            f"INVITE {target} failed{after}: {exc.status_code} {reason} ({exc.failure})",
            status_code=exc.status_code,
            invites_sent=leg.invites_sent,
        )

    async def hangup(self, call: Call, *, timeout: float = 5.0) -> SipResponse:  # noqa: ASYNC109
        """Hang the call up (BYE) and return the BYE's final response."""
        async with asyncio.timeout(timeout):
            await call.leg.hangup()
        return self._last_response("BYE", call.leg.call_id)
