"""Where the ops API finds call records and events: the live calls, the recent ones, the store.

Theory of operation: a call that is still going is read from the live orchestrator
(``orchestrator.calls[id].record.as_dict()``), so a call is listed the moment it starts. A
finished call is read from the call store (:class:`CallStoreReader`, the contract of
``bridge.store.CallStore``), whose writer runs behind the calls by a queue; so the API also
keeps, as a :class:`~bridge.call.journal.CallSink`, the last :data:`RECENT_CALLS` finished
records and the updates of the last calls in memory (:class:`RecentCalls`), and merges the
three sources by call id (live before recent before stored). Without a store, the recent
list is all there is. Refused attempts (a record with no legs up) are finished calls too.

:class:`OpsSources` is the set of run-time objects the API, the readiness check and the
metrics read: the orchestrator, the trunk gateway, the SIP listener, and the store and
broker handles (None when not configured; set by ``bridge.app`` once they exist). The
store and broker are typed by small protocols, so this package does not import theirs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sip_gateway.aio.admission import ConnectionLimits
    from sip_gateway.aio.stream import SipTlsServer
    from sip_gateway.aio.websocket import SipWebSocketService
    from sip_gateway.flood import FloodGuard
    from sip_gateway.trunk import TrunkGateway

    from ..answer_delay import AnswerDelays
    from ..call.journal import CallUpdate
    from ..call.orchestrator import Orchestrator

__all__ = [
    "RECENT_CALLS",
    "BrokerHealthView",
    "BrokerView",
    "CallStoreReader",
    "OpsSources",
    "QueueHealthView",
    "RecentCalls",
    "StoreHealthView",
    "merge_events",
    "merge_records",
    "parse_time",
]

RECENT_CALLS = 1000
"""Finished records kept in memory (newest); older ones come from the store."""
RECENT_EVENT_CALLS = 200
"""Calls whose updates are kept in memory (newest)."""
MAX_EVENTS_PER_CALL = 256
"""Updates kept in memory per call (the rest are in the store)."""


class QueueHealthView(Protocol):
    """What the readiness check and the metrics read of a writer's bounded queue."""

    @property
    def queue_depth(self) -> int:
        """Updates waiting."""

    @property
    def queue_capacity(self) -> int:
        """The queue's bound."""

    @property
    def dropped(self) -> int:
        """Updates lost (the store counts only what its spill file could not take)."""

    @property
    def last_error(self) -> str | None:
        """Why the last write or connection failed (no secret)."""


class StoreHealthView(QueueHealthView, Protocol):
    """What is read of ``bridge.store.StoreHealth``."""

    @property
    def state(self) -> str:
        """``ok``, ``degraded`` or ``down``."""

    @property
    def spilled(self) -> int:
        """Records written to the spill file."""


class CallStoreReader(Protocol):
    """The reads of ``bridge.store.CallStore`` the API uses (the contract's names)."""

    async def list_calls(
        self, *, active: bool | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Records, newest first."""

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The latest record of a call, or None."""

    async def call_events(self, call_id: str) -> list[dict[str, Any]]:
        """The call's updates (``CallUpdate.as_dict()``) in seq order."""

    def health(self) -> StoreHealthView:
        """The writer's state."""


class BrokerHealthView(QueueHealthView, Protocol):
    """What is read of ``bridge.events.PublisherHealth``."""

    @property
    def connected(self) -> bool:
        """A broker connection is up."""

    @property
    def published(self) -> int:
        """Messages acknowledged."""


class BrokerView(Protocol):
    """``bridge.events.MqttPublisher`` as the API sees it."""

    def health(self) -> BrokerHealthView:
        """The publisher's state."""


@dataclass(slots=True)
class OpsSources:
    """The run-time objects the ops API and the metrics read (see the module docstring)."""

    orchestrator: Orchestrator
    gateway: TrunkGateway
    sip_server: SipTlsServer | None = None
    websocket: SipWebSocketService | None = None
    https_limits: ConnectionLimits | None = None
    store: CallStoreReader | None = None
    broker: BrokerView | None = None
    browser_flood: FloodGuard | None = None
    browser_delays: AnswerDelays | None = None

    def live_records(self) -> list[dict[str, Any]]:
        """The records of the calls going on now."""
        return [call.record.as_dict() for call in list(self.orchestrator.calls.values())]

    def live_record(self, call_id: str) -> dict[str, Any] | None:
        """The record of the live call ``call_id``, or None."""
        call = self.orchestrator.calls.get(call_id)
        return None if call is None else call.record.as_dict()


def parse_time(text: str | None) -> datetime | None:
    """A record's ISO 8601 time (``...Z``) as an aware datetime (None stays None)."""
    if text is None:
        return None
    return datetime.fromisoformat(text)


class RecentCalls:
    """The last finished records and the last calls' updates, in memory (a ``CallSink``).

    Args:
        max_calls: finished records kept.
        max_event_calls: calls whose updates are kept.
    """

    def __init__(
        self, max_calls: int = RECENT_CALLS, max_event_calls: int = RECENT_EVENT_CALLS
    ) -> None:
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._events: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._max_calls = max_calls
        self._max_event_calls = max_event_calls

    def call_update(self, update: CallUpdate) -> None:
        """Keep the update (and the frozen record of a final one)."""
        events = self._events.pop(update.call_id, None) or []
        if len(events) < MAX_EVENTS_PER_CALL:
            events.append(update.as_dict())
        self._events[update.call_id] = events
        while len(self._events) > self._max_event_calls:
            self._events.popitem(last=False)
        if update.final:
            self._records.pop(update.call_id, None)
            self._records[update.call_id] = dict(update.record)
            while len(self._records) > self._max_calls:
                self._records.popitem(last=False)

    def finished(self) -> list[dict[str, Any]]:
        """The finished records kept, in no particular order."""
        return list(self._records.values())

    def record(self, call_id: str) -> dict[str, Any] | None:
        """The finished record of ``call_id`` if kept."""
        return self._records.get(call_id)

    def events(self, call_id: str) -> list[dict[str, Any]]:
        """The updates of ``call_id`` kept (seq order)."""
        return list(self._events.get(call_id, ()))


def merge_records(
    *sources: Sequence[dict[str, Any]], since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Records from ``sources`` (earlier sources win for one call id), started at or after
    ``since``, newest first, at most ``limit``."""
    seen: dict[str, dict[str, Any]] = {}
    for source in sources:
        for record in source:
            seen.setdefault(str(record.get("call_id")), record)
    chosen = [
        record
        for record in seen.values()
        if since is None or (_started(record) or datetime.min.replace(tzinfo=since.tzinfo)) >= since
    ]
    chosen.sort(key=lambda r: str(r.get("started_at") or ""), reverse=True)
    return chosen[:limit]


def merge_events(*sources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Updates from ``sources`` (earlier sources win for one seq) in seq order."""
    by_seq: dict[int, dict[str, Any]] = {}
    for source in sources:
        for event in source:
            by_seq.setdefault(int(event["seq"]), event)
    return [by_seq[seq] for seq in sorted(by_seq)]


def _started(record: dict[str, Any]) -> datetime | None:
    try:
        return parse_time(record.get("started_at"))
    except (TypeError, ValueError):
        return None
