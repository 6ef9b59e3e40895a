"""Drop accounting of a media session: counted by reason, reported aggregated.

Theory of operation: every datagram or packet a session drops is counted under a
reason (``auth_failed``, ``late``, ...). The first drop of a reason is reported at once
as a :class:`~sip_gateway.media.events.PacketDropped`; later ones at most once per
:data:`DROP_EVENT_INTERVAL` per reason, carrying the count since the previous event, so a
flood of bad packets costs a counter increment each, not an event each. ``unreported``
is the running number of drops not yet in an event (all reasons): the session calls
:meth:`DropLog.flush` from its timer only when it is non-zero. No I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from .events import MediaEvent, PacketDropped

__all__ = ["DROP_EVENT_INTERVAL", "DropLog"]

DROP_EVENT_INTERVAL: Final = 1.0
"""At most one PacketDropped per reason per this many seconds."""


class DropLog:
    """Drop counters by reason, and the PacketDropped events (module docstring).

    Attributes:
        counts: drops by reason since the start.
        unreported: drops counted but not yet in an event (all reasons).
    """

    __slots__ = ("_events", "_pending", "_reported", "counts", "unreported")

    def __init__(self, events: deque[MediaEvent]) -> None:
        """Report into ``events`` (the session's event queue)."""
        self._events = events
        self.counts: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._reported: dict[str, float] = {}
        self.unreported = 0

    def drop(self, reason: str, now: float) -> None:
        """Count one drop; report it now if this reason was quiet long enough."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self._pending[reason] = self._pending.get(reason, 0) + 1
        self.unreported += 1
        last = self._reported.get(reason)
        if last is None or now - last >= DROP_EVENT_INTERVAL:
            self._report(reason, now)

    def flush(self, now: float) -> None:
        """Report the reasons whose interval has passed since their last event."""
        for reason, pending in self._pending.items():
            if pending and now - self._reported[reason] >= DROP_EVENT_INTERVAL:
                self._report(reason, now)

    def _report(self, reason: str, now: float) -> None:
        pending, self._pending[reason] = self._pending[reason], 0
        self.unreported -= pending
        self._reported[reason] = now
        self._events.append(PacketDropped(reason=reason, count=pending, total=self.counts[reason]))
