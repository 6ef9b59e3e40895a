"""Prometheus metrics of the bridge (``/metrics``, behind the ops API's bearer token).

Theory of operation: :class:`BridgeMetrics` owns its own
:class:`~prometheus_client.CollectorRegistry` (never the process-global one, so two
bridges in one process, as in the tests, do not collide) and is its only collector. Two
kinds of figures:

* Counted from the call journal (it is a :class:`~bridge.call.journal.CallSink`): calls by
  end reason and legs by protocol, suite, TLS version and ``encrypted`` (both at a call's
  final update, from its frozen record), policy refusals by reason (``refused`` updates).
  At the final update the call is still in the orchestrator, so its media counters
  (SRTP authentication failures and replays, late/lost/duplicate frames) are added to the
  totals then; the call is remembered as counted until it leaves the orchestrator.
* Read at scrape time: active calls, the media counters of the calls still going (added to
  the totals, so counters never go back), refused attempts by the orchestrator's reason
  (also those that never became a call: unknown number, no browser), authentication
  failures and blocks, refused TLS handshakes on the SIP listener, trunk status, the store's
  and the broker's queue depth and drops, the live stream's clients and drops, and the API's
  own 401s and 429s.
* Resources held now, counted from the objects that own them (a leak shows as a count that
  does not return to zero once the calls are over): asyncio tasks, browser and gateway
  dialogs, SIP transactions, media UDP sockets (the gateway legs' RTP ports, the WebRTC
  legs' ICE sockets), SRTP sessions (gateway legs' SDES sessions, WebRTC legs' DTLS-keyed
  contexts). Transactions, sockets and SRTP sessions are counted process-wide from small
  registries in their modules, so an embedded carrier simulator (or a test's own client)
  in the same process is counted too. SIP transactions are open (no final response yet)
  or lingering (kept by their timers to absorb retransmissions, up to 64*T1).
  With media worker processes (``[media] workers``), each worker pushes its own counts
  (sockets, SRTP sessions, tasks) about once a second and after each call's close; they
  are added to this process's, and each worker's state, calls and restarts are shown.

Labels only take values from bounded sets (reasons, suite and version names the TLS and
SRTP policies allow, trunk names); nothing secret is ever a label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sip_gateway.sip.transaction import live_transactions
from sip_gateway.trunk import TrunkStatus

from ..media.control import WorkerResources

if TYPE_CHECKING:
    from ..call.call import Call
    from ..call.journal import CallUpdate
    from .records import OpsSources
    from .stream import CallStream

__all__ = ["CONTENT_TYPE", "ApiCounters", "BridgeMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition format's content type."""
_P = "pstn_bridge_"
_SRTP_REASONS = ("auth_failed", "replayed", "malformed")
_MAX_LABEL = 64
_MAX_COUNTED = 1024
LegKey = tuple[str, str, str, str, str]


@dataclass(slots=True)
class ApiCounters:
    """The ops API's own refusals."""

    unauthorized: int = 0
    rate_limited: int = 0


def _label(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:_MAX_LABEL]


def leg_keys(record: Mapping[str, Any]) -> list[LegKey]:
    """(leg, protocol, suite, tls_version, encrypted) of each leg of a record."""
    keys = []
    for leg in record.get("legs") or ():
        media = leg.get("media") or {}
        signaling = leg.get("signaling") or {}
        name = leg.get("leg")
        suite = media.get("srtp_profile") if name == "webrtc" else media.get("crypto_suite")
        protocol = media.get("protocol") or ("PSTN" if name == "pstn" else None)
        keys.append(
            (
                _label(name),
                _label(protocol),
                _label(suite),
                _label(signaling.get("tls_version")),
                _label(leg.get("encrypted")),
            )
        )
    return keys


def media_counts(call: Call) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """A call's media frame counters by (leg, kind) and SRTP drops by (leg, reason)."""
    frames: Counter[tuple[str, str]] = Counter()
    srtp: Counter[tuple[str, str]] = Counter()
    pipeline = call.media.stats()
    frames["webrtc", "late"] += pipeline.browser_late
    frames["webrtc", "duplicate"] += pipeline.browser_duplicates
    frames["gateway", "gap"] += pipeline.gateway_gaps
    webrtc, gateway = call.media.leg_stats()
    if webrtc is not None:
        srtp["webrtc", "unprotect_failed"] += webrtc.unprotect_failures
        srtp["webrtc", "malformed"] += webrtc.malformed_in
    if gateway is not None:
        frames["gateway", "lost"] += gateway.lost
        frames["gateway", "late"] += gateway.late
        for reason in _SRTP_REASONS:
            srtp["gateway", reason] += gateway.dropped.get(reason, 0)
    return frames, srtp


class BridgeMetrics:
    """The bridge's Prometheus metrics (see the module docstring).

    Args:
        sources: the run-time objects read at scrape time.
        stream: the live stream (its clients and drops), if any.
        api: the API's refusal counters, if any.
    """

    def __init__(
        self,
        sources: OpsSources,
        *,
        stream: CallStream | None = None,
        api: ApiCounters | None = None,
    ) -> None:
        self.sources = sources
        self.stream = stream
        self.api = api
        self.registry = CollectorRegistry()
        self.ended: Counter[str] = Counter()
        self.legs: Counter[LegKey] = Counter()
        self.refusals: Counter[str] = Counter()
        self._frames: Counter[tuple[str, str]] = Counter()
        self._srtp: Counter[tuple[str, str]] = Counter()
        self._counted: set[str] = set()
        self.registry.register(self)

    def call_update(self, update: CallUpdate) -> None:
        """Count refusals, and a final update's end reason, legs and media counters."""
        if update.event == "refused":
            self.refusals[_label(update.detail.get("reason"))] += 1
        if not update.final:
            return
        record = update.record
        self.ended[_label(record.get("end_reason"))] += 1
        self.legs.update(leg_keys(record))
        call = self.sources.orchestrator.calls.get(update.call_id)
        if call is not None and update.call_id not in self._counted:
            frames, srtp = media_counts(call)
            self._frames.update(frames)
            self._srtp.update(srtp)
            self._counted.add(update.call_id)
            if len(self._counted) > _MAX_COUNTED:  # no scrape for a long time: prune here too
                self._counted &= set(self.sources.orchestrator.calls)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    # -- the collector -------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        """Every metric family, read now."""
        yield from self._calls()
        yield from self._media()
        yield from self._refusal_metrics()
        yield from self._trunks()
        yield from self._queues()
        yield from self._resources()
        yield from self._workers()

    def _held_resources(self) -> WorkerResources:
        """This process's resources plus the media workers'."""
        plane = self.sources.orchestrator.plane
        here = WorkerResources.held_here()
        return here if plane is None else here + plane.resources()

    def _workers(self) -> Iterator[Metric]:
        """Each media worker's state, calls and restarts (none with media in-process)."""
        plane = self.sources.orchestrator.plane
        if plane is None:
            return
        up = GaugeMetricFamily(
            _P + "media_worker_up", "1 while the media worker runs", labels=["worker"]
        )
        calls = GaugeMetricFamily(
            _P + "media_worker_calls", "Calls whose media the worker hosts", labels=["worker"]
        )
        restarts = CounterMetricFamily(
            _P + "media_worker_restarts",
            "Media workers started again after dying",
            labels=["worker"],
        )
        for slot in plane.slots:
            label = [str(slot.index)]
            up.add_metric(label, 1.0 if slot.up else 0.0)
            calls.add_metric(label, slot.calls)
            restarts.add_metric(label, slot.restarts)
        yield from (up, calls, restarts)

    def _resources(self) -> Iterator[Metric]:
        """Tasks, dialogs, transactions, UDP sockets and SRTP sessions held now (this
        process and the media workers together)."""
        held = self._held_resources()
        yield GaugeMetricFamily(
            _P + "asyncio_tasks", "asyncio tasks of the bridge's processes", held.tasks
        )
        dialogs = GaugeMetricFamily(
            _P + "sip_dialogs", "SIP dialogs and pending INVITEs held, by side", labels=["side"]
        )
        dialogs.add_metric(["browser"], len(self.sources.orchestrator.dialogs))
        dialogs.add_metric(["gateway"], len(self.sources.gateway.calls))
        yield dialogs
        transactions = GaugeMetricFamily(
            _P + "sip_transactions",
            "SIP transactions held (process-wide): open (no final response yet), lingering "
            "(absorbing retransmissions until their timer)",
            labels=["state"],
        )
        open_count, lingering = live_transactions()
        transactions.add_metric(["open"], open_count)
        transactions.add_metric(["lingering"], lingering)
        yield transactions
        udp = GaugeMetricFamily(
            _P + "udp_sockets",
            "Media UDP sockets open (every bridge process), by kind",
            labels=["kind"],
        )
        udp.add_metric(["rtp"], held.rtp_sockets)
        udp.add_metric(["ice"], held.ice_sockets)
        yield udp
        srtp = GaugeMetricFamily(
            _P + "srtp_sessions",
            "SRTP sessions alive (every bridge process), by leg",
            labels=["leg"],
        )
        srtp.add_metric(["gateway"], held.gateway_srtp)
        srtp.add_metric(["webrtc"], held.webrtc_srtp)
        yield srtp

    def _calls(self) -> Iterator[Metric]:
        orchestrator = self.sources.orchestrator
        yield GaugeMetricFamily(_P + "active_calls", "Calls going on now", orchestrator.active)
        ended = CounterMetricFamily(
            _P + "calls_ended",
            "Calls (and refused attempts) ended, by end reason",
            labels=["reason"],
        )
        for reason, count in sorted(self.ended.items()):
            ended.add_metric([reason], count)
        yield ended
        legs = CounterMetricFamily(
            _P + "call_legs",
            "Legs of ended calls by protocol, SRTP suite, signaling TLS version, encrypted",
            labels=["leg", "protocol", "suite", "tls_version", "encrypted"],
        )
        for key, count in sorted(self.legs.items()):
            legs.add_metric(list(key), count)
        yield legs

    def _media(self) -> Iterator[Metric]:
        frames, srtp = Counter(self._frames), Counter(self._srtp)
        calls = self.sources.orchestrator.calls
        self._counted &= set(calls)  # calls that left the orchestrator are counted for good
        for call_id, call in list(calls.items()):
            if call_id not in self._counted:
                live_frames, live_srtp = media_counts(call)
                frames.update(live_frames)
                srtp.update(live_srtp)
        srtp_family = CounterMetricFamily(
            _P + "srtp_dropped_packets",
            "SRTP/SRTCP packets dropped: authentication failed, replayed, malformed",
            labels=["leg", "reason"],
        )
        for key in sorted(set(srtp) | {("gateway", r) for r in _SRTP_REASONS}):
            srtp_family.add_metric(list(key), srtp[key])
        yield srtp_family
        frame_family = CounterMetricFamily(
            _P + "media_frames",
            "Media frames not passed on in time: late, lost, duplicate, timestamp gaps",
            labels=["leg", "kind"],
        )
        for key, count in sorted(frames.items()):
            frame_family.add_metric(list(key), count)
        yield frame_family

    def _refusal_metrics(self) -> Iterator[Metric]:
        policy = CounterMetricFamily(
            _P + "policy_refusals",
            "Policy refusals recorded on calls, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(self.refusals.items()):
            policy.add_metric([reason], count)
        yield policy
        orchestrator = self.sources.orchestrator
        refused = CounterMetricFamily(
            _P + "attempts_refused",
            "Call attempts refused by the bridge (also those without a record), by reason",
            labels=["reason"],
        )
        for reason, count in sorted(orchestrator.refused.items()):
            refused.add_metric([_label(reason)], count)
        yield refused
        guard = orchestrator.auth.guard
        yield CounterMetricFamily(
            _P + "auth_failures", "Failed digest authentications of browsers", guard.failures
        )
        yield CounterMetricFamily(
            _P + "auth_blocks", "Source addresses blocked after failures", guard.blocks
        )
        yield from self._abuse_metrics()
        handshakes = CounterMetricFamily(
            _P + "tls_handshake_refusals",
            "Inbound TLS handshakes refused on the SIP listener, by kind",
            labels=["listener", "kind"],
        )
        server = self.sources.sip_server
        if server is not None:
            for kind, count in sorted(server.handshake_refusals.items()):
                handshakes.add_metric(["sip", kind], count)
        yield handshakes
        yield from self._connection_metrics()
        if self.api is not None:
            yield CounterMetricFamily(
                _P + "ops_api_unauthorized", "Ops API requests refused 401", self.api.unauthorized
            )
            yield CounterMetricFamily(
                _P + "ops_api_rate_limited", "Ops API requests refused 429", self.api.rate_limited
            )

    def _connection_metrics(self) -> Iterator[Metric]:
        """Connections held, refused by a cap and closed by a bound, per listener."""
        held = GaugeMetricFamily(
            _P + "connections", "Inbound connections held now", labels=["listener"]
        )
        refused = CounterMetricFamily(
            _P + "connections_refused",
            "Inbound connections refused by a connection cap, by listener and limit",
            labels=["listener", "limit"],
        )
        closed = CounterMetricFamily(
            _P + "connections_closed",
            "Inbound connections the bridge closed (oversize, message-timeout, ...)",
            labels=["listener", "reason"],
        )
        for name, listener in (("sip", self.sources.sip_server), ("wss", self.sources.websocket)):
            if listener is None:
                continue
            held.add_metric([name], listener.limits.total)
            for limit in ("per-source", "total"):
                refused.add_metric([name, limit], listener.limits.refusals[limit])
            for reason, count in sorted(listener.closures.items()):
                closed.add_metric([name, reason], count)
        https = self.sources.https_limits
        if https is not None:
            held.add_metric(["https"], https.total)
            for limit in ("per-source", "total"):
                refused.add_metric(["https", limit], https.refusals[limit])
        yield from (held, refused, closed)

    def _abuse_metrics(self) -> Iterator[Metric]:
        """Flood refusals per listener, held-back answers, trunk channels in use."""
        sources = self.sources
        limited = CounterMetricFamily(
            _P + "flood_limited",
            "New INVITEs/REGISTERs refused 503 by the per-source flood limit, by listener",
            labels=["listener"],
        )
        for listener, guard in (("wss", sources.browser_flood), ("sip", sources.gateway.flood)):
            if guard is not None:
                limited.add_metric([listener], guard.limited)
        yield limited
        delayed = sources.orchestrator.delays.delayed
        if sources.browser_delays is not None:
            delayed += sources.browser_delays.delayed
        yield CounterMetricFamily(
            _P + "auth_answers_delayed",
            "Authentication answers held back to slow a failing source",
            delayed,
        )
        channels = GaugeMetricFamily(
            _P + "trunk_channels_in_use",
            "Calls each trunk carries now (both directions)",
            labels=["trunk"],
        )
        for name in sorted(sources.gateway.trunks):
            channels.add_metric([name], sources.orchestrator.channels.in_use(name))
        yield channels

    def _trunks(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            _P + "trunk_status",
            "1 for each trunk's current status (OPTIONS keep-alive), 0 for the others",
            labels=["trunk", "status"],
        )
        up = GaugeMetricFamily(_P + "trunk_up", "1 when the trunk is up", labels=["trunk"])
        for name, trunk in sorted(self.sources.gateway.trunks.items()):
            current = trunk.status
            for state in TrunkStatus:
                status.add_metric([name, str(state)], 1.0 if state is current else 0.0)
            up.add_metric([name], 1.0 if current is TrunkStatus.UP else 0.0)
        yield status
        yield up

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            _P + "event_queue_depth", "Call updates waiting, by sink", labels=["sink"]
        )
        capacity = GaugeMetricFamily(
            _P + "event_queue_capacity", "Bound of each sink's queue", labels=["sink"]
        )
        drops = CounterMetricFamily(
            _P + "event_drops", "Call updates dropped by a full queue, by sink", labels=["sink"]
        )
        store, broker = self.sources.store, self.sources.broker
        if store is not None:
            health = store.health()
            depth.add_metric(["store"], health.queue_depth)
            capacity.add_metric(["store"], health.queue_capacity)
            drops.add_metric(["store"], health.dropped)
            yield CounterMetricFamily(
                _P + "store_spilled", "Records written to the spill file", health.spilled
            )
            store_state = GaugeMetricFamily(
                _P + "store_state", "1 for the store's current state", labels=["state"]
            )
            for state in ("ok", "degraded", "down"):
                store_state.add_metric([state], 1.0 if health.state == state else 0.0)
            yield store_state
        if broker is not None:
            health_b = broker.health()
            depth.add_metric(["mqtt"], health_b.queue_depth)
            capacity.add_metric(["mqtt"], health_b.queue_capacity)
            drops.add_metric(["mqtt"], health_b.dropped)
            yield GaugeMetricFamily(
                _P + "mqtt_connected", "1 when the broker connection is up", health_b.connected
            )
            yield CounterMetricFamily(
                _P + "mqtt_published", "Messages the broker acknowledged", health_b.published
            )
        if self.stream is not None:
            yield CounterMetricFamily(
                _P + "ops_stream_dropped_clients",
                "Clients of /api/stream disconnected for falling behind",
                self.stream.dropped_clients,
            )
            yield GaugeMetricFamily(
                _P + "ops_stream_clients", "Clients of /api/stream", self.stream.clients
            )
        yield depth
        yield capacity
        yield drops
