"""Outbound dial plan and per-user call limits: the bridge's toll-fraud controls (sans-IO).

Theory of operation: :class:`DialPlan` turns what a browser user dialed into the E.164
number the trunk is asked for, or refuses it. Normalisation is
:func:`sip_gateway.trunk.normalize_e164` (the project's one number normaliser) with the
plan's country code and national/international prefixes; then the prefix rules apply:

* a number under any blocked prefix is refused, **whatever the allowed prefixes say**: a
  blocked prefix always wins over an allowed one, even a longer allowed one (``+44``
  blocked and ``+4420`` allowed still refuses ``+442079460000``). Premium-rate ranges are
  the toll-fraud target; an operator who wants an exception removes the block instead of
  hoping a longer allow overrides it;
* otherwise the number must start with one of the allowed prefixes (``+`` allows all).

:class:`CallLimits` admits or refuses a user's new call: at most ``max_concurrent`` calls
at once (a :class:`CallTicket` is held for each; :meth:`CallLimits.release` is idempotent)
and at most ``max_per_minute`` admitted calls in any sliding 60-second window (refused
attempts do not count, so a user who retries is not locked out for longer). Memory is
bounded: past ``max_users`` tracked users, idle ones (no call in progress) are forgotten,
least recently admitted first; a forgotten user's rate window starts afresh (users are
authenticated, so the cap is only reached with that many real users active within a
minute). Users with calls in progress are never forgotten. Time is an argument; nothing
here logs, sleeps or does I/O.

Errors carry their wire meaning (``sip_status``, ``reason`` phrase) and the call record's
``end_reason``::

    RoutingError
    +-- AddressIncompleteError      484 Address Incomplete      invalid-number
    +-- DestinationBlockedError     403 Destination blocked     destination-blocked
    +-- DestinationNotAllowedError  403 Destination not allowed destination-not-allowed
    +-- LimitExceededError
        +-- ConcurrentCallsError    403 Call limit reached      call-limit
        +-- CallRateError           403 Too many calls per minute  call-rate-limit
    +-- TrunkChannelsError          503 Trunk channels busy     trunk-channel-limit

The limits answer 403, not 486 or 503: 486 Busy Here says the *callee* is busy (a
browser would show "busy" for a number nobody called) and 503 says the *server* is
overloaded, which makes well-behaved clients fail over or retry after Retry-After; both
hide a policy decision. 403 is "understood, refused"; the reason phrase says which limit.

:class:`TrunkChannels` is the other kind of limit: what a carrier contract allows, the
calls one trunk may carry at once, both directions together (``max_channels`` of each
trunk). A call seizes a channel before it is dialled or answered and gives it back when
it ends. Over the limit the refusal is 503 with the reason phrase ``Trunk channels busy``:
here the server really is out of capacity, the caller did nothing wrong, and a carrier
that gets 503 on an inbound call routes it elsewhere.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sip_gateway.trunk import normalize_e164
from sip_gateway.trunk.errors import InvalidNumberError

__all__ = [
    "AddressIncompleteError",
    "CallLimits",
    "CallLimitsConfig",
    "CallRateError",
    "CallTicket",
    "ConcurrentCallsError",
    "DestinationBlockedError",
    "DestinationNotAllowedError",
    "DialPlan",
    "DialPlanConfig",
    "LimitExceededError",
    "RoutingError",
    "TrunkChannels",
    "TrunkChannelsError",
]

RATE_WINDOW = 60.0
"""The sliding window of ``max_per_minute``, in seconds."""
_PREFIX = re.compile(r"\+[0-9]{0,15}")
_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
_TRUNK_PREFIX = re.compile(r"[0-9]{0,4}")


class RoutingError(Exception):
    """Base class: a call is refused by the dial plan or the limits.

    Attributes:
        sip_status: the final response to the caller's INVITE.
        reason: its reason phrase.
        end_reason: the call record's ``end_reason``.
    """

    sip_status = 403
    reason = "Forbidden"
    end_reason = "rejected"


class AddressIncompleteError(RoutingError):
    """The dialed text is not a number that can be written as E.164."""

    sip_status = 484
    reason = "Address Incomplete"
    end_reason = "invalid-number"


class DestinationBlockedError(RoutingError):
    """The number is under a blocked prefix (premium rate, international services)."""

    reason = "Destination blocked"
    end_reason = "destination-blocked"


class DestinationNotAllowedError(RoutingError):
    """The number is under none of the allowed prefixes."""

    reason = "Destination not allowed"
    end_reason = "destination-not-allowed"


class LimitExceededError(RoutingError):
    """A per-user call limit refuses the call."""

    end_reason = "call-limit"


class ConcurrentCallsError(LimitExceededError):
    """The user already has ``max_concurrent`` calls."""

    reason = "Call limit reached"
    end_reason = "call-limit"


class CallRateError(LimitExceededError):
    """The user placed ``max_per_minute`` calls within the last 60 seconds."""

    reason = "Too many calls per minute"
    end_reason = "call-rate-limit"


class TrunkChannelsError(RoutingError):
    """The trunk already carries ``max_channels`` calls."""

    sip_status = 503
    reason = "Trunk channels busy"
    end_reason = "trunk-channel-limit"


@dataclass(frozen=True, slots=True, kw_only=True)
class DialPlanConfig:
    """Configuration of a :class:`DialPlan`.

    Raises:
        ValueError: (at construction) a code or prefix is malformed.
    """

    country_code: str | None = None
    """Country code for national numbers (``44``); None accepts only ``+`` and
    international-prefix forms."""
    national_prefix: str = "0"
    """Trunk prefix of national numbers (``0``; ``1`` in NANP; empty: any digits)."""
    international_prefix: str = "00"
    """Prefix of international numbers dialed without ``+`` (``00``; ``011`` in NANP)."""
    allowed_prefixes: tuple[str, ...] = ("+",)
    """E.164 prefixes a destination must start with; ``+`` allows every number."""
    blocked_prefixes: tuple[str, ...] = ()
    """E.164 prefixes always refused, even under an allowed prefix."""

    def __post_init__(self) -> None:
        for name in ("allowed_prefixes", "blocked_prefixes"):  # str.startswith needs a tuple
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.country_code is not None and not _COUNTRY_CODE.fullmatch(self.country_code):
            raise ValueError(f"country_code {self.country_code!r} is not 1 to 3 digits")
        for name in ("national_prefix", "international_prefix"):
            if not _TRUNK_PREFIX.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be 0 to 4 digits")
        for prefix in (*self.allowed_prefixes, *self.blocked_prefixes):
            if not _PREFIX.fullmatch(prefix):
                raise ValueError(f"prefix {prefix!r} is not '+' and up to 15 digits")


class DialPlan:
    """Normalises dialed numbers to E.164 and applies the prefix rules."""

    def __init__(self, config: DialPlanConfig) -> None:
        self._config = config

    def route(self, dialed: str) -> str:
        """The E.164 number to call for ``dialed`` (a Request-URI user part or typed text).

        Raises:
            AddressIncompleteError: not a number that normalises to E.164 (484).
            DestinationBlockedError: under a blocked prefix (403).
            DestinationNotAllowedError: under no allowed prefix (403).
        """
        config = self._config
        try:
            number = normalize_e164(
                dialed,
                country_code=config.country_code,
                national_prefix=config.national_prefix,
                international_prefix=config.international_prefix,
            )
        except InvalidNumberError as exc:
            raise AddressIncompleteError(str(exc)) from None
        if number.startswith(config.blocked_prefixes):
            raise DestinationBlockedError(f"{number} is under a blocked prefix")
        if not number.startswith(config.allowed_prefixes):
            raise DestinationNotAllowedError(f"{number} is under no allowed prefix")
        return number


@dataclass(frozen=True, slots=True, kw_only=True)
class CallLimitsConfig:
    """Configuration of :class:`CallLimits`.

    Raises:
        ValueError: (at construction) a limit is below 1.
    """

    max_concurrent: int = 2
    """Calls one user may have at once."""
    max_per_minute: int = 10
    """Calls one user may start within any 60 seconds."""
    max_users: int = 100_000
    """Most users tracked at once (memory bound); idle users are forgotten first."""

    def __post_init__(self) -> None:
        if min(self.max_concurrent, self.max_per_minute, self.max_users) < 1:
            raise ValueError("call limits must be at least 1")


@dataclass(frozen=True, slots=True)
class CallTicket:
    """One admitted call; give it back with :meth:`CallLimits.release`."""

    user: str
    serial: int
    admitted_at: float


@dataclass(slots=True)
class _UserCalls:
    active: set[int] = field(default_factory=set)
    admitted: deque[float] = field(default_factory=deque)


class CallLimits:
    """Per-user concurrent-call and calls-per-minute limits."""

    def __init__(self, config: CallLimitsConfig | None = None) -> None:
        self._config = config or CallLimitsConfig()
        self._users: OrderedDict[str, _UserCalls] = OrderedDict()
        self._serials = itertools.count(1)

    def __repr__(self) -> str:
        return f"CallLimits(users={len(self._users)})"

    @property
    def tracked(self) -> int:
        """How many users have state (bounded by ``max_users``)."""
        return len(self._users)

    def active(self, user: str) -> int:
        """How many calls ``user`` has now."""
        state = self._users.get(user)
        return 0 if state is None else len(state.active)

    def admit(self, user: str, now: float) -> CallTicket:
        """Admit a new call of ``user`` or refuse it.

        Raises:
            ConcurrentCallsError: the user has ``max_concurrent`` calls (403).
            CallRateError: the user started ``max_per_minute`` calls in the last 60 s (403).
        """
        state = self._users.pop(user, None) or _UserCalls()
        self._users[user] = state  # most recent last
        _expire(state.admitted, now)
        if len(state.active) >= self._config.max_concurrent:
            raise ConcurrentCallsError(f"user {user!r} has {len(state.active)} calls")
        if len(state.admitted) >= self._config.max_per_minute:
            raise CallRateError(f"user {user!r} started {len(state.admitted)} calls in 60 s")
        ticket = CallTicket(user, next(self._serials), now)
        state.active.add(ticket.serial)
        state.admitted.append(now)
        self._evict()
        return ticket

    def release(self, ticket: CallTicket) -> None:
        """End the call of ``ticket`` (releasing twice, or a forgotten one, does nothing)."""
        state = self._users.get(ticket.user)
        if state is not None:
            state.active.discard(ticket.serial)

    def _evict(self) -> None:
        """Past ``max_users``, forget idle users (no call), least recently admitted first."""
        excess = len(self._users) - self._config.max_users
        if excess <= 0:
            return
        idle = [user for user, state in self._users.items() if not state.active]
        for user in idle[:excess]:
            del self._users[user]


def _expire(admitted: deque[float], now: float) -> None:
    while admitted and admitted[0] <= now - RATE_WINDOW:
        admitted.popleft()


class TrunkChannels:
    """Calls in progress per trunk, both directions, against each trunk's ``max_channels``."""

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        """Create the counter.

        Args:
            limits: the most calls each trunk may carry at once; a trunk not named here
                is not limited.

        Raises:
            ValueError: a limit is below 1.
        """
        self._limits = dict(limits or {})
        if any(limit < 1 for limit in self._limits.values()):
            raise ValueError("trunk channel limits must be at least 1")
        self._in_use: dict[str, int] = dict.fromkeys(self._limits, 0)

    def __repr__(self) -> str:
        return f"TrunkChannels({self._in_use})"

    def in_use(self, trunk: str) -> int:
        """How many calls ``trunk`` carries now."""
        return self._in_use.get(trunk, 0)

    def limit(self, trunk: str) -> int | None:
        """The channel limit of ``trunk`` (None: not limited)."""
        return self._limits.get(trunk)

    def seize(self, trunk: str) -> Callable[[], None]:
        """Take a channel of ``trunk`` for a new call.

        Returns:
            The release function: gives the channel back (calling it again does nothing).

        Raises:
            TrunkChannelsError: the trunk carries its ``max_channels`` calls (503).
        """
        limit = self._limits.get(trunk)
        used = self._in_use.get(trunk, 0)
        if limit is not None and used >= limit:
            raise TrunkChannelsError(f"trunk {trunk!r} carries {used} of {limit} calls")
        self._in_use[trunk] = used + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._in_use[trunk] -= 1

        return release
