"""SipEndpoint: a handler that answers inline is never re-entered (found by SIPp bursts).

A handler that calls ``send_response`` (or ``send_request``) from inside an event used to
make the endpoint hand out the *next* queued event from within that call, so a burst of N
requests in one read nested N handler calls deep and hit RecursionError at a few hundred.
"""

from __future__ import annotations

import re

from sip_gateway.sip.events import RequestReceived
from sip_gateway.sip.message import build_response

from .helpers import eventually, raw_options
from .test_endpoint import running

BURST = 400  # well past the recursion limit of the old behaviour


class InlineAnswerer:
    """Answers every request with 200 from inside the handler; tracks nesting."""

    def __init__(self) -> None:
        self.depth = 0
        self.max_depth = 0
        self.seen: list[str] = []

    def __call__(self, endpoint, event) -> None:
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)
        try:
            if isinstance(event, RequestReceived):
                self.seen.append(event.request.call_id)
                endpoint.send_response(event.transaction_id, build_response(event.request, 200))
        finally:
            self.depth -= 1


async def test_burst_in_one_read_is_answered_without_nesting_handlers():
    handler = InlineAnswerer()
    burst = b"".join(raw_options(branch=f"z9hG4bKburst{i}") for i in range(BURST))
    async with running(handler=handler) as (_endpoint, wire):
        wire.inbox.put_nowait(burst)
        await eventually(lambda: len(handler.seen) == BURST and len(wire.sent) >= BURST)

    assert handler.max_depth == 1
    assert handler.seen == [f"raw-z9hG4bKburst{i}@test" for i in range(BURST)]
    responses = b"".join(wire.sent)
    assert responses.count(b"SIP/2.0 200 OK\r\n") == BURST
    branches = re.findall(rb"branch=z9hG4bKburst(\d+)", responses)
    assert [int(b) for b in branches] == list(range(BURST))  # answered in arrival order


async def test_a_response_sent_inline_is_written_before_the_next_event():
    """Flushing stays immediate: the answer to request k is on the wire when k+1 arrives."""
    written_before: list[int] = []

    class Probe(InlineAnswerer):
        def __call__(self, endpoint, event) -> None:
            if isinstance(event, RequestReceived):
                written_before.append(len(wire.sent))
            super().__call__(endpoint, event)

    handler = Probe()
    burst = b"".join(raw_options(branch=f"z9hG4bKflush{i}") for i in range(3))
    async with running(handler=handler) as (_endpoint, wire):
        wire.inbox.put_nowait(burst)
        await eventually(lambda: len(handler.seen) == 3)
    assert written_before == [0, 1, 2]
