"""Holding answers back without holding the event loop: how a guesser is slowed.

Theory of operation: when :meth:`bridge.auth.AuthGuard.delay` says an authentication
answer to a source should wait, the listener gives the answer to :meth:`AnswerDelays.send`,
which schedules it with ``loop.call_later`` and returns at once: nothing sleeps, other
requests and calls go on. The number of answers waiting at once is bounded
(``max_pending``); past it an answer goes out at once, so a guesser with many connections
cannot make the bridge hold unbounded state (the flood guard and the block bound how fast
it gets there). An answer whose connection closed meanwhile is dropped. Counters:
``delayed`` (answers held back) and ``pending`` (waiting now).
"""

from __future__ import annotations

import asyncio
import contextlib

from sip_gateway.aio.endpoint import SipEndpoint
from sip_gateway.sip.errors import LocalProtocolError
from sip_gateway.sip.message import SipResponse

__all__ = ["AnswerDelays"]


class AnswerDelays:
    """Sends SIP responses after a delay, a bounded number at a time."""

    def __init__(self, max_pending: int = 1000) -> None:
        if max_pending < 0:
            raise ValueError("max_pending must not be negative")
        self._max_pending = max_pending
        self._handles: set[asyncio.TimerHandle] = set()
        self.delayed = 0
        """Answers held back so far (metrics)."""

    @property
    def pending(self) -> int:
        """Answers waiting now."""
        return len(self._handles)

    def send(self, endpoint: SipEndpoint, tid: str, response: SipResponse, delay: float) -> None:
        """Send ``response`` on ``endpoint`` after ``delay`` seconds (at once if 0 or full)."""
        if delay <= 0 or len(self._handles) >= self._max_pending:
            _send(endpoint, tid, response)
            return
        loop = asyncio.get_running_loop()
        self.delayed += 1
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._handles.discard(handle)
            if not endpoint.is_closing:
                _send(endpoint, tid, response)

        handle = loop.call_later(delay, fire)
        self._handles.add(handle)

    def close(self) -> None:
        """Drop every waiting answer (shutdown)."""
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()


def _send(endpoint: SipEndpoint, tid: str, response: SipResponse) -> None:
    with contextlib.suppress(LocalProtocolError):
        endpoint.send_response(tid, response)
