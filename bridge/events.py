"""Call updates and the node's status, published to an MQTT broker over TLS.

Theory of operation
-------------------
:class:`MqttPublisher` is a :class:`~bridge.call.journal.CallSink`. Its
:meth:`~MqttPublisher.call_update` only appends the update to a bounded queue
(:class:`UpdateQueue`) and wakes the publisher task; it never awaits, so signaling and media
never wait for the broker. The task owns one aiomqtt client at a time:

1. connect over TLS (the context comes from :func:`sip_gateway.tls.client_context`: the
   broker's chain and host name are always verified; a client certificate and a
   username/password are optional), with the retained last will ``offline`` on the node's
   status topic, so a bridge that dies or hangs shows offline once the broker notices;
2. publish the retained ``online`` status, then drain the queue in order: for each update the
   record snapshot to ``{prefix}/calls/{call_id}/security`` (retained, so the last one, the
   final record, is what a late subscriber gets) and the update itself to
   ``{prefix}/calls/{call_id}/events`` (not retained). Everything is QoS 1 and waits for the
   broker's PUBACK before the next message, so a subscriber sees a call's events in ``seq``
   order;
3. on any broker error (refused TLS, refused credentials, connection lost, PUBACK time-out)
   drop the client, count a reconnect and try again after a capped exponential back-off with
   jitter (:class:`Backoff`). The update being published stays at the head and is sent again
   after the reconnect (QoS 1 is at-least-once anyway); updates that arrive meanwhile wait in
   the queue.

When the queue is full the *oldest* waiting update is dropped and counted. Each update
carries a full snapshot of its call's record, so a newer update supersedes an older one of
the same call; dropping the newest instead would lose the ``ended`` updates of an outage and
leave stale, non-final records retained on the broker for good.

:meth:`MqttPublisher.aclose` publishes what is queued while a connection is up, then the
retained ``offline`` status, and disconnects, all within ``close_timeout``; without a
connection it gives up at once (the broker already published the will). If the broker
stalls (no PUBACK in time) it gives up too, but queues ``offline`` at QoS 0 ahead of the
DISCONNECT: a clean DISCONNECT cancels the will, and the broker would otherwise keep
``online`` retained for a bridge that is gone.

Nothing secret is published or logged: the payloads are the journal's updates and record
snapshots (which hold no key material), the password is only handed to the MQTT client, and
error texts name the broker and the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from sip_gateway.tls import TlsClientConfig, client_context

from .call.journal import CallUpdate

__all__ = [
    "Backoff",
    "MqttConfig",
    "MqttPublisher",
    "PublisherHealth",
    "UpdateQueue",
    "call_messages",
    "status_payload",
]

log = logging.getLogger("bridge.events")

QOS = 1
"""Every message is published at least once (PUBACK awaited)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttConfig:
    """Where and how call updates are published."""

    broker_host: str
    """DNS name or IP address of the broker; also the name its certificate must carry."""
    tls: TlsClientConfig
    """The broker's trust anchor and our optional client certificate (mutual TLS)."""
    broker_port: int = 8883
    """The broker's MQTT-over-TLS port."""
    topic_prefix: str = "pstn-bridge"
    """First level(s) of every topic, without a trailing ``/``."""
    username: str | None = None
    """MQTT user name, or None for none (brokers that authenticate by certificate)."""
    password: str | None = field(default=None, repr=False)
    """MQTT password; only ever handed to the client library. Never shown."""
    queue_size: int = 1000
    """Most call updates waiting to be published; more drop the oldest."""
    keepalive: int = 30
    """MQTT keep-alive (s); the broker declares us gone (last will) after 1.5 times this."""
    reconnect_min: float = 0.5
    """First back-off delay (s) after a failed or lost connection."""
    reconnect_max: float = 30.0
    """Longest back-off delay (s)."""
    operation_timeout: float = 5.0
    """Seconds allowed for a connection, a PUBACK or a disconnect before giving up on it."""
    close_timeout: float = 3.0
    """Seconds :meth:`MqttPublisher.aclose` may take to flush, say offline and disconnect."""

    def __post_init__(self) -> None:
        if not self.broker_host:
            raise ValueError("broker_host is empty")
        if self.queue_size < 1 or self.keepalive < 1:
            raise ValueError("queue_size and keepalive must be at least 1")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        prefix = self.topic_prefix
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or set(prefix) & set("+#"):
            raise ValueError(f"topic_prefix {prefix!r} must be a plain topic without wildcards")

    def status_topic(self, node_id: str) -> str:
        """The retained status topic of node ``node_id``."""
        return f"{self.topic_prefix}/nodes/{node_id}/status"

    def security_topic(self, call_id: str) -> str:
        """The retained security-record topic of one call."""
        return f"{self.topic_prefix}/calls/{call_id}/security"

    def events_topic(self, call_id: str) -> str:
        """The lifecycle-events topic of one call."""
        return f"{self.topic_prefix}/calls/{call_id}/events"


@dataclass(frozen=True, slots=True, kw_only=True)
class PublisherHealth:
    """What :meth:`MqttPublisher.health` reports (readiness, metrics, ops API)."""

    connected: bool
    """A broker connection is up and the ``online`` status was acknowledged."""
    queue_depth: int
    """Updates waiting, including the one being published."""
    queue_capacity: int
    """``queue_size``."""
    dropped: int
    """Updates dropped because the queue was full (oldest first)."""
    published: int
    """Messages the broker acknowledged (status, security and events messages)."""
    reconnects: int
    """Connections lost or refused since start (each is followed by a new attempt)."""
    last_error: str | None
    """Why the last connection failed or ended, or None; never holds a secret."""


# -- pure parts: payloads, queue, back-off ----------------------------------------------------


def call_messages(config: MqttConfig, update: CallUpdate) -> list[tuple[str, bytes, bool]]:
    """The messages of one update: ``(topic, payload, retain)``, security record first."""
    record = json.dumps(update.record, separators=(",", ":"), sort_keys=True).encode()
    event = json.dumps(update.as_dict(), separators=(",", ":"), sort_keys=True).encode()
    return [
        (config.security_topic(update.call_id), record, True),
        (config.events_topic(update.call_id), event, False),
    ]


def status_payload(node_id: str, state: str, at: float, reason: str | None = None) -> bytes:
    """The node status JSON: ``{"node_id", "state": "online"|"offline", "at", "reason"?}``."""
    body: dict[str, Any] = {"node_id": node_id, "state": state, "at": at}
    if reason is not None:
        body["reason"] = reason
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


class UpdateQueue:
    """A bounded FIFO of call updates that drops (and counts) the oldest when full.

    The update being published is taken out with :meth:`take` and stays "current" until
    :meth:`done`; a full queue never drops it, so a message is never half-sent.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._waiting: deque[CallUpdate] = deque()
        self.current: CallUpdate | None = None
        self.current_sent = 0
        """Messages of ``current`` already acknowledged (they are not sent again)."""

    def __len__(self) -> int:
        return len(self._waiting) + (self.current is not None)

    def put(self, update: CallUpdate) -> CallUpdate | None:
        """Append ``update``; returns the update dropped to make room, if any."""
        dropped = None
        if len(self._waiting) >= self.capacity:
            dropped = self._waiting.popleft()
            self.dropped += 1
        self._waiting.append(update)
        return dropped

    def take(self) -> CallUpdate | None:
        """The update to publish now: the current one, else the oldest waiting one."""
        if self.current is None and self._waiting:
            self.current = self._waiting.popleft()
            self.current_sent = 0
        return self.current

    def done(self) -> None:
        """The current update is fully acknowledged."""
        self.current = None
        self.current_sent = 0


@dataclass(slots=True)
class Backoff:
    """Capped exponential back-off with jitter: attempt n waits in [d/2, d], d = min(max, min*2^n).

    The random half keeps many bridges from reconnecting in step after a broker restart.
    """

    minimum: float
    maximum: float
    random: Callable[[], float] = random.random
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        ceiling = min(self.maximum, self.minimum * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return ceiling * (0.5 + 0.5 * self.random())

    def reset(self) -> None:
        """A connection succeeded: the next failure starts from ``minimum`` again."""
        self.attempt = 0


# -- the publisher ----------------------------------------------------------------------------


class MqttPublisher:
    """Publishes call updates and the node status to one broker (see the module docstring).

    Args:
        config: the broker, TLS and queue settings.
        node_id: this bridge's node id (status topic, client identifier).
        clock: wall-clock time for status timestamps.
        rand: uniform [0, 1) numbers for the back-off jitter.

    Raises:
        TlsPolicyError: the CA file, client certificate or key cannot be used.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        node_id: str,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self._clock = clock
        self._tls: ssl.SSLContext = client_context(config.tls)
        self._tls.sslsocket_class = _HandshakeClosingSocket
        self._queue = UpdateQueue(config.queue_size)
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max, rand)
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._published = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._logged_error: str | None = None

    @property
    def broker(self) -> str:
        """``host:port`` of the broker, for messages."""
        return f"{self.config.broker_host}:{self.config.broker_port}"

    # -- CallSink ------------------------------------------------------------------------

    def call_update(self, update: CallUpdate) -> None:
        """Queue one update for publishing; never blocks (a full queue drops the oldest)."""
        dropped = self._queue.put(update)
        if dropped is not None and _worth_logging(self._queue.dropped):
            log.warning(
                "MQTT queue full (%d updates, broker %s %s): dropped %d oldest updates so far",
                self._queue.capacity,
                self.broker,
                "connected" if self._connected else "unreachable",
                self._queue.dropped,
            )
        self._wakeup.set()

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the publisher task (connects in the background)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"mqtt publisher {self.broker}"
            )

    async def aclose(self) -> None:
        """Flush what the connection allows, publish ``offline`` (retained), disconnect.

        Bounded by ``close_timeout`` (plus at most 1.5 s to cancel a stalled disconnect);
        without a connection the task is cancelled at once.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._closing.set()
        self._wakeup.set()
        if not self._connected:
            task.cancel()
        _done, pending = await asyncio.wait({task}, timeout=self.config.close_timeout)
        if pending:
            log.warning("MQTT publisher: no clean disconnect from %s in time", self.broker)
            for _ in range(3):  # the client's own disconnect may wait again: cancel that too
                task.cancel()
                _done, pending = await asyncio.wait({task}, timeout=0.5)
                if not pending:
                    break
        if task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if len(self._queue):
            log.warning("MQTT publisher closed with %d updates unpublished", len(self._queue))

    def health(self) -> PublisherHealth:
        """The publisher's state right now."""
        return PublisherHealth(
            connected=self._connected,
            queue_depth=len(self._queue),
            queue_capacity=self._queue.capacity,
            dropped=self._queue.dropped,
            published=self._published,
            reconnects=self._reconnects,
            last_error=self._last_error,
        )

    # -- the task ------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing.is_set():
            try:
                async with self._client() as client:
                    await self._session(client)
                return
            except aiomqtt.MqttError as exc:
                self._failed(exc)
            except Exception as exc:  # a client-library surprise must not end publishing
                log.exception("MQTT publisher: unexpected error; reconnecting")
                self._failed(exc)
            finally:
                self._connected = False
            if self._closing.is_set():
                return
            delay = self._backoff.next_delay()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        will = aiomqtt.Will(
            cfg.status_topic(self.node_id),
            status_payload(self.node_id, "offline", self._clock(), "connection-lost"),
            qos=QOS,
            retain=True,
        )
        return aiomqtt.Client(
            cfg.broker_host,
            cfg.broker_port,
            username=cfg.username,
            password=cfg.password,
            identifier=f"pstn-bridge-{self.node_id}",
            will=will,
            clean_session=True,
            timeout=cfg.operation_timeout,
            keepalive=cfg.keepalive,
            tls_context=self._tls,
            logger=logging.getLogger("bridge.events.client"),
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: say online, publish until closing, say offline."""
        await self._publish(client, self._status("online"))
        self._connected = True
        self._backoff.reset()
        if self._last_error is not None or self._reconnects:
            log.info("MQTT broker %s connected again", self.broker)
        else:
            log.info("MQTT broker %s connected", self.broker)
        self._logged_error = None
        lost = asyncio.get_running_loop().create_task(_until_disconnected(client))
        try:
            while await self._next(lost):
                await self._publish_current(client)
            await self._publish(client, self._status("offline", "shutdown"))
        except asyncio.CancelledError:
            if self._closing.is_set():
                await _say_offline_unconfirmed(client, self._status("offline", "shutdown"))
            raise
        finally:
            lost.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await lost

    async def _next(self, lost: asyncio.Task[None]) -> bool:
        """Wait for an update (True) or for closing with an empty queue (False).

        Raises:
            aiomqtt.MqttError: the connection was lost while idle.
        """
        while self._queue.take() is None:
            if self._closing.is_set():
                return False
            self._wakeup.clear()
            woken = asyncio.get_running_loop().create_task(self._wakeup.wait())
            try:
                await asyncio.wait({woken, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
            if lost.done():
                lost.result()  # raises the MqttError that ended the connection
                raise aiomqtt.MqttError("disconnected")
        return True

    async def _publish_current(self, client: aiomqtt.Client) -> None:
        update = self._queue.current
        assert update is not None
        messages = call_messages(self.config, update)
        for message in messages[self._queue.current_sent :]:
            await self._publish(client, message)
            self._queue.current_sent += 1
        self._queue.done()

    async def _publish(self, client: aiomqtt.Client, message: tuple[str, bytes, bool]) -> None:
        topic, payload, retain = message
        await client.publish(topic, payload, qos=QOS, retain=retain)
        self._published += 1

    def _status(self, state: str, reason: str | None = None) -> tuple[str, bytes, bool]:
        payload = status_payload(self.node_id, state, self._clock(), reason)
        return self.config.status_topic(self.node_id), payload, True

    def _failed(self, exc: Exception) -> None:
        was_connected = self._connected
        self._reconnects += 1
        self._last_error = _describe_error(exc, self.config)
        if was_connected:
            log.warning("MQTT broker %s: connection lost: %s", self.broker, self._last_error)
        elif self._last_error != self._logged_error:
            log.warning("MQTT broker %s: cannot connect: %s", self.broker, self._last_error)
        self._logged_error = self._last_error


class _HandshakeClosingSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails.

    paho-mqtt wraps the TCP socket and calls ``do_handshake()`` without closing the socket
    when that raises (a broker certificate that does not verify), so every refused attempt
    would leak a file descriptor until garbage collection.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


async def _say_offline_unconfirmed(
    client: aiomqtt.Client, message: tuple[str, bytes, bool]
) -> None:
    """Closing gave up on a stalled broker: queue ``offline`` at QoS 0 before the DISCONNECT.

    A clean DISCONNECT makes the broker discard our will, so without this a broker that
    resumes would keep ``online`` retained for a bridge that is gone.
    """
    topic, payload, retain = message
    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
        async with asyncio.timeout(0.2):
            await client.publish(topic, payload, qos=0, retain=retain)


def _worth_logging(count: int) -> bool:
    """Log the 1st, 10th, 100th and every 1000th drop: a flood of drops is one line a while."""
    return count in (1, 10, 100) or count % 1000 == 0


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Return (or raise MqttError) when the connection ends; we subscribe to nothing."""
    async for _message in client.messages:
        pass


def _describe_error(exc: Exception, config: MqttConfig) -> str:
    """A one-line reason for a broker failure, without secrets (the client never has any
    in its messages); certificate problems name the CA file they were checked against."""
    text = str(exc) or type(exc).__name__
    if exc.__cause__ is not None:  # "Disconnected during message iteration": say why
        text = f"{text}: {exc.__cause__}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        anchor = config.tls.ca_file or "the system trust store"
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return f"TLS: the broker's certificate did not verify against {anchor}: {reason}"
    return text
