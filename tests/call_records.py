"""A call sink for tests: keeps every :class:`~bridge.call.journal.CallUpdate` the bridge reports.

Theory of operation: a test adds a :class:`RecordingSink` to the running bridge's journal
(``running.orchestrator.journal.add_sink(sink)``) before it places a call; every step of
every call then lands in ``sink.updates`` in the order the journal reported it. The final
update (``final=True``) carries the frozen security record, which is what a test compares
with its independent observations. :meth:`RecordingSink.wait_final` polls (bounded) because
the final update comes from a task of the call, after the SIP exchange the test awaited.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.call.journal import CallUpdate

__all__ = ["RecordingSink", "legs_of"]


class RecordingSink:
    """Keeps every update (a :class:`~bridge.call.journal.CallSink`)."""

    def __init__(self) -> None:
        self.updates: list[CallUpdate] = []

    def call_update(self, update: CallUpdate) -> None:
        """Keep ``update`` (never blocks)."""
        self.updates.append(update)

    def finals(self) -> list[CallUpdate]:
        """The final updates seen so far, oldest first."""
        return [u for u in self.updates if u.final]

    def events(self, call_id: str) -> list[str]:
        """The event names of one call, in the order reported."""
        return [u.event for u in self.updates if u.call_id == call_id]

    async def wait_final(self, count: int = 1, timeout: float = 5.0) -> list[CallUpdate]:  # noqa: ASYNC109 - a test helper's bound
        """Wait until ``count`` calls have a final update; return the final updates.

        Raises:
            TimeoutError: fewer than ``count`` within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while len(self.finals()) < count:  # noqa: ASYNC110 - bounded poll
                await asyncio.sleep(0.02)
        return self.finals()


def legs_of(record: dict[str, Any] | Any) -> dict[str, dict[str, Any]]:
    """A record's legs by name (``webrtc``, ``gateway``, ``pstn``); each name at most once."""
    legs = {leg["leg"]: leg for leg in record["legs"]}
    assert len(legs) == len(record["legs"]), record["legs"]
    return legs
