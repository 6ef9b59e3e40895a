"""One bridged call: a browser leg, a gateway leg and the media between them.

Theory of operation: a :class:`Call` never speaks SIP itself. Its two legs are the trunk
package's call legs (the browser's over WSS, the carrier's over TLS); each reports
:class:`~sip_gateway.trunk.CallEvent` records, and the media reports
:class:`~bridge.media.events.MediaEvent` records. The call turns them into inputs of its
transition table (:mod:`bridge.call.state`), does what the new phase needs on the *other*
leg (ring, early media, answer, hang up), keeps the :class:`~bridge.security.SecurityRecord`
up to date and sends it to the browser in an in-dialog INFO whenever a leg comes up. When
both legs are over it closes the media, freezes the record and reports the end once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from sip_gateway.aio import SipEndpoint
from sip_gateway.sdp import MediaConfig
from sip_gateway.sip.errors import SipError
from sip_gateway.trunk import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallLeg,
    CallRinging,
    CallState,
    EarlyMediaStarted,
    InboundCall,
    MediaUpdated,
    TrunkError,
)
from sip_gateway.trunk import EndReason as LegEndReason

from ..media.events import (
    DigitRelayed,
    MediaEvent,
    MediaFailed,
    MediaWorkerLost,
    WebRtcConnected,
)
from ..media.interface import CallMediaInterface
from ..security import SecurityRecord
from .errors import CallStateError, EndReason, failure_status
from .state import CallInput, CallPhase, CallTransition, advance

__all__ = ["SECURITY_CONTENT_TYPE", "Call"]

log = logging.getLogger("bridge.call")

SECURITY_CONTENT_TYPE = "application/vnd.pstn-bridge.security+json"
"""Content type of the INFO that carries the security record to the browser."""
INFO_TIMEOUT = 5.0
ACK_WAIT = 2.0
"""Seconds the first security INFO waits for the browser's ACK of our 200."""


class Call:
    """A bridged call (see the module docstring)."""

    def __init__(
        self,
        *,
        call_id: str,
        direction: str,
        user: str,
        media: CallMediaInterface[Any],
        record: SecurityRecord,
        browser_endpoint: SipEndpoint | None,
        on_transition: Callable[[CallTransition], None],
        on_end: Callable[[Call], None],
        on_report: Callable[[str, Mapping[str, str | None]], object] | None = None,
    ) -> None:
        self.call_id = call_id
        self.direction = direction
        self.user = user
        self.media = media
        media.on_event = self.media_event
        self.record = record
        self.browser_endpoint = browser_endpoint
        self.phase = CallPhase.DIALING
        self.history: list[CallTransition] = []
        """Every transition so far (the call's event log)."""
        self.browser: CallLeg | None = None
        self.gateway: CallLeg | None = None
        self.end_reason: EndReason | None = None
        self.status_code: int | None = None
        self._on_transition = on_transition
        self._on_end = on_end
        self._on_report = on_report
        self._legs_up: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._info_busy = False
        self._info_again = False
        self._finished = asyncio.get_running_loop().create_future()
        self._finishing = False

    def __repr__(self) -> str:
        return f"<Call {self.call_id} {self.direction} {self.user} {self.phase}>"

    # -- the table ---------------------------------------------------------------------

    def advance(self, event: CallInput, cause: str) -> None:
        """Take one input through the transition table and report the step."""
        old = self.phase
        try:
            self.phase = advance(old, event)
        except CallStateError:
            log.exception("call %s: %s ignored in phase %s", self.call_id, event.value, old)
            return
        if self.phase is not old:
            log.info("call %s: %s -> %s (%s)", self.call_id, old, self.phase, cause)
            transition = CallTransition(
                call_id=self.call_id, old=old, new=self.phase, cause=cause, at=time.time()
            )
            self.history.append(transition)
            try:
                self._on_transition(transition)
            except Exception:
                log.exception("call %s: transition handler failed", self.call_id)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a task owned by the call (cancelled at the end)."""
        task = asyncio.get_running_loop().create_task(work, name=f"{self.call_id} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s: task failed", self.call_id, exc_info=task.exception())

    # -- events of the legs ---------------------------------------------------------------

    def gateway_event(self, event: CallEvent) -> None:
        """The carrier side's leg reports."""
        if isinstance(event, CallRinging):
            early = event.early_media
            self.advance(
                CallInput.EARLY_MEDIA if early else CallInput.RINGING, f"trunk {event.status_code}"
            )
            outbound = self.direction == "outbound"
            if outbound and not early and isinstance(self.browser, InboundCall):
                self.browser.ring()
        elif isinstance(event, EarlyMediaStarted):
            self._gateway_media(event.media)
            self._gateway_up()
            self.advance(CallInput.EARLY_MEDIA, "trunk early media")
            if self.direction == "outbound" and isinstance(self.browser, InboundCall):
                self._browser_progress()
        elif isinstance(event, CallAnswered):
            self._gateway_media(event.media)
            self._gateway_up()
            if self.direction == "outbound":
                self.spawn(self._answer_browser(), "answer browser")
            else:
                self.record.answered_at = time.time()
                self.advance(CallInput.ANSWERED, "carrier leg confirmed")
                self.send_record()
        elif isinstance(event, MediaUpdated):
            self._gateway_media(event.media)
        elif isinstance(event, CallEnded):
            self._leg_ended("gateway", event)

    def browser_event(self, event: CallEvent) -> None:
        """The browser's leg reports."""
        if isinstance(event, CallEnded):
            self._leg_ended("browser", event)
        elif isinstance(event, CallAnswered) and self.direction == "inbound":
            self.record.webrtc_codec = self.media.webrtc_codec

    def _gateway_media(self, config: MediaConfig) -> None:
        self.media.gateway_config_applied(config)
        self.record.observe_gateway_media(config)

    def _gateway_up(self) -> None:
        leg = self.gateway
        if leg is not None and leg.endpoint is not None:
            self.record.gateway_tls = leg.endpoint.tls
            self.record.gateway_peer = "{}:{}".format(*leg.endpoint.peer)
            self._leg_up("gateway")

    def _leg_up(self, leg: str) -> None:
        if leg not in self._legs_up:
            self._legs_up.add(leg)
            self.report("leg-up", {"leg": leg})

    def report(self, event: str, detail: Mapping[str, str | None]) -> None:
        """Report a step that is not a phase change (a leg came up, a refusal)."""
        if self._on_report is not None:
            try:
                self._on_report(event, detail)
            except Exception:
                log.exception("call %s: report of %s failed", self.call_id, event)

    def _browser_progress(self) -> None:
        assert isinstance(self.browser, InboundCall)
        port = self.media.webrtc_port
        if port is None:
            return
        try:
            self.browser.progress(port)
        except (TrunkError, SipError) as exc:
            log.info("call %s: early media not sent to the browser: %s", self.call_id, exc)
        self.record.webrtc_codec = self.media.webrtc_codec

    async def _answer_browser(self) -> None:
        browser = self.browser
        port = self.media.webrtc_port
        if not isinstance(browser, InboundCall) or port is None:
            return
        try:
            await browser.answer(port)
        except (TrunkError, SipError) as exc:
            log.info("call %s: browser could not be answered: %s", self.call_id, exc)
            await self.hangup(EndReason.FAILED)
            return
        self.record.answered_at = time.time()
        self.record.webrtc_codec = self.media.webrtc_codec
        self.advance(CallInput.ANSWERED, "browser answered")
        with contextlib.suppress(TimeoutError):  # an INFO before the ACK may meet a 481
            async with asyncio.timeout(ACK_WAIT):
                await browser.acked.wait()
        self.send_record()

    def media_event(self, event: MediaEvent) -> None:
        """The media reports (DTLS up, a leg failed, a digit crossed)."""
        if isinstance(event, WebRtcConnected):
            self.record.dtls = event.facts
            self.record.webrtc_codec = self.media.webrtc_codec
            self._leg_up("webrtc")
            self.send_record()
        elif isinstance(event, MediaFailed):
            lost = isinstance(event, MediaWorkerLost)
            reason = EndReason.MEDIA_WORKER_LOST if lost else EndReason.MEDIA_FAILED
            self.record.refuse(str(reason), f"{event.leg}: {event.reason}")
            self.report("refused", {"reason": str(reason), "leg": event.leg})
            self.spawn(self.hangup(reason), str(reason))
        elif isinstance(event, DigitRelayed):
            log.info("call %s: digit relayed toward %s (%s)", self.call_id, event.toward, event.via)

    # -- the security record to the browser -------------------------------------------------

    def send_record(self) -> None:
        """Send the current record to the browser in an INFO (coalesced, one at a time)."""
        if self._info_busy:
            self._info_again = True
            return
        leg = self.browser
        if leg is None or leg.state is not CallState.CONFIRMED:
            return
        self._info_busy = True
        self.spawn(self._send_record(leg), "security info")

    async def _send_record(self, leg: CallLeg) -> None:
        try:
            while True:
                self._info_again = False
                body = json.dumps(self.record.as_dict(), separators=(",", ":")).encode()
                try:
                    status = await leg.send_info(SECURITY_CONTENT_TYPE, body, timeout=INFO_TIMEOUT)
                except (SipError, OSError) as exc:
                    log.info("call %s: security INFO not delivered: %s", self.call_id, exc)
                    return
                if status >= 300:
                    log.info("call %s: browser answered the security INFO %d", self.call_id, status)
                if not self._info_again or leg.state is not CallState.CONFIRMED:
                    return
        finally:
            self._info_busy = False

    # -- the end -------------------------------------------------------------------------

    def _leg_ended(self, which: str, event: CallEnded) -> None:
        if event.policy is not None:
            self.record.refuse(event.policy, f"{which} leg: SDP refused ({event.policy})")
            self.report("refused", {"reason": event.policy, "leg": which})
        if self.end_reason is None:
            self.end_reason, self.status_code = self._classify(which, event)
            self.advance(
                CallInput.HANGUP if event.failure is None else CallInput.FAILED,
                f"{which} {event.reason}",
            )
        self.spawn(self._end_other(which), "end other leg")

    def _classify(self, which: str, event: CallEnded) -> tuple[EndReason, int | None]:
        if event.failure is not None:
            status, reason = failure_status(event.failure, event.status_code)
            if which == "browser" and event.reason is LegEndReason.CANCELLED:
                return EndReason.CANCELLED, 487
            return reason, status
        if event.reason is LegEndReason.CANCELLED:
            return EndReason.CANCELLED, 487
        if event.reason is LegEndReason.REMOTE_HANGUP:
            caller_is_browser = self.direction == "outbound"
            by_caller = (which == "browser") == caller_is_browser
            return (EndReason.CALLER_HANGUP if by_caller else EndReason.CALLEE_HANGUP), None
        if event.reason is LegEndReason.SESSION_EXPIRED:
            return EndReason.SESSION_EXPIRED, None
        if event.reason is LegEndReason.ENCRYPTION_REFUSED:
            return EndReason.ENCRYPTION_REFUSED, event.status_code
        if event.reason is LegEndReason.REJECTED and event.status_code is not None:
            return (
                EndReason.DECLINED if event.status_code == 603 else EndReason.REJECTED
            ), event.status_code
        return EndReason.FAILED, event.status_code

    async def _end_other(self, which: str) -> None:
        other = self.gateway if which == "browser" else self.browser
        if other is not None and other.end is None:
            if (
                which == "gateway"
                and isinstance(other, InboundCall)
                and other.state
                in (
                    CallState.CALLING,
                    CallState.PROCEEDING,
                )
            ):
                status = self.status_code if self.status_code and self.status_code >= 400 else 480
                other.reject(status)
            else:
                with contextlib.suppress(SipError, OSError, TrunkError):
                    await other.hangup()
        await self._maybe_finish()

    async def hangup(self, reason: EndReason) -> None:
        """End the call from the bridge's side (media failure, WebSocket lost, shutdown)."""
        if self.end_reason is None:
            self.end_reason = reason
            self.advance(
                CallInput.FAILED if reason is not EndReason.SHUTDOWN else CallInput.HANGUP,
                str(reason),
            )
        for leg in (self.browser, self.gateway):
            if leg is not None and leg.end is None:
                if isinstance(leg, InboundCall) and leg.state in (
                    CallState.CALLING,
                    CallState.PROCEEDING,
                ):
                    leg.reject(self.status_code or 480)
                    continue
                with contextlib.suppress(SipError, OSError, TrunkError):
                    async with asyncio.timeout(12.0):
                        await leg.hangup()
        await self._maybe_finish()

    async def _maybe_finish(self) -> None:
        legs = [leg for leg in (self.browser, self.gateway) if leg is not None]
        if any(leg.end is None for leg in legs) or self._finishing:
            return
        self._finishing = True
        try:  # first: a media worker pushes the call's last counters as it closes
            await self.media.aclose()
        except Exception:
            log.exception("call %s: closing its media failed", self.call_id)
        self._finished.set_result(None)
        self.record.freeze(str(self.end_reason or EndReason.FAILED), self.status_code)
        self.advance(CallInput.LEGS_ENDED, "both legs ended")  # the final update
        for leg in legs:
            await leg.aclose()
        log.info("call %s ended: %s", self.call_id, self.end_reason)
        try:
            self._on_end(self)
        finally:
            current = asyncio.current_task()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()

    async def wait_finished(self) -> None:
        """Wait until both legs are over and the media is closed."""
        await asyncio.shield(self._finished)
