"""Helpers for the trunk tests: a recording media port, trunk configs, a gateway to a scripted
peer and a gateway pair."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from sip_gateway.aio import SipEndpointConfig
from sip_gateway.sdp import MediaConfig
from sip_gateway.tls import ClientAuth
from sip_gateway.trunk import CallEvent, RegistrationChanged, TrunkConfig, TrunkGateway
from tests.interop.peers import free_port
from tests.pki import Pki

GATEWAY = "+15551230001"
CALLER = "+15557654321"
_ports = itertools.count(41000, 2)


class FakeMedia:
    """A MediaPort that records what signaling hands it."""

    def __init__(self, port: int | None = None) -> None:
        self.local_address = ("127.0.0.1", port or next(_ports))
        self.applied: list[MediaConfig] = []
        self.closed = 0

    def apply(self, config: MediaConfig) -> None:
        self.applied.append(config)

    def close(self) -> None:
        self.closed += 1


@dataclass
class Events:
    """An EventCallback that records events and lets tests wait for one type."""

    seen: list[CallEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: CallEvent) -> None:
        self.seen.append(event)
        self.changed.set()

    def types(self) -> list[str]:
        return [type(e).__name__ for e in self.seen]

    async def wait_for(self, kind: type, timeout: float = 5.0) -> CallEvent:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                for event in self.seen:
                    if isinstance(event, kind):
                        return event
                self.changed.clear()
                await self.changed.wait()


def trunk_config(pki: Pki, name: str, port: int, **kwargs: object) -> TrunkConfig:
    """A trunk to 127.0.0.1:port trusting the test CA, inbound allowed from 127.0.0.1."""
    base = TrunkConfig(
        name=name,
        host="127.0.0.1",
        port=port,
        ca_file=pki.ca,
        allowed_sources=("127.0.0.1/32",),
        options_interval=None,
    )
    return replace(base, **kwargs)  # type: ignore[arg-type]


async def eventually(predicate: Callable[[], object], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def gateway_to(
    pki: Pki,
    port: int,
    *,
    scale: float = 1.0,
    endpoint_config: SipEndpointConfig | None = None,
    on_registration: Callable[[RegistrationChanged], None] | None = None,
    **trunk: object,
) -> AsyncIterator[TrunkGateway]:
    """A gateway whose one trunk "carrier" points at 127.0.0.1:port (a :class:`RawPeer`);
    its calls and the gateway itself are closed on the way out."""
    gw = TrunkGateway(
        [trunk_config(pki, "carrier", port, **trunk)],
        timer_scale=scale,
        endpoint_config=endpoint_config,
        on_registration=on_registration,
    )
    try:
        yield gw
    finally:
        async with asyncio.timeout(5):
            for call in gw.calls:
                await call.aclose()
            await gw.aclose()


@dataclass
class Pair:
    """Two gateways on loopback: ``bridge`` calls out through trunk "carrier" to ``carrier``,
    whose trunk "bridge" points back; both listen, both accept 127.0.0.1."""

    bridge: TrunkGateway
    carrier: TrunkGateway
    bridge_port: int
    carrier_port: int


@contextlib.asynccontextmanager
async def gateway_pair(
    pki: Pki,
    *,
    bridge_route=None,
    carrier_route=None,
    bridge_trunk: dict | None = None,
    carrier_trunk: dict | None = None,
    timer_scale: float = 1.0,
    carrier_client_auth: ClientAuth = ClientAuth.NONE,
) -> AsyncIterator[Pair]:
    bridge_port, carrier_port = free_port(), free_port()
    bridge = TrunkGateway(
        [trunk_config(pki, "carrier", carrier_port, **(bridge_trunk or {}))],
        route=bridge_route,
        timer_scale=timer_scale,
    )
    carrier = TrunkGateway(
        [trunk_config(pki, "bridge", bridge_port, **(carrier_trunk or {}))],
        route=carrier_route,
        timer_scale=timer_scale,
        user="carrier",
    )
    await bridge.listen("127.0.0.1", bridge_port, pki.server_context())
    await carrier.listen(
        "127.0.0.1", carrier_port, pki.server_context(client_auth=carrier_client_auth)
    )
    try:
        yield Pair(bridge, carrier, bridge_port, carrier_port)
    finally:
        async with asyncio.timeout(5):
            await bridge.aclose()
            await carrier.aclose()
