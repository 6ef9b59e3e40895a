"""Dial plan (normalisation, allowed and blocked prefixes) and per-user call limits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.routing import (
    AddressIncompleteError,
    CallLimits,
    CallLimitsConfig,
    CallRateError,
    ConcurrentCallsError,
    DestinationBlockedError,
    DestinationNotAllowedError,
    DialPlan,
    DialPlanConfig,
    LimitExceededError,
    RoutingError,
)

E164 = re.compile(r"\+[1-9][0-9]{0,14}")
UK = DialPlanConfig(
    country_code="44",
    allowed_prefixes=("+44", "+1"),
    blocked_prefixes=("+4490", "+4491", "+1900"),
)

# --- examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialed", "expected"),
    [
        ("+44 20 7946 0000", "+442079460000"),
        ("020 7946 0000", "+442079460000"),
        ("0044-20-7946-0000", "+442079460000"),
        ("%2B12025550123;user=phone", "+12025550123"),
        ("+1 (202) 555-0123", "+12025550123"),
    ],
)
def test_routes_to_e164(dialed: str, expected: str) -> None:
    assert DialPlan(UK).route(dialed) == expected


@pytest.mark.parametrize(
    ("dialed", "error", "status", "reason", "end_reason"),
    [
        ("", AddressIncompleteError, 484, "Address Incomplete", "invalid-number"),
        ("alice", AddressIncompleteError, 484, "Address Incomplete", "invalid-number"),
        ("+", AddressIncompleteError, 484, "Address Incomplete", "invalid-number"),
        ("+0441632960123", AddressIncompleteError, 484, "Address Incomplete", "invalid-number"),
        ("*21#", AddressIncompleteError, 484, "Address Incomplete", "invalid-number"),
        ("+1234567890123456", AddressIncompleteError, 484, "Address Incomplete", "invalid-number"),
        ("09012345678", DestinationBlockedError, 403, "Destination blocked", "destination-blocked"),
        (
            "+1 900 555 0100",
            DestinationBlockedError,
            403,
            "Destination blocked",
            "destination-blocked",
        ),
        (
            "+33142685300",
            DestinationNotAllowedError,
            403,
            "Destination not allowed",
            "destination-not-allowed",
        ),
    ],
)
def test_refusals_carry_their_wire_meaning(
    dialed: str, error: type[RoutingError], status: int, reason: str, end_reason: str
) -> None:
    with pytest.raises(error) as refused:
        DialPlan(UK).route(dialed)
    assert (refused.value.sip_status, refused.value.reason) == (status, reason)
    assert refused.value.end_reason == end_reason


def test_without_a_country_code_national_numbers_are_incomplete() -> None:
    with pytest.raises(AddressIncompleteError):
        DialPlan(DialPlanConfig()).route("020 7946 0000")
    assert DialPlan(DialPlanConfig()).route("00442079460000") == "+442079460000"


def test_blocked_wins_over_a_longer_allowed_prefix() -> None:
    plan = DialPlan(DialPlanConfig(allowed_prefixes=("+4420",), blocked_prefixes=("+44",)))
    with pytest.raises(DestinationBlockedError):
        plan.route("+442079460000")


@pytest.mark.parametrize(
    "values",
    [
        {"country_code": "0"},
        {"country_code": "1234"},
        {"national_prefix": "x"},
        {"international_prefix": "00000"},
        {"allowed_prefixes": ("44",)},
        {"blocked_prefixes": ("+44 90",)},
    ],
)
def test_config_is_validated(values: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"country_code|prefix"):
        DialPlanConfig(**values)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------

digits = st.text("0123456789", min_size=1, max_size=15)
e164 = st.builds(
    lambda first, rest: f"+{first}{rest}",
    st.sampled_from("123456789"),
    st.text("0123456789", max_size=14),
)
prefixes = st.lists(st.builds(lambda d: "+" + d, st.text("0123456789", max_size=4)), max_size=4)
configs = st.builds(
    DialPlanConfig,
    country_code=st.none() | st.from_regex(r"[1-9][0-9]{0,2}", fullmatch=True),
    national_prefix=st.sampled_from(["", "0", "1", "8"]),
    international_prefix=st.sampled_from(["", "00", "011", "810"]),
    allowed_prefixes=prefixes,
    blocked_prefixes=prefixes,
)


@given(config=configs, dialed=st.text(max_size=40))
def test_any_text_routes_to_e164_or_is_refused(config: DialPlanConfig, dialed: str) -> None:
    try:
        number = DialPlan(config).route(dialed)
    except RoutingError as exc:
        assert exc.sip_status in (403, 484)
        return
    assert E164.fullmatch(number)
    assert DialPlan(config).route(number) == number  # routing is idempotent


def _model(number: str, allowed: list[str], blocked: list[str]) -> type[RoutingError] | None:
    """The prefix rules written out the slow way."""
    if any(number[: len(prefix)] == prefix for prefix in blocked):
        return DestinationBlockedError
    if not any(number[: len(prefix)] == prefix for prefix in allowed):
        return DestinationNotAllowedError
    return None


@given(number=e164, allowed=prefixes, blocked=prefixes)
def test_prefix_rules_match_the_model(number: str, allowed: list[str], blocked: list[str]) -> None:
    plan = DialPlan(
        DialPlanConfig(allowed_prefixes=tuple(allowed), blocked_prefixes=tuple(blocked))
    )
    expected = _model(number, allowed, blocked)
    if expected is None:
        assert plan.route(number) == number
    else:
        with pytest.raises(expected):
            plan.route(number)


@given(number=e164, cut=st.integers(2, 16), longer=st.integers(0, 3))
def test_a_blocked_prefix_of_the_number_always_wins(number: str, cut: int, longer: int) -> None:
    blocked = number[:cut]
    allowed = number[: cut + longer]  # an allowed prefix of the number, as long or longer
    plan = DialPlan(DialPlanConfig(allowed_prefixes=(allowed,), blocked_prefixes=(blocked,)))
    with pytest.raises(DestinationBlockedError):
        plan.route(number)


separators = st.lists(st.sampled_from(["", " ", "-", ".", "(", ")", "/"]), min_size=16, max_size=16)


@given(number=e164, seps=separators)
def test_separators_and_international_prefix_do_not_change_the_number(
    number: str, seps: list[str]
) -> None:
    plan = DialPlan(DialPlanConfig(international_prefix="00"))
    spaced = "+" + "".join(sep + digit for sep, digit in zip(seps, number[1:], strict=False))
    assert plan.route(spaced) == number
    assert plan.route("00" + number[1:]) == number


@given(
    country=st.from_regex(r"[1-9][0-9]{0,2}", fullmatch=True),
    rest=digits.filter(lambda d: not d.startswith("0")),  # "00..." is the international form
)
def test_a_national_number_is_the_country_code_plus_the_rest(country: str, rest: str) -> None:
    plan = DialPlan(DialPlanConfig(country_code=country, national_prefix="0"))
    international = f"+{country}{rest}"
    if len(country + rest) > 15:
        with pytest.raises(AddressIncompleteError):
            plan.route("0" + rest)
        return
    assert plan.route("0" + rest) == plan.route(international) == international


# --- call limits ---------------------------------------------------------------------------


def test_concurrent_limit_and_idempotent_release() -> None:
    limits = CallLimits(CallLimitsConfig(max_concurrent=2, max_per_minute=100))
    first = limits.admit("alice", 0.0)
    limits.admit("alice", 1.0)
    with pytest.raises(ConcurrentCallsError) as refused:
        limits.admit("alice", 2.0)
    assert (refused.value.sip_status, refused.value.reason) == (403, "Call limit reached")
    assert refused.value.end_reason == "call-limit"
    limits.admit("bob", 2.0)  # limits are per user
    limits.release(first)
    limits.release(first)  # idempotent: does not free a second slot
    assert limits.active("alice") == 1
    limits.admit("alice", 3.0)
    with pytest.raises(ConcurrentCallsError):
        limits.admit("alice", 4.0)


def test_calls_per_minute_slide() -> None:
    limits = CallLimits(CallLimitsConfig(max_concurrent=10, max_per_minute=3))
    for now in (0.0, 20.0, 40.0):
        limits.release(limits.admit("alice", now))
    with pytest.raises(CallRateError) as refused:
        limits.admit("alice", 59.0)
    assert isinstance(refused.value, LimitExceededError)
    assert (refused.value.sip_status, refused.value.reason) == (403, "Too many calls per minute")
    with pytest.raises(CallRateError):
        limits.admit("alice", 59.9)  # refused attempts do not count ...
    limits.admit("alice", 60.0)  # ... so the call of 0 s sliding out frees one
    with pytest.raises(CallRateError):
        limits.admit("alice", 61.0)
    limits.admit("alice", 80.0)


def test_memory_is_bounded_and_active_calls_are_never_forgotten() -> None:
    limits = CallLimits(CallLimitsConfig(max_concurrent=1, max_per_minute=1, max_users=3))
    busy = limits.admit("busy", 0.0)
    for index in range(10):
        limits.release(limits.admit(f"user{index}", 1.0 + index))
    assert limits.tracked == 3
    with pytest.raises(ConcurrentCallsError):
        limits.admit("busy", 20.0)  # still remembered: it holds a call
    limits.admit("user0", 20.0)  # forgotten while idle: its window starts afresh
    limits.release(busy)
    limits.admit("busy", 70.0)


def test_limits_config_is_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CallLimitsConfig(max_concurrent=0)
