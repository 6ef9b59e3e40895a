"""OPTIONS keep-alive (trunk up/down) and REGISTER with digest and refresh."""

from __future__ import annotations

import asyncio

from sip_gateway.sip.auth import DigestCredentials, parse_credentials
from sip_gateway.trunk import (
    LivenessCounter,
    RegistrationChanged,
    TrunkStatus,
    TrunkStatusChanged,
)

from .helpers import eventually, gateway_pair, gateway_to

LIMIT = 8.0
ACCOUNT = {"register": True, "username": "acct", "password": "pw"}
CHALLENGE = 'Digest realm="carrier.test", nonce="abc", qop="auth", algorithm=MD5'


def test_liveness_counter():
    counter = LivenessCounter(failures_to_down=2)
    assert counter.status is TrunkStatus.UNKNOWN
    assert counter.record(True) is TrunkStatus.UP
    assert counter.record(True) is None
    assert counter.record(False) is None  # one failure is not enough
    assert counter.record(True) is None
    assert counter.record(False) is None
    assert counter.record(False) is TrunkStatus.DOWN
    assert counter.record(False) is None
    assert counter.record(True) is TrunkStatus.UP


async def test_options_keepalive_marks_the_trunk_up_then_down(pki):
    changes: list[TrunkStatusChanged] = []
    keepalive = {"options_interval": 0.1, "options_failures": 1, "options_timeout": 1.0}
    async with gateway_pair(pki, bridge_trunk=keepalive) as pair, asyncio.timeout(LIMIT):
        pair.bridge.on_status = changes.append
        trunk = pair.bridge.trunk("carrier")
        trunk.monitor.on_change = changes.append
        pair.bridge.start()
        await eventually(lambda: trunk.status is TrunkStatus.UP)
        await pair.carrier.aclose()  # the carrier goes away
        await eventually(lambda: trunk.status is TrunkStatus.DOWN)
    assert [c.status for c in changes] == [TrunkStatus.UP, TrunkStatus.DOWN]
    assert changes[0].detail == "OPTIONS answered 200" and changes[0].trunk == "carrier"


async def test_options_refused_by_policy_still_means_alive(pki):
    """A 403 from an SBC that does not know us is an answer: the trunk is up."""
    async with gateway_pair(pki, carrier_trunk={"allowed_sources": ("192.0.2.1",)}) as pair:
        async with asyncio.timeout(LIMIT):
            assert await pair.bridge.trunk("carrier").monitor.probe()
            assert pair.bridge.trunk("carrier").status is TrunkStatus.UP


async def test_register_with_digest_and_refresh(pki, peer):
    registrar, changes = peer, list[RegistrationChanged]()
    async with (
        gateway_to(
            pki, peer.port, on_registration=changes.append, register_refresh=0.5, **ACCOUNT
        ) as gw,
        asyncio.timeout(LIMIT),
    ):
        gw.start()
        first = await registrar.receive("REGISTER")
        assert first.headers.get("Expires") == "3600"
        registrar.respond(first, 401, headers=[("WWW-Authenticate", CHALLENGE)])
        second = await registrar.receive("REGISTER")
        assert (second.call_id, second.cseq.seq) == (first.call_id, first.cseq.seq + 1)
        credentials = parse_credentials(second.headers.get("Authorization"))
        assert isinstance(credentials, DigestCredentials) and credentials.nc == "00000001"
        contact = second.contacts[0].uri
        registrar.respond(second, 200, headers=[("Contact", f"<{contact}>;expires=2")])
        await eventually(lambda: changes and changes[-1].expires == 2)
        # refreshed after half the granted lifetime, credentials sent up front
        third = await registrar.receive("REGISTER", timeout=3)
        assert (third.call_id, third.cseq.seq) == (first.call_id, second.cseq.seq + 1)
        assert parse_credentials(third.headers.get("Authorization")).nc == "00000002"
        registrar.respond(third, 200, headers=[("Expires", "60")])
        await eventually(lambda: changes[-1].expires == 60)
        assert gw.trunk("carrier").registration.registrations == 2
        closing = asyncio.create_task(gw.aclose())
        bye = await registrar.receive("REGISTER")
        assert bye.headers.get("Expires") == "0"
        registrar.respond(bye, 200)
        await closing
    assert changes[-1].expires == 0


async def test_register_refused_is_reported_and_retried(pki, peer):
    registrar, changes = peer, list[RegistrationChanged]()
    async with (
        gateway_to(
            pki, peer.port, on_registration=changes.append, register_retry=0.2, **ACCOUNT
        ) as gw,
        asyncio.timeout(LIMIT),
    ):
        gw.start()
        first = await registrar.receive("REGISTER")
        registrar.respond(first, 403)
        await eventually(lambda: changes)
        assert changes[0].expires is None and "403" in changes[0].detail
        retry = await registrar.receive("REGISTER", timeout=2)
        registrar.respond(retry, 200)
        await eventually(lambda: changes[-1].expires == 3600)
        closing = asyncio.create_task(gw.aclose())
        registrar.respond(await registrar.receive("REGISTER"), 200)  # Expires: 0
        await closing
