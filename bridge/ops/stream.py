"""The live call feed of the ops API: Server-Sent Events at ``/api/stream``.

Theory of operation: :class:`CallStream` is a :class:`~bridge.call.journal.CallSink`. Each
connected client gets a bounded queue; :meth:`CallStream.call_update` encodes the update
once (``event: call`` and ``data: {"update": ..., "record": ...}``) and puts it on every
queue without waiting. A client whose queue is full has fallen behind: it is dropped (its
response ends; it can reconnect and re-read the list) and counted, so a slow reader never
holds memory or the call path. Each response writes a ``: keep-alive`` comment when nothing
was sent for ``keepalive`` seconds (proxies close silent connections), and every response
ends cleanly when :meth:`CallStream.close` runs at shutdown. Messages carry the same record
snapshot as the journal, which holds no key material.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..call.journal import CallUpdate

__all__ = ["KEEPALIVE", "CallStream", "encode_update"]

log = logging.getLogger("bridge.ops")

KEEPALIVE = 15.0
"""Seconds of silence after which a ``: keep-alive`` comment is written."""
_END = b""


def encode_update(update: CallUpdate) -> bytes:
    """One SSE message for ``update``."""
    data = json.dumps(
        {"update": update.as_dict(), "record": dict(update.record)}, separators=(",", ":")
    )
    return f"event: call\ndata: {data}\n\n".encode()


class _Client:
    __slots__ = ("dropped", "queue")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(size + 1)  # +1: room for the end
        self.dropped = False


class CallStream:
    """Fans call updates out to SSE clients (see the module docstring).

    Args:
        max_clients: clients at once (more get 503).
        queue_size: messages queued per client before it is dropped.
        keepalive: seconds of silence before a keep-alive comment.
    """

    def __init__(self, *, max_clients: int, queue_size: int, keepalive: float = KEEPALIVE) -> None:
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.keepalive = keepalive
        self.dropped_clients = 0
        """Clients disconnected because they fell behind."""
        self.sent = 0
        """Messages queued to clients."""
        self._clients: set[_Client] = set()
        self._closed = False

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return len(self._clients)

    def call_update(self, update: CallUpdate) -> None:
        """Queue ``update`` for every client (never waits)."""
        if not self._clients:
            return
        message = encode_update(update)
        for client in list(self._clients):
            if client.queue.qsize() >= self.queue_size:
                self._drop(client)
                continue
            client.queue.put_nowait(message)
            self.sent += 1

    def _drop(self, client: _Client) -> None:
        client.dropped = True
        self._clients.discard(client)
        self.dropped_clients += 1
        client.queue.put_nowait(_END)
        log.warning("ops stream: a client fell %d updates behind; disconnected", self.queue_size)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one client until it goes away, falls behind, or the bridge stops."""
        if self._closed:
            return web.json_response({"error": "shutting down"}, status=503)
        if len(self._clients) >= self.max_clients:
            return web.json_response(
                {"error": f"too many stream clients (at most {self.max_clients})"}, status=503
            )
        client = _Client(self.queue_size)
        self._clients.add(client)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b": connected\n\n")
            await self._pump(client, response)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._clients.discard(client)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _pump(self, client: _Client, response: web.StreamResponse) -> None:
        while True:
            try:
                async with asyncio.timeout(self.keepalive):
                    message = await client.queue.get()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if not message:  # _END: dropped, or the bridge is stopping
                return
            await response.write(message)

    async def close(self) -> None:
        """End every client's response (the site's ``on_shutdown`` hook)."""
        self._closed = True
        for client in list(self._clients):
            self._clients.discard(client)
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(_END)
