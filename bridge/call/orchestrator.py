"""Creating, routing and ending bridged calls.

Theory of operation:

* Outbound (:meth:`Orchestrator.browser_invite`): a browser's INVITE is authenticated
  (407 challenge, 403; answers to a failing source held back by the brute-force guard's
  delay), its number routed by the dial plan (484/403), the user's limits checked, its
  offer screened (488: no fingerprint, too many candidates, no codec), a channel of the
  trunk seized (503 Trunk channels busy). Then a :class:`~bridge.call.call.Call` is made:
  the browser leg answers through the trunk package's ``InboundCall``; media is opened
  (ICE gathering, gateway RTP port); the configured trunk is dialled. Every refusal is
  logged, counted and kept as a record.
* Inbound (:meth:`Orchestrator.route_inbound`, the trunk gateway's routing callback): the
  DID's owner is looked up (404), their registered browser connections are found (480),
  a channel of the trunk is seized (503, kept as a refused call), every browser is rung
  in parallel with our DTLS-SRTP offer, the first to answer wins and the others are
  cancelled; then the carrier gets our SDES answer. A decline is 603.
* A browser whose WebSocket drops is hung up on the trunk at once.

The orchestrator holds the active calls; the counters go to ops (next issue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sip_gateway.aio import SipEndpoint
from sip_gateway.sdp import SdpSession
from sip_gateway.sip.errors import RemoteProtocolError, SipError
from sip_gateway.sip.message import SipRequest, SipResponse, build_response
from sip_gateway.sip.uri import AbsoluteUri, SipUri
from sip_gateway.trunk import (
    Answer,
    CallFailedError,
    CallFailure,
    InboundCall,
    InviteRefused,
    Reject,
    RouteDecision,
    ScreenedInvite,
    TrunkGateway,
)

from ..answer_delay import AnswerDelays
from ..auth import AuthOk, BrowserAuth
from ..media.interface import BrowserPort, CallMediaInterface
from ..media.pipeline import CallMedia, PipelineConfig
from ..media.plane import MediaPlane
from ..media.webrtc_leg import WebRtcLegError
from ..routing import CallLimits, DialPlan, RoutingError, TrunkChannels, TrunkChannelsError
from ..security import SecurityRecord
from .browser import (
    BrowserDialogs,
    BrowserHost,
    BrowserInvite,
    BrowserProfile,
    screen_browser_invite,
)
from .call import Call
from .errors import CallRefusedError, EndReason, failure_status
from .journal import Journal
from .media_watch import watch_media
from .state import CallPhase, CallTransition

__all__ = ["BrowserContacts", "Orchestrator", "OrchestratorConfig"]

log = logging.getLogger("bridge.call")

BrowserContacts = Callable[[str], list[tuple[SipUri | AbsoluteUri, SipEndpoint]]]
"""The registered, connected browsers of a user: (Contact URI, its WebSocket)."""
RECENT_REFUSALS = 200
_DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestratorConfig:
    """How calls are made.

    Attributes:
        trunk: the trunk that carries outbound calls.
        browser: the browser legs' settings.
        pipeline: the media settings.
        media_timeout: seconds without carrier RTP in an answered call before it is hung
            up (``media-timeout``); 0 never.
    """

    trunk: str
    browser: BrowserProfile
    pipeline: PipelineConfig
    media_timeout: float = 0.0


class Orchestrator:
    """Creates, routes and ends calls (see the module docstring)."""

    def __init__(
        self,
        config: OrchestratorConfig,
        *,
        gateway: TrunkGateway,
        auth: BrowserAuth,
        dialplan: DialPlan,
        limits: CallLimits,
        owner_of_did: Callable[[str], str | None],
        did_of: Callable[[str], str | None],
        contacts: BrowserContacts,
        clock: Callable[[], float],
        journal: Journal | None = None,
        channels: TrunkChannels | None = None,
        plane: MediaPlane | None = None,
    ) -> None:
        self.config = config
        self.plane = plane
        """The media worker processes (None: media runs in this process)."""
        self.gateway = gateway
        self.auth = auth
        self.dialplan = dialplan
        self.limits = limits
        self.channels = channels if channels is not None else TrunkChannels()
        self.delays = AnswerDelays()
        self.dialogs = BrowserDialogs()
        self.calls: dict[str, Call] = {}
        self.ended: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.recent_refusals: deque[SecurityRecord] = deque(maxlen=RECENT_REFUSALS)
        self._owner_of_did = owner_of_did
        self._did_of = did_of
        self._contacts = contacts
        self._clock = clock
        self.journal = journal if journal is not None else Journal()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- outbound: a browser dials --------------------------------------------------------

    def browser_invite(self, endpoint: SipEndpoint, tid: str, request: SipRequest) -> None:
        """A new INVITE from a browser (outside any dialog)."""
        peer = endpoint.peer[0]
        now = self._clock()
        outcome = self.auth.authenticate(request, source=peer, now=now)
        if isinstance(outcome, SipResponse):  # held back as the brute-force guard says
            self.delays.send(endpoint, tid, outcome, self.auth.guard.delay(peer, now))
            return
        user = outcome.username
        try:
            number, offer = self._admit(request, outcome)
        except CallRefusedError as exc:
            self._refuse(endpoint, tid, request, user, exc)
            return
        except RemoteProtocolError as exc:
            refusal = CallRefusedError(
                str(exc),
                sip_status=exc.status_code,
                reason=exc.reason,
                end_reason=EndReason.ENCRYPTION_REFUSED
                if exc.status_code == 488
                else EndReason.REJECTED,
                refusal=getattr(exc, "policy", "malformed-request"),
            )
            self._refuse(endpoint, tid, request, user, refusal, headers=exc.headers)
            return
        self._start_outbound(endpoint, tid, request, user, number, offer)

    def _admit(self, request: SipRequest, auth: AuthOk) -> tuple[str, SdpSession]:
        dialed = _dialed(request)
        try:
            number = self.dialplan.route(dialed)
        except RoutingError as exc:
            raise CallRefusedError(
                str(exc),
                sip_status=exc.sip_status,
                reason=exc.reason,
                end_reason=EndReason.POLICY_REFUSED,
                refusal=exc.end_reason,
            ) from None
        offer = screen_browser_invite(request, self.config.browser)
        return number, offer

    def _refuse(
        self,
        endpoint: SipEndpoint,
        tid: str,
        request: SipRequest,
        user: str,
        exc: CallRefusedError,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        log.info(
            "call from %s (%s) refused: %d %s",
            user,
            "{}:{}".format(*endpoint.peer),
            exc.sip_status,
            exc,
        )
        self.refused[exc.refusal] += 1
        record = SecurityRecord(
            call_id=new_call_id(request.call_id),
            direction="outbound",
            from_party=user,
            to_party=_dialed(request)[:32],
            webrtc_tls=endpoint.tls,
            reaches_pstn=False,
        )
        record.user = user
        if exc.refusal == TrunkChannelsError.end_reason:
            record.trunk = self.config.trunk
        record.refuse(exc.refusal, str(exc))
        self.journal.report(record, "started", {"direction": "outbound", "user": user})
        self.journal.report(record, "refused", {"reason": exc.refusal, "status": exc.sip_status})
        record.freeze(str(exc.end_reason), exc.sip_status)
        self.journal.report(record, "ended", {"reason": str(exc.end_reason)})
        self.recent_refusals.append(record)
        response = build_response(request, exc.sip_status, exc.reason, headers=headers)
        endpoint.send_response(tid, response)

    def _start_outbound(
        self,
        endpoint: SipEndpoint,
        tid: str,
        request: SipRequest,
        user: str,
        number: str,
        offer: SdpSession,
    ) -> None:
        try:
            ticket = self.limits.admit(user, self._clock())
        except RoutingError as exc:
            refusal = CallRefusedError(
                str(exc),
                sip_status=exc.sip_status,
                reason=exc.reason,
                end_reason=EndReason.LIMIT_REACHED,
                refusal=exc.end_reason,
            )
            self._refuse(endpoint, tid, request, user, refusal)
            return
        try:
            channel = self.channels.seize(self.config.trunk)
        except RoutingError as exc:
            self.limits.release(ticket)
            refusal = CallRefusedError(
                str(exc),
                sip_status=exc.sip_status,
                reason=exc.reason,
                end_reason=EndReason.LIMIT_REACHED,
                refusal=exc.end_reason,
            )
            self._refuse(endpoint, tid, request, user, refusal)
            return

        def release() -> None:
            self.limits.release(ticket)
            channel()

        call = self._new_call(
            "outbound",
            sip_call_id=request.call_id,
            user=user,
            parties=(user, number),
            endpoint=endpoint,
            release=release,
            trunk=self.config.trunk,
        )
        call_id = call.call_id
        host = BrowserHost(self.config.browser, endpoint, self.dialogs, ())
        screened = ScreenedInvite(did=number, caller=user, offer=offer)
        browser = InboundCall(
            host, endpoint=endpoint, transaction_id=tid, request=request, screened=screened
        )
        browser.on_event = call.browser_event
        browser.on_info = lambda info: self._browser_info(call, info)
        call.browser = browser
        self.dialogs.pending(browser)
        log.info("call %s: %s dials %s", call_id, user, number)
        call.spawn(self._dial(call, host, browser, number), "dial")
        call.spawn(self._watch_browser(call, endpoint), "watch browser")

    async def _dial(self, call: Call, host: BrowserHost, browser: InboundCall, number: str) -> None:
        try:
            await call.media.open()
            port = await call.media.new_webrtc_port(controlling=False)
        except (OSError, WebRtcLegError) as exc:
            log.warning("call %s: media could not be set up: %s", call.call_id, exc)
            browser.reject(503, "Media Unavailable")
            return
        host.profile = self.config.browser.media_profile(port.leg.fingerprints)
        if call.end_reason is not None:
            await call.media.aclose()
            return
        try:
            leg = self.gateway.call(
                self.config.trunk,
                number,
                media=call.media.gateway_port,
                caller=self._did_of(call.user),
                on_event=call.gateway_event,
            )
        except (SipError, ValueError) as exc:
            log.warning(
                "call %s: trunk %s refused the call: %s", call.call_id, self.config.trunk, exc
            )
            browser.reject(503)
            return
        call.gateway = leg

    async def _watch_browser(self, call: Call, endpoint: SipEndpoint) -> None:
        await endpoint.wait_closed()
        if call.end_reason is None:
            log.info("call %s: the browser's WebSocket closed; hanging up", call.call_id)
            await call.hangup(EndReason.BROWSER_GONE)

    def _browser_info(self, call: Call, request: SipRequest) -> None:
        kind = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        digit, duration = None, 100
        text = request.body.decode("ascii", "replace")
        if kind == "application/dtmf-relay":
            for line in text.splitlines():
                name, _, value = line.partition("=")
                if name.strip().lower() == "signal":
                    digit = value.strip().upper()
                elif name.strip().lower() == "duration" and value.strip().isdigit():
                    duration = int(value.strip()[:5])
        elif kind == "application/dtmf":
            digit = text.strip().upper()
        if digit is not None and digit in _DTMF_DIGITS:
            call.media.send_digit_to_gateway(digit, duration, via="info")

    # -- inbound: a carrier calls a DID ---------------------------------------------------

    def inbound_refused(self, refused: InviteRefused) -> None:
        """The trunk gateway refused a carrier's INVITE at screening: keep it as a record."""
        policy = refused.policy or f"sip-{refused.status_code}"
        self.refused[policy] += 1
        record = SecurityRecord(
            call_id=new_call_id(refused.call_id),
            direction="inbound",
            from_party=(refused.caller or "")[:32] or None,
            to_party=(refused.did or "")[:32] or None,
            gateway_tls=refused.tls,
            gateway_peer=refused.peer,
        )
        record.trunk = refused.trunk
        record.refuse(policy, refused.detail[:200])
        self.journal.report(record, "started", {"direction": "inbound", "trunk": refused.trunk})
        self.journal.report(record, "refused", {"reason": policy, "status": refused.status_code})
        end = EndReason.ENCRYPTION_REFUSED if refused.status_code == 488 else EndReason.REJECTED
        if policy == TrunkChannelsError.end_reason:
            end = EndReason.LIMIT_REACHED
        record.freeze(str(end), refused.status_code)
        self.journal.report(record, "ended", {"reason": str(end)})
        self.recent_refusals.append(record)

    async def route_inbound(self, carrier: InboundCall) -> RouteDecision:
        """The trunk gateway's routing callback."""
        owner = self._owner_of_did(carrier.did)
        if owner is None:
            log.info(
                "inbound call %s to %s: no user owns this number", carrier.call_id, carrier.did
            )
            self.refused["unknown-did"] += 1
            return Reject(status_code=404)
        browsers = self._contacts(owner)
        if not browsers:
            log.info(
                "inbound call %s to %s: %s has no registered browser",
                carrier.call_id,
                carrier.did,
                owner,
            )
            self.refused[str(EndReason.NO_BROWSER)] += 1
            return Reject(status_code=480)
        trunk = carrier.host.config.name
        try:
            channel = self.channels.seize(trunk)
        except RoutingError as exc:
            log.warning("inbound call %s to %s refused: %s", carrier.call_id, carrier.did, exc)
            self.inbound_refused(_channel_refusal(carrier, exc))
            return Reject(status_code=exc.sip_status, reason=exc.reason)
        call = self._new_call(
            "inbound",
            sip_call_id=carrier.call_id,
            user=owner,
            parties=(carrier.caller, carrier.did),
            endpoint=None,
            release=channel,
            trunk=carrier.host.config.name,
        )
        carrier.on_event = call.gateway_event  # from now on its end ends the call
        call.gateway = carrier
        try:
            await call.media.open()
        except OSError as exc:
            log.warning("call %s: no gateway media port: %s", call.call_id, exc)
            return Reject(status_code=503)
        carrier.ring()
        try:
            winner = await self._ring_browsers(call, owner, browsers)
        except CallFailedError as exc:
            status, _reason = failure_status(exc.failure, exc.status_code)
            call.status_code = status
            return Reject(status_code=status)
        except (WebRtcLegError, OSError) as exc:  # OSError: also a lost media worker
            log.warning("call %s: browser media could not be set up: %s", call.call_id, exc)
            return Reject(status_code=503)
        call.browser = winner
        return Answer(media=call.media.gateway_port, ring=False, on_event=call.gateway_event)

    def _new_call(
        self,
        direction: str,
        *,
        sip_call_id: str,
        user: str,
        parties: tuple[str | None, str | None],
        endpoint: SipEndpoint | None,
        release: Callable[[], None] | None,
        trunk: str | None = None,
    ) -> Call:
        """A new call with its record and (not yet opened) media, counted as active."""
        call_id = new_call_id(sip_call_id)
        record = SecurityRecord(
            call_id=call_id,
            direction=direction,
            from_party=parties[0],
            to_party=parties[1],
            webrtc_tls=endpoint.tls if endpoint is not None else None,
            user=user,
            trunk=trunk,
        )
        call = Call(
            call_id=call_id,
            direction=direction,
            user=user,
            media=self._new_media(call_id),
            record=record,
            browser_endpoint=endpoint,
            on_transition=self._transition,
            on_end=lambda ended: self._ended(ended, release),
            on_report=lambda event, detail: self.journal.report(record, event, detail),
        )
        self.calls[call_id] = call
        self.journal.report(record, "started", {"direction": direction, "user": user})
        if self.config.media_timeout > 0:
            call.spawn(watch_media(call, self.config.media_timeout), "media watch")
        return call

    def _new_media(self, call_id: str) -> CallMediaInterface[Any]:
        """A call's media: in a worker process, or in this one without a media plane."""
        if self.plane is not None:
            return self.plane.call_media(call_id)
        return CallMedia(self.config.pipeline)

    async def _ring_browsers(
        self, call: Call, owner: str, browsers: list[tuple[SipUri | AbsoluteUri, SipEndpoint]]
    ) -> BrowserInvite:
        forks: list[tuple[BrowserInvite, BrowserPort]] = []
        try:
            for uri, endpoint in browsers:
                port = await call.media.new_webrtc_port(controlling=True)
                host = BrowserHost(
                    self.config.browser, endpoint, self.dialogs, port.leg.fingerprints
                )
                assert isinstance(call.gateway, InboundCall)
                fork = BrowserInvite(
                    host, user=owner, contact=uri, caller=call.gateway.caller, media=port
                )
                self.dialogs.track(fork)
                fork.start()
                forks.append((fork, port))
            winner, port = await _first_answer(forks)
        except BaseException:
            for fork, _port in forks:
                fork.cancel()
            raise
        for fork, _port in forks:
            if fork is not winner:
                fork.cancel()
        await call.media.choose_webrtc(port)
        call.browser_endpoint = winner.endpoint
        call.record.webrtc_tls = winner.endpoint.tls if winner.endpoint is not None else None
        call.record.webrtc_codec = call.media.webrtc_codec
        winner.on_event = call.browser_event
        winner.on_info = lambda info: self._browser_info(call, info)
        if winner.endpoint is not None:
            call.spawn(self._watch_browser(call, winner.endpoint), "watch browser")
        return winner

    # -- bookkeeping ----------------------------------------------------------------------

    def _transition(self, transition: CallTransition) -> None:
        call = self.calls.get(transition.call_id)
        if call is None:
            return
        detail = {"from": str(transition.old), "cause": transition.cause}
        if transition.new is CallPhase.ENDED:
            detail["reason"] = str(call.end_reason)
            if call.status_code is not None:
                detail["status"] = str(call.status_code)
        self.journal.report(call.record, str(transition.new), detail)

    def _ended(self, call: Call, release: Callable[[], None] | None) -> None:
        self.calls.pop(call.call_id, None)
        self.ended[str(call.end_reason)] += 1
        if release is not None:
            release()

    @property
    def active(self) -> int:
        """Calls not over yet."""
        return len(self.calls)

    async def aclose(self) -> None:
        """Hang up every call (shutdown)."""
        self.delays.close()
        calls = list(self.calls.values())
        for call in calls:
            with contextlib.suppress(Exception):
                await call.hangup(EndReason.SHUTDOWN)


async def _first_answer(
    forks: list[tuple[BrowserInvite, BrowserPort]],
) -> tuple[BrowserInvite, BrowserPort]:
    """The first fork to answer; CallFailedError (the most telling failure) when none does."""
    waiting = {asyncio.ensure_future(fork.wait_answered()): (fork, port) for fork, port in forks}
    failures: list[CallFailedError] = []
    try:
        while waiting:
            done, _pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                fork, port = waiting.pop(future)
                exc = future.exception()
                if exc is None:
                    return fork, port
                if isinstance(exc, CallFailedError):
                    failures.append(exc)
    finally:
        for future in waiting:
            future.cancel()
    raise _most_telling(failures)


def _channel_refusal(carrier: InboundCall, exc: RoutingError) -> InviteRefused:
    """The record of an inbound call refused for want of a trunk channel."""
    endpoint = carrier.endpoint_or_fail
    return InviteRefused(
        trunk=carrier.host.config.name,
        call_id=carrier.call_id,
        caller=carrier.caller,
        did=carrier.did,
        peer="{}:{}".format(*endpoint.peer),
        tls=endpoint.tls,
        status_code=exc.sip_status,
        policy=exc.end_reason,
        detail=str(exc),
    )


def _most_telling(failures: list[CallFailedError]) -> CallFailedError:
    """A decline (603) or busy (486) says more than a timeout or an error."""
    for code in (603, 486, 600):
        for failure in failures:
            if failure.status_code == code:
                return failure
    if failures:
        return failures[0]
    return CallFailedError(
        "nobody answered", failure=CallFailure.NO_ANSWER, status_code=480, reason="no answer"
    )


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def new_call_id(sip_call_id: str) -> str:
    """A bridge call id: unique, safe in URLs and MQTT topics, traceable to the SIP Call-ID.

    ``c-<UTC time>-<first 12 safe characters of the Call-ID>-<random>``: the random part
    keeps a retried INVITE (same Call-ID) or two calls in one second apart.
    """
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    prefix = _ID_UNSAFE.sub("", sip_call_id)[:12] or "x"
    return f"c-{stamp}-{prefix}-{secrets.token_hex(3)}"


def _dialed(request: SipRequest) -> str:
    uri = request.uri
    user = uri.user if isinstance(uri, SipUri) and uri.user else None
    if user is None and isinstance(request.to_addr.uri, SipUri):
        user = request.to_addr.uri.user
    return urllib.parse.unquote(user or "")
