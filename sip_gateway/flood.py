"""Per-source rate limits for requests that start something: the flood guard (sans-IO).

Theory of operation: an INVITE or REGISTER flood costs the bridge a transaction, a digest
check or a routing decision per request, so each listener passes every new (out-of-dialog)
INVITE and REGISTER through a :class:`FloodGuard` before doing any work for it. The guard
keeps one token bucket per source address (an IPv6 source counts as its /64): ``burst``
tokens, refilled at ``rate`` per second; a request takes one. With no token left the
request is refused with 503 and a ``Retry-After`` (RFC 3261 21.5.4) of the whole seconds
until the bucket holds a token again; the listener answers it without any further work,
so a flood costs one parse and one short answer per request. In-dialog requests (ACK,
BYE, re-INVITE) are never counted: a flood must not cut calls already up.

Memory is bounded: past ``max_sources`` buckets the least recently used one is forgotten
(a forgotten source starts with a full bucket, which an attacker gains nothing from: it
takes ``max_sources`` other busy sources to push one out). Counters for metrics:
``allowed`` and ``limited`` requests. Time is an argument; nothing here logs (a flood
would flood the log): ``run_started`` tells the listener when a source's run of refusals
begins, and the listener logs that one line.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["FLOODED_METHODS", "FloodGuard", "FloodGuardConfig", "flood_source"]

FLOODED_METHODS = frozenset({"INVITE", "REGISTER"})
"""The methods a flood guard counts (outside dialogs only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FloodGuardConfig:
    """Configuration of a :class:`FloodGuard`.

    Raises:
        ValueError: (at construction) a value is not positive.
    """

    rate: float = 20.0
    """Requests per second a source may keep sending."""
    burst: int = 100
    """Requests a source may send at once before the rate applies."""
    max_sources: int = 10_000
    """Most sources tracked at once; the least recently seen is forgotten first."""

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.max_sources < 1:
            raise ValueError("rate, burst and max_sources must be positive")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    limited: bool = False


def flood_source(source: str) -> str:
    """The key a guard counts ``source`` under: an IPv4 address or an IPv6 /64."""
    try:
        address = ipaddress.ip_address(source.strip("[]"))
    except ValueError:
        return source
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FloodGuard:
    """Token buckets per source address for new INVITEs and REGISTERs."""

    def __init__(self, config: FloodGuardConfig | None = None) -> None:
        self.config = config or FloodGuardConfig()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.allowed = 0
        """Requests let through so far (metrics)."""
        self.limited = 0
        """Requests refused so far (metrics)."""
        self.run_started = False
        """Whether the last :meth:`check` refused the first request of a run of refusals
        from its source (the listener logs that one, not the whole flood)."""

    def __repr__(self) -> str:
        return f"FloodGuard(tracked={len(self._buckets)}, limited={self.limited})"

    @property
    def tracked(self) -> int:
        """How many sources have a bucket (bounded by ``max_sources``)."""
        return len(self._buckets)

    def check(self, source: str, now: float) -> int | None:
        """Take a token for one request from ``source``.

        Args:
            source: the client's IP address (no port).
            now: the current time in seconds (monotonic).

        Returns:
            None when the request may go on; otherwise the ``Retry-After`` seconds (>= 1)
            to answer its 503 with.
        """
        config = self.config
        key = flood_source(source)
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(float(config.burst), now)
        else:
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(config.burst), bucket.tokens + elapsed * config.rate)
            bucket.at = now
        self._buckets[key] = bucket  # most recent last
        while len(self._buckets) > config.max_sources:
            self._buckets.popitem(last=False)
        self.run_started = False
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.limited = False
            self.allowed += 1
            return None
        self.run_started = not bucket.limited
        bucket.limited = True
        self.limited += 1
        return max(1, math.ceil((1.0 - bucket.tokens) / config.rate))
