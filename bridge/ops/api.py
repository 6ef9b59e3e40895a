"""The ops API: call records, their updates, the live feed, health and metrics over HTTPS.

Theory of operation: :class:`OpsApi` adds its routes to the bridge's HTTPS site
(:func:`bridge.web.start_https` ``mounts``), so it shares the listener, the TLS context and
the security headers (HSTS on every response). It registers three sinks on the call
journal: the in-memory recent calls (:mod:`bridge.ops.records`), the live stream
(:mod:`bridge.ops.stream`) and the metrics (:mod:`bridge.ops.metrics`).

Routes (the OpenAPI document in :mod:`bridge.ops.openapi` describes each):

* ``/healthz`` (liveness) and ``/readyz`` (a trunk up and the store not down; 503
  otherwise) need no token; nor does ``/api/openapi.json``.
* ``/api/calls``, ``/api/calls/{id}``, ``/api/calls/{id}/events``, ``/api/stream`` and
  ``/metrics`` need ``Authorization: Bearer <token>``. Each request spends a token of a
  rate-limit bucket: the valid token's, or for a missing or wrong token the source
  address's (429 with ``Retry-After`` when empty). A missing or wrong token gets 401 with
  ``WWW-Authenticate: Bearer`` and one log line naming the source address and what was
  wrong, never the presented value.
* Query parameters are checked strictly (``active`` true/false, ``since`` ISO 8601 with a
  time zone, ``limit`` 1..1000, nothing else): 400 with a JSON message otherwise. Unknown
  call ids give 404.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiMapping

from .access import BearerCheck, RateLimiter, retry_after
from .metrics import CONTENT_TYPE, ApiCounters, BridgeMetrics
from .openapi import openapi_document
from .records import OpsSources, RecentCalls, merge_events, merge_records
from .stream import KEEPALIVE, CallStream

if TYPE_CHECKING:
    from ..call.journal import Journal

__all__ = ["MAX_LIMIT", "OpsApi", "OpsApiConfig", "QueryError", "parse_calls_query"]

log = logging.getLogger("bridge.ops")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_MAX_ID = 128
_OFFSET_AS_SPACE = re.compile(r" (\d{2}(?::?\d{2})?)$")  # "+01:00" decoded as " 01:00"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsApiConfig:
    """How the ops API serves.

    Attributes:
        token: the bearer token (never logged, never in a repr).
        requests_per_second: rate of each rate-limit bucket.
        burst: size of each bucket.
        max_stream_clients: clients of ``/api/stream`` at once.
        stream_queue: updates queued per stream client before it is dropped.
        keepalive: seconds of stream silence before a keep-alive comment.
    """

    token: str = field(repr=False)
    requests_per_second: float = 20.0
    burst: int = 40
    max_stream_clients: int = 16
    stream_queue: int = 256
    keepalive: float = KEEPALIVE


class QueryError(ValueError):
    """A malformed query parameter (400; the message says which and why)."""


def _one(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise QueryError(f"query parameter {name!r} given more than once")
    return values[0] if values else None


def parse_calls_query(query: MultiMapping[str]) -> tuple[bool | None, datetime | None, int]:
    """``active``, ``since`` and ``limit`` of ``GET /api/calls``.

    Raises:
        QueryError: an unknown, repeated or malformed parameter.
    """
    unknown = sorted(set(query) - {"active", "since", "limit"})
    if unknown:
        raise QueryError(f"unknown query parameter {unknown[0][:32]!r}")
    active: bool | None = None
    text = _one(query, "active")
    if text is not None:
        if text not in ("true", "false"):
            raise QueryError("active must be true or false")
        active = text == "true"
    since = None
    text = _one(query, "since")
    if text is not None:
        try:
            since = datetime.fromisoformat(_OFFSET_AS_SPACE.sub(r"+\1", text.strip()))
        except ValueError:
            raise QueryError("since must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from None
        if since.tzinfo is None:
            raise QueryError("since needs a time zone (Z or +hh:mm)")
    limit = DEFAULT_LIMIT
    text = _one(query, "limit")
    if text is not None:
        if not text.isdigit() or len(text) > 6 or not 1 <= int(text) <= MAX_LIMIT:
            raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(text)
    return active, since, limit


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class OpsApi:
    """The ops API (see the module docstring).

    Args:
        config: token, rate limit and stream settings.
        sources: the orchestrator, gateway, listener, store and broker to read.
        clock: monotonic seconds (the rate limit's time).
    """

    def __init__(
        self,
        config: OpsApiConfig,
        sources: OpsSources,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.sources = sources
        self.recent = RecentCalls()
        self.stream = CallStream(
            max_clients=config.max_stream_clients,
            queue_size=config.stream_queue,
            keepalive=config.keepalive,
        )
        self.counters = ApiCounters()
        self.metrics = BridgeMetrics(sources, stream=self.stream, api=self.counters)
        self._bearer = BearerCheck(config.token)
        self._limiter = RateLimiter(config.requests_per_second, config.burst)
        self._clock = clock
        self._store_failing = False

    def attach(self, journal: Journal) -> None:
        """Take the journal's call updates (recent calls, live stream, metrics)."""
        for sink in (self.recent, self.stream, self.metrics):
            journal.add_sink(sink)

    def mount(self, app: web.Application) -> None:
        """Add the routes to ``app`` (before it starts) and end streams at its shutdown."""
        router = app.router
        router.add_get("/healthz", self._healthz)
        router.add_get("/readyz", self._readyz)
        router.add_get("/api/openapi.json", self._openapi)
        router.add_get("/api/calls", self._guarded(self._calls))
        router.add_get("/api/calls/{call_id}", self._guarded(self._call))
        router.add_get("/api/calls/{call_id}/events", self._guarded(self._events))
        router.add_get("/api/stream", self._guarded(self.stream.handle))
        router.add_get("/metrics", self._guarded(self._metrics))
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.stream.close()

    # -- access ----------------------------------------------------------------------------

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = self._admit(request)
            return refused if refused is not None else await handler(request)

        return guarded

    def _admit(self, request: web.Request) -> web.Response | None:
        """None when the request may go on; otherwise the 401 or 429 to send."""
        denial = self._bearer.check(request.headers.get("Authorization"))
        source = request.remote or "unknown"
        wait = self._limiter.take("token" if denial is None else f"addr {source}", self._clock())
        if wait > 0.0:
            self.counters.rate_limited += 1
            return _error(429, "too many requests", {"Retry-After": retry_after(wait)})
        if denial is None:
            return None
        self.counters.unauthorized += 1
        log.warning(
            "ops API: 401 for %s %s from %s: %s",
            request.method,
            request.path[:100],
            source,
            denial,
        )
        return _error(
            401,
            "a valid bearer token is required",
            {"WWW-Authenticate": 'Bearer realm="pstn-bridge ops"'},
        )

    # -- records ---------------------------------------------------------------------------

    async def _calls(self, request: web.Request) -> web.StreamResponse:
        try:
            active, since, limit = parse_calls_query(request.rel_url.query)
        except QueryError as exc:
            return _error(400, str(exc))
        live = self.sources.live_records()
        if active is True:
            return web.json_response({"calls": merge_records(live, since=since, limit=limit)})
        live_ids = {record["call_id"] for record in live}
        recent = [r for r in self.recent.finished() if r["call_id"] not in live_ids]
        stored, partial = await self._stored(active, since, limit)
        first = [] if active is False else live
        calls = merge_records(first, recent, stored, since=since, limit=limit)
        if active is False:
            calls = [r for r in calls if r["call_id"] not in live_ids]
        body: dict[str, Any] = {"calls": calls}
        if partial:
            body["partial"] = True
        return web.json_response(body)

    async def _stored(
        self, active: bool | None, since: datetime | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        store = self.sources.store
        if store is None:
            return [], False
        try:
            found = await store.list_calls(active=active, since=since, limit=limit)
        except Exception as exc:  # any store failure: serve what is in memory
            self._store_failed(exc)
            return [], True
        self._store_failing = False
        return found, False

    def _store_failed(self, exc: Exception) -> None:
        if not self._store_failing:
            log.warning("ops API: the call store could not be read: %s", type(exc).__name__)
        self._store_failing = True

    async def _record(self, call_id: str) -> dict[str, Any] | None:
        found = self.sources.live_record(call_id) or self.recent.record(call_id)
        if found is not None or self.sources.store is None:
            return found
        try:
            return await self.sources.store.get_call(call_id)
        except Exception as exc:  # reported as unknown; logged once
            self._store_failed(exc)
            return None

    async def _call(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        found = await self._record(call_id) if len(call_id) <= _MAX_ID else None
        if found is None:
            return _error(404, "no such call")
        return web.json_response(found)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        if len(call_id) > _MAX_ID:
            return _error(404, "no such call")
        kept = self.recent.events(call_id)
        stored: list[dict[str, Any]] = []
        store = self.sources.store
        if store is not None:
            try:
                stored = await store.call_events(call_id)
            except Exception as exc:  # serve what is in memory
                self._store_failed(exc)
        events = merge_events(kept, stored)
        if not events and await self._record(call_id) is None:
            return _error(404, "no such call")
        return web.json_response({"events": events})

    # -- health, metrics, the document -----------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})

    async def _readyz(self, request: web.Request) -> web.StreamResponse:
        body, ready = self.readiness()
        return web.json_response(
            body, status=200 if ready else 503, headers={"Cache-Control": "no-store"}
        )

    def readiness(self) -> tuple[dict[str, Any], bool]:
        """The ``/readyz`` body and whether the bridge is ready."""
        trunks = {name: str(t.status) for name, t in self.sources.gateway.trunks.items()}
        store_body = broker_body = None
        store_down = False
        if self.sources.store is not None:
            health = self.sources.store.health()
            store_down = health.state == "down"
            store_body = {
                "state": health.state,
                "queue_depth": health.queue_depth,
                "queue_capacity": health.queue_capacity,
                "dropped": health.dropped,
                "spilled": health.spilled,
            }
        if self.sources.broker is not None:
            broker = self.sources.broker.health()
            broker_body = {
                "connected": broker.connected,
                "queue_depth": broker.queue_depth,
                "queue_capacity": broker.queue_capacity,
                "dropped": broker.dropped,
            }
        ready = "up" in trunks.values() and not store_down
        body = {"ready": ready, "trunks": trunks, "store": store_body, "broker": broker_body}
        return body, ready

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.metrics.exposition(),
            headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
        )

    async def _openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(openapi_document())
