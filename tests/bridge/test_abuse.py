"""Abuse of a real bridge: trunk channel limits, user enumeration, password guessing, floods.

Each test starts a bridge through the ``bridge`` fixture of ``test_calls`` (free loopback
ports, the embedded carrier simulator, a SQLite user database) and attacks it with the
clients of :mod:`tests.sip_attack` from ``127.0.0.2``, a second loopback address, while
legitimate traffic comes from ``127.0.0.1``. Wordlists live here, in the module, never in
files. Floods are bounded in count (2000 requests) and time.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bridge.call.journal import CallUpdate
from bridge.routing import TrunkChannels
from sip_gateway.tls import TlsClientConfig, client_context
from sip_gateway.trunk import CallFailedError
from tests.bridge import test_calls as _call_fixtures
from tests.bridge.test_calls import DID, NUMBER, PASSWORD, USER, Harness, _answered_call, _hang_up
from tests.sip_attack import RawSip, enumerate_users, flood, guess_passwords, register_with
from tests.webrtc_client import DialFailedError

ATTACKER = "127.0.0.2"
CANDIDATES = ("alice", "admin", "100", "bob", "root", "alice2", "sip", "operator")
WORDLIST = ("123456", "password", "alice", "letmein", "qwerty", "secret", "sip1234", "abc123")
FAST = {"browser_request_rate": 10000.0, "browser_request_burst": 100000}

Factory = Callable[..., Awaitable[Harness]]
bridge = _call_fixtures.bridge
pki = _call_fixtures.pki


class _Updates:
    """A journal sink keeping every update (a test's view of the journal)."""

    def __init__(self) -> None:
        self.updates: list[CallUpdate] = []

    def call_update(self, update: CallUpdate) -> None:
        self.updates.append(update)

    def refused(self) -> list[str]:
        return [str(u.detail.get("reason")) for u in self.updates if u.event == "refused"]


async def _wss(harness: Harness, source: str = ATTACKER) -> RawSip:
    context = client_context(TlsClientConfig(ca_file=harness.ca))
    url = f"wss://127.0.0.1:{harness.running.https_port}/sip"
    return await RawSip.wss(url, context, source=source, domain=harness.settings.sip.realm)


async def _tls(harness: Harness, source: str = ATTACKER) -> RawSip:
    context = client_context(TlsClientConfig(ca_file=harness.ca))
    port = harness.running.sip_port
    return await RawSip.tls(
        "127.0.0.1", port, context, source=source, domain=harness.settings.sip.realm
    )


@pytest.fixture
async def conns() -> AsyncIterator[list[RawSip]]:
    opened: list[RawSip] = []
    yield opened
    for conn in opened:
        await conn.close()


def _metric(text: str, name: str, label: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name) and label in line and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {label} not in /metrics")


# -- toll fraud: trunk channels ---------------------------------------------------------


async def test_trunk_channel_limit_refuses_both_directions_with_503_and_a_record(
    bridge: Factory,
) -> None:
    harness = await bridge()
    running = harness.running
    assert running.orchestrator.channels.limit("sim") == 100  # the settings' default
    running.orchestrator.channels = TrunkChannels({"sim": 1})
    updates = _Updates()
    running.orchestrator.journal.add_sink(updates)
    client = await harness.client()
    first = await _answered_call(client)
    second = await client.dial(NUMBER)
    with pytest.raises(DialFailedError) as refused:
        await second.wait_answered()
    assert (refused.value.status, refused.value.reason) == (503, "Trunk channels busy")
    sim = running.carrier_sim
    assert sim is not None
    with pytest.raises(CallFailedError) as inbound:
        await sim.call(DID, "127.0.0.1", running.sip_port)
    assert inbound.value.status_code == 503
    assert updates.refused() == ["trunk-channel-limit", "trunk-channel-limit"]
    records = list(running.orchestrator.recent_refusals)[-2:]
    for record, direction in zip(records, ("outbound", "inbound"), strict=True):
        data = record.as_dict()
        assert data["direction"] == direction
        assert data["end_reason"] == "limit-reached"
        assert data["trunk"] == "sim"
        assert [r["reason"] for r in data["policy_refusals"]] == ["trunk-channel-limit"]
    assert running.ops is not None
    text = running.ops.metrics.exposition().decode()
    assert _metric(text, "pstn_bridge_attempts_refused_total", "trunk-channel-limit") == 2
    assert _metric(text, "pstn_bridge_policy_refusals_total", "trunk-channel-limit") == 2
    assert _metric(text, "pstn_bridge_trunk_channels_in_use", '"sim"') == 1
    await _hang_up(harness, first)
    assert running.orchestrator.channels.in_use("sim") == 0
    third = await _answered_call(client)  # the channel is free again
    await _hang_up(harness, third)


async def test_user_limits_and_premium_numbers_are_refused_and_recorded(bridge: Factory) -> None:
    harness = await bridge(
        sections={
            "limits": {"max_concurrent_calls_per_user": 1, "max_calls_per_minute_per_user": 2}
        }
    )
    running = harness.running
    updates = _Updates()
    running.orchestrator.journal.add_sink(updates)
    client = await harness.client()

    async def refused(number: str) -> tuple[int, str]:
        call = await client.dial(number)
        with pytest.raises(DialFailedError) as failed:
            await call.wait_answered()
        return failed.value.status, failed.value.reason

    assert await refused("+19005550100") == (403, "Destination blocked")
    first = await _answered_call(client)
    assert await refused(NUMBER) == (403, "Call limit reached")
    await _hang_up(harness, first)
    second = await _answered_call(client)
    await _hang_up(harness, second)
    assert await refused(NUMBER) == (403, "Too many calls per minute")
    reasons = ["destination-blocked", "call-limit", "call-rate-limit"]
    assert updates.refused() == reasons
    records = [r.as_dict() for r in list(running.orchestrator.recent_refusals)[-3:]]
    assert [r["policy_refusals"][0]["reason"] for r in records] == reasons
    assert running.ops is not None
    text = running.ops.metrics.exposition().decode()
    for reason in reasons:
        assert _metric(text, "pstn_bridge_policy_refusals_total", f'"{reason}"') == 1
        assert _metric(text, "pstn_bridge_attempts_refused_total", f'"{reason}"') == 1


# -- credential attacks -----------------------------------------------------------------


async def test_enumeration_over_wss_and_sip_tls_classifies_nobody(
    bridge: Factory, conns: list[RawSip]
) -> None:
    """``svwar`` over WSS (REGISTER, INVITE, OPTIONS) and SIP-TLS: every name looks alike."""
    harness = await bridge()
    assert USER in CANDIDATES
    wss = await _wss(harness)
    tls = await _tls(harness)  # not a trunk's address: refused before anything else
    trunk = await _tls(harness, "127.0.0.1")  # the trunk's own address
    conns.extend((wss, tls, trunk))
    expected = {
        (wss, "REGISTER"): 401,
        (wss, "INVITE"): 407,
        (wss, "OPTIONS"): 200,
        (tls, "REGISTER"): 403,
        (tls, "INVITE"): 403,
        (tls, "OPTIONS"): 403,
        (trunk, "REGISTER"): 405,
        (trunk, "OPTIONS"): 200,
    }
    for (conn, method), status in expected.items():
        found = await enumerate_users(conn, method, CANDIDATES)
        shapes = set(found.values())
        assert len(shapes) == 1, (conn.transport, method, found)
        assert next(iter(shapes))[0] == status, (conn.transport, method, shapes)
    # svcrack over SIP-TLS gets no challenge to answer, not even with the right password
    for conn, status in ((tls, 403), (trunk, 405)):
        assert (await register_with(conn, USER, PASSWORD)).status == status
    # svcrack's first step over WSS: a wrong password for a real user and for a made-up one
    answers = [await register_with(wss, user, "not-it") for user in (USER, "nobody")]
    assert [a.status for a in answers] == [403, 403]
    assert answers[0].reason == answers[1].reason
    assert sorted(n for n, _ in answers[0].headers) == sorted(n for n, _ in answers[1].headers)


async def test_password_guessing_is_slowed_then_blocked_per_source(
    bridge: Factory, conns: list[RawSip]
) -> None:
    """``svcrack`` over WSS: answers slow down, then the right password is refused too
    until the block time is over; another source logs in all the while."""
    harness = await bridge(
        sections={
            "limits": {
                "auth_failures_before_block": 5,
                "auth_block_time": 2.0,
                "auth_delay_step": 0.1,
                "auth_max_delay": 0.4,
            }
        }
    )
    attacker = await _wss(harness)
    conns.append(attacker)
    results = await guess_passwords(attacker, USER, (*WORDLIST, PASSWORD))
    statuses = [status for status, _ in results]
    assert statuses == [403] * (len(WORDLIST) + 1), "blocked before the right guess"
    elapsed = [seconds for _, seconds in results]
    # answers 1..5 wait 0.1, 0.2, 0.4, 0.4 s, 0 (the fifth failure blocks); then at once
    assert elapsed[0] >= 0.1 and elapsed[1] >= 0.2 and elapsed[2] >= 0.4 and elapsed[3] >= 0.4
    assert max(elapsed[4:]) < 0.4
    assert (await register_with(attacker, USER, PASSWORD)).status == 403
    guard = harness.running.orchestrator.auth.guard
    assert guard.blocked_sources(asyncio.get_running_loop().time()) == [ATTACKER]
    client = await harness.client()  # 127.0.0.1: still logs in
    assert client.contact_echoed()
    assert harness.running.ops is not None
    text = harness.running.ops.metrics.exposition().decode()
    assert _metric(text, "pstn_bridge_auth_blocks_total") == 1
    assert _metric(text, "pstn_bridge_auth_answers_delayed_total") >= 4
    async with asyncio.timeout(5):  # the block ends after auth_block_time
        while guard.is_blocked(ATTACKER, asyncio.get_running_loop().time()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert (await register_with(attacker, USER, PASSWORD)).status == 200


async def test_unknown_and_known_users_are_answered_in_the_same_time(
    bridge: Factory, conns: list[RawSip]
) -> None:
    """200 wrong-password REGISTERs each for a real and for unknown users, interleaved."""
    harness = await bridge(
        sections={"limits": {"auth_failures_before_block": 1000, "auth_delay_step": 0.0} | FAST}
    )
    conn = await _wss(harness)
    conns.append(conn)
    known: list[float] = []
    unknown: list[float] = []
    for index in range(200):
        for user, times in ((USER, known), (f"user{index}", unknown)):
            answer = await register_with(conn, user, "wrong guess")
            assert answer.status == 403
            times.append(answer.elapsed)
    median_known, median_unknown = statistics.median(known), statistics.median(unknown)
    print(
        f"wrong-password REGISTER: median {median_known * 1e3:.2f} ms for {USER}, "
        f"{median_unknown * 1e3:.2f} ms for unknown users"
    )
    assert abs(median_known - median_unknown) <= max(0.0005, 0.25 * median_known)
    # the probability that a known user's answer is the slower of a pair: 0.5 if no leak
    # (its standard error with 200 + 200 samples is about 0.03)
    slower = sum((k > u) + 0.5 * (k == u) for k in known for u in unknown)
    print(f"P(known slower) = {slower / (len(known) * len(unknown)):.3f}")
    assert abs(slower / (len(known) * len(unknown)) - 0.5) < 0.15


def test_an_unknown_user_costs_the_digest_server_the_same_work(monkeypatch: Any) -> None:
    """The server computes a digest for an unknown user too (against a dummy HA1)."""
    import secrets

    from bridge.auth import AuthGuard, BrowserAuth
    from sip_gateway.sip import auth_server
    from sip_gateway.sip.digest import DigestAlgorithm, compute_ha1
    from sip_gateway.sip.message import SipRequest, SipResponse, parse_message

    realm = "pstn-bridge"
    ha1s = {(USER, alg): compute_ha1(USER, realm, PASSWORD, alg) for alg in DigestAlgorithm}

    def lookup(user: str, _realm: str, algorithm: DigestAlgorithm) -> str | None:
        return ha1s.get((user, algorithm))

    auth = BrowserAuth.for_realm(
        realm, b"k" * 32, ha1_lookup=lookup, random_bytes=secrets.token_bytes, guard=AuthGuard()
    )
    computed: list[str] = []
    real = auth_server.compute_response

    def counting(**kwargs: Any) -> str:
        computed.append(kwargs["ha1"])
        return real(**kwargs)

    monkeypatch.setattr(auth_server, "compute_response", counting)
    from tests.sip_attack import RawSip, _challenge, _parse, authorization

    conn = RawSip(realm, "WSS")
    for user in (USER, "nobody"):
        challenge_req = parse_message(conn.build("REGISTER", user))
        assert isinstance(challenge_req, SipRequest)
        challenged = auth.authenticate(challenge_req, source="192.0.2.1", now=1.0)
        assert isinstance(challenged, SipResponse)
        answer = _parse(challenged.to_bytes(), 0.0)
        header = authorization(_challenge(answer), user, "wrong", "REGISTER", f"sip:{realm}")
        request = parse_message(conn.build("REGISTER", user, headers=[("Authorization", header)]))
        assert isinstance(request, SipRequest)
        outcome = auth.authenticate(request, source="192.0.2.1", now=2.0)
        assert getattr(outcome, "status_code", None) == 403
    assert len(computed) == 2
    assert computed[1] == "0" * 32  # the unknown user's dummy HA1, compared like a real one


# -- floods -----------------------------------------------------------------------------


async def test_register_and_invite_floods_over_wss_get_503_while_a_call_completes(
    bridge: Factory, conns: list[RawSip]
) -> None:
    harness = await bridge(
        sections={"limits": {"browser_request_rate": 5.0, "browser_request_burst": 20}}
    )
    client = await harness.client()  # 127.0.0.1, before the flood
    attackers = [await _wss(harness), await _wss(harness)]
    conns.extend(attackers)
    flooding = asyncio.gather(
        *(
            flood(conn, method, 1000, pause=0.15)
            for conn, method in zip(attackers, ("REGISTER", "INVITE"), strict=True)
        )
    )
    await asyncio.sleep(0.1)
    assert (await client.register()).status_code == 200  # during the flood
    call = await _answered_call(client)  # placed during the flood
    assert not flooding.done(), "the flood ended before the call was answered"
    await _hang_up(harness, call)
    async with asyncio.timeout(30):
        results = await flooding
    for statuses, retry_after in results:
        assert sum(statuses.values()) == 1000
        assert statuses[503] >= 900, statuses
        assert retry_after and all(int(v) >= 1 for v in retry_after)
    assert harness.running.ops is not None
    text = harness.running.ops.metrics.exposition().decode()
    assert _metric(text, "pstn_bridge_flood_limited_total", '"wss"') >= 1800


async def test_invite_flood_on_sip_tls_gets_503_while_a_carrier_call_completes(
    bridge: Factory, conns: list[RawSip]
) -> None:
    harness = await bridge(
        sections={"limits": {"carrier_request_rate": 5.0, "carrier_request_burst": 20}}
    )
    client = await harness.client()
    attacker = await _tls(harness)
    conns.append(attacker)
    flooding = asyncio.ensure_future(flood(attacker, "INVITE", 2000, pause=0.1))
    await asyncio.sleep(0.1)
    sim = harness.running.carrier_sim
    assert sim is not None
    placing = asyncio.ensure_future(sim.call(DID, "127.0.0.1", harness.running.sip_port))
    incoming = await client.next_incoming()
    await incoming.answer()
    async with asyncio.timeout(10):
        sim_call = await placing
    await incoming.wait_media()
    assert not flooding.done(), "the flood ended before the call was answered"
    assert await incoming.hangup() == 200
    async with asyncio.timeout(5):
        await sim_call.wait_ended()
    async with asyncio.timeout(30):
        statuses, retry_after = await flooding
    assert sum(statuses.values()) == 2000
    assert statuses[503] >= 1900 and statuses[503] + statuses[403] == 2000, statuses
    assert retry_after and all(int(v) >= 1 for v in retry_after)
    assert harness.running.ops is not None
    text = harness.running.ops.metrics.exposition().decode()
    assert _metric(text, "pstn_bridge_flood_limited_total", '"sip"') >= 1900
