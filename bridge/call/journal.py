"""What the call layer tells the rest of the bridge: one ordered stream of call updates.

Theory of operation: every call (and every refused attempt, which is a call that never got
legs) reports each step as a :class:`CallUpdate`: the event (``started``, a phase such as
``ringing`` or ``answered``, ``leg-up``, ``refused``, ``ended``), its details, and a
snapshot of the call's security record (DESIGN section 4) as JSON-ready data taken at that
moment. :class:`Journal` numbers the updates of each call (``seq`` 1, 2, ...), so a reader
can order them, and hands each one to every :class:`CallSink`: the store (CDRs, legs,
events), the MQTT publisher, the metrics and the ops page's live feed. The update with
``final=True`` carries the frozen record; nothing about the call follows it.

A sink's :meth:`CallSink.call_update` is called on the event loop and must not block or
await: sinks queue (bounded) and do their I/O elsewhere. An exception in one sink is
logged and does not reach the call or the other sinks. Snapshots are plain dicts built
by :meth:`~bridge.security.SecurityRecord.as_dict`, which holds no key material.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..security import SecurityRecord

__all__ = ["CallSink", "CallUpdate", "Journal"]

log = logging.getLogger("bridge.call")

Detail = Mapping[str, str | int | float | bool | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallUpdate:
    """One step of one call.

    Attributes:
        call_id: the bridge's call id (``c-...``), the record's ``call_id``.
        seq: 1 for the call's first update, then one more for each.
        at: wall-clock time of the step (seconds since the epoch).
        event: ``started``, a phase (``dialing``, ``early-media``, ``ringing``,
            ``answered``, ``ending``), ``leg-up``, ``refused`` or ``ended``.
        detail: what the step says beyond its name (cause, leg, reason, SIP status).
        record: the security record at this moment (DESIGN section 4 JSON).
        final: the record is frozen; this is the call's last update.
    """

    call_id: str
    seq: int
    at: float
    event: str
    detail: Detail
    record: Mapping[str, Any]
    final: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The update as JSON-ready data (without the record)."""
        return {
            "call_id": self.call_id,
            "seq": self.seq,
            "at": self.at,
            "event": self.event,
            "detail": dict(self.detail),
            "final": self.final,
        }


class CallSink(Protocol):
    """Something that takes call updates (store, MQTT, metrics, live feeds)."""

    def call_update(self, update: CallUpdate) -> None:
        """Take one update; must not block (queue it)."""


@dataclass(slots=True)
class Journal:
    """Numbers each call's updates and hands them to the sinks (see the module docstring)."""

    sinks: list[CallSink] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    _seq: dict[str, int] = field(default_factory=dict)

    def add_sink(self, sink: CallSink) -> None:
        """Send later updates to ``sink`` too."""
        self.sinks.append(sink)

    def report(
        self, record: SecurityRecord, event: str, detail: Detail | None = None
    ) -> CallUpdate:
        """Report one step of the call ``record`` belongs to; returns the update sent.

        A frozen record's update is final and forgets the call's sequence.
        """
        call_id = record.call_id
        seq = self._seq.get(call_id, 0) + 1
        final = record.frozen
        if final:
            self._seq.pop(call_id, None)
        else:
            self._seq[call_id] = seq
        update = CallUpdate(
            call_id=call_id,
            seq=seq,
            at=self.clock(),
            event=event,
            detail=dict(detail or {}),
            record=record.as_dict(),
            final=final,
        )
        for sink in self.sinks:
            try:
                sink.call_update(update)
            except Exception:
                log.exception("call %s: a sink failed to take the %s update", call_id, event)
        return update

    @property
    def open_calls(self) -> int:
        """Calls with updates but no final one yet."""
        return len(self._seq)
