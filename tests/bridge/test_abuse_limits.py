"""The abuse limits on their own (sans-IO): flood buckets, answer delays, trunk channels."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.answer_delay import AnswerDelays
from bridge.auth import AuthGuard, AuthGuardConfig
from bridge.routing import (
    DestinationBlockedError,
    DialPlan,
    DialPlanConfig,
    TrunkChannels,
    TrunkChannelsError,
)
from bridge.settings import DialPlanSettings
from sip_gateway.flood import FloodGuard, FloodGuardConfig, flood_source

# -- flood guard --------------------------------------------------------------------------


def test_flood_guard_allows_a_burst_then_the_rate_and_says_when_to_retry() -> None:
    guard = FloodGuard(FloodGuardConfig(rate=2.0, burst=5))
    assert [guard.check("192.0.2.1", 0.0) for _ in range(5)] == [None] * 5
    assert guard.check("192.0.2.1", 0.0) == 1  # one token comes in 0.5 s: retry after 1 s
    assert guard.run_started
    assert guard.check("192.0.2.1", 0.0) == 1
    assert not guard.run_started  # the same run: logged once
    assert guard.check("192.0.2.2", 0.0) is None  # another source has its own bucket
    assert guard.check("192.0.2.1", 0.5) is None  # refilled at 2 per second
    assert guard.check("192.0.2.1", 0.5) == 1
    assert guard.run_started  # a new run after a request went through
    assert (guard.allowed, guard.limited) == (7, 3)


def test_flood_guard_retry_after_grows_with_a_slow_rate() -> None:
    guard = FloodGuard(FloodGuardConfig(rate=0.1, burst=1))
    assert guard.check("192.0.2.1", 0.0) is None
    assert guard.check("192.0.2.1", 0.0) == 10


def test_flood_guard_counts_an_ipv6_64_as_one_source_and_is_bounded() -> None:
    assert flood_source("2001:db8::1") == flood_source("2001:db8::ffff") == "2001:db8::/64"
    assert flood_source("::ffff:192.0.2.7") == "192.0.2.7"
    guard = FloodGuard(FloodGuardConfig(rate=1.0, burst=1, max_sources=3))
    assert guard.check("2001:db8::1", 0.0) is None
    assert guard.check("2001:db8::2", 0.0) == 1
    for n in range(10):
        guard.check(f"198.51.100.{n}", 0.0)
    assert guard.tracked == 3


@pytest.mark.parametrize("kwargs", [{"rate": 0.0}, {"burst": 0}, {"max_sources": 0}])
def test_flood_guard_config_refuses_non_positive_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="positive"):
        FloodGuardConfig(**kwargs)


# -- slowing a guesser ----------------------------------------------------------------------


def test_auth_delay_doubles_per_failure_up_to_the_cap_and_is_zero_once_blocked() -> None:
    guard = AuthGuard(AuthGuardConfig(max_failures=5, delay_step=0.25, max_delay=0.8))
    assert guard.delay("192.0.2.1", 0.0) == 0.0
    delays = []
    for n in range(4):
        guard.record_failure("192.0.2.1", float(n))
        delays.append(guard.delay("192.0.2.1", float(n)))
    assert delays == [0.25, 0.5, 0.8, 0.8]
    assert guard.delay("192.0.2.2", 3.0) == 0.0  # per source
    assert guard.record_failure("192.0.2.1", 4.0) is True
    assert guard.delay("192.0.2.1", 4.0) == 0.0  # blocked: its 403 goes at once
    assert guard.delay("192.0.2.1", 30.0 + 400.0) == 0.0  # the window passed


def test_auth_delay_forgets_failures_outside_the_window() -> None:
    guard = AuthGuard(AuthGuardConfig(window=10.0, delay_step=0.1, max_delay=1.0))
    guard.record_failure("192.0.2.1", 0.0)
    guard.record_failure("192.0.2.1", 5.0)
    assert guard.delay("192.0.2.1", 6.0) == pytest.approx(0.2)
    assert guard.delay("192.0.2.1", 12.0) == pytest.approx(0.1)


class _Endpoint:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, float]] = []
        self.is_closing = False

    def send_response(self, tid: str, response: Any) -> None:
        self.sent.append((tid, response, asyncio.get_running_loop().time()))


async def test_answer_delays_hold_answers_without_blocking_and_are_bounded() -> None:
    delays = AnswerDelays(max_pending=2)
    endpoint, closed = _Endpoint(), _Endpoint()
    loop = asyncio.get_running_loop()
    start = loop.time()
    delays.send(endpoint, "t1", "late", 0.1)  # type: ignore[arg-type]
    delays.send(closed, "t2", "dropped", 0.1)  # type: ignore[arg-type]
    delays.send(endpoint, "t3", "full: now", 0.1)  # type: ignore[arg-type]
    delays.send(endpoint, "t4", "no delay", 0.0)  # type: ignore[arg-type]
    assert [tid for tid, _, _ in endpoint.sent] == ["t3", "t4"]
    assert delays.pending == 2
    closed.is_closing = True
    await asyncio.sleep(0.2)
    assert [tid for tid, _, _ in endpoint.sent] == ["t3", "t4", "t1"]
    assert endpoint.sent[-1][2] - start >= 0.1
    assert closed.sent == []
    assert (delays.pending, delays.delayed) == (0, 2)
    delays.send(endpoint, "t5", "cancelled", 5.0)  # type: ignore[arg-type]
    delays.close()
    assert delays.pending == 0


# -- trunk channels --------------------------------------------------------------------------


def test_trunk_channels_count_both_directions_and_release_once() -> None:
    channels = TrunkChannels({"carrier": 2})
    first = channels.seize("carrier")
    second = channels.seize("carrier")
    with pytest.raises(TrunkChannelsError) as refused:
        channels.seize("carrier")
    assert (refused.value.sip_status, refused.value.reason) == (503, "Trunk channels busy")
    assert refused.value.end_reason == "trunk-channel-limit"
    first()
    first()  # idempotent
    assert channels.in_use("carrier") == 1
    third = channels.seize("carrier")
    second()
    third()
    assert channels.in_use("carrier") == 0
    unlimited = [channels.seize("other") for _ in range(50)]  # not configured: no limit
    assert channels.limit("other") is None and channels.in_use("other") == 50
    for release in unlimited:
        release()
    with pytest.raises(ValueError, match="at least 1"):
        TrunkChannels({"carrier": 0})


# -- premium ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "+19005550100",  # NANP 900 premium
        "+447012345678",  # UK 070 personal numbers
        "+449098765432",  # UK 09 premium
        "+33899123456",  # France 089 premium
        "+4990012345678",  # Germany 0900
        "+39899123456",  # Italy 899
        "+881612345678",  # GMSS satellite (Iridium)
        "+870772123456",  # Inmarsat
        "+97912345678",  # international premium rate
        "+88234567890",  # international networks
    ],
)
def test_default_blocked_prefixes_refuse_premium_and_satellite_numbers(number: str) -> None:
    plan = DialPlan(DialPlanConfig(blocked_prefixes=DialPlanSettings().blocked_prefixes))
    with pytest.raises(DestinationBlockedError):
        plan.route(number)


def test_default_blocked_prefixes_let_ordinary_numbers_through() -> None:
    plan = DialPlan(DialPlanConfig(blocked_prefixes=DialPlanSettings().blocked_prefixes))
    for number in ("+441632960123", "+12125550100", "+33123456789", "+4930123456"):
        assert plan.route(number) == number
