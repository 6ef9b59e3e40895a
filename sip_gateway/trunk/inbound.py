"""Inbound calls from carriers: acceptance, screening, routing, answering.

Theory of operation:

* :class:`TrunkRouter` decides which configured trunk an inbound connection belongs to, by
  source address (CIDR allow-list) and/or the names of its verified client certificate.
  No match means 403 (the gateway logs the peer address).
* :func:`screen_invite` checks an accepted INVITE before anyone is bothered: the called
  number (DID: the Request-URI user, else the To user) must normalise to E.164 (484), the
  INVITE needs a Contact (400) and an SDP offer we could answer: ``RTP/SAVP`` with an
  acceptable ``a=crypto`` line (:class:`~sip_gateway.sdp.SdpError`, 488), and a session
  interval not below our Min-SE (422).
* :class:`InboundCall` then goes to the routing callback, which returns a
  :class:`Reject` or an :class:`Answer` (ring, then answer with a
  :class:`~sip_gateway.trunk.state.MediaPort`); the callback may also call
  :meth:`InboundCall.ring` itself while it decides. The answer is built with
  :func:`sip_gateway.sdp.answer_offer` (fresh keys) and carries RFC 4028 headers
  (``Require: timer`` when the carrier supports it). A CANCEL from the carrier gets 487 and
  cancels the routing task; a 2xx never ACKed is hung up after 32 s (RFC 3261 13.3.1.4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sip_gateway.aio import SipEndpoint
from sip_gateway.sdp import LocalMedia, MediaConfig, SdpError, SdpSession, answer_offer, parse_sdp
from sip_gateway.sip.dialog import Dialog
from sip_gateway.sip.errors import RemoteProtocolError, SipError
from sip_gateway.sip.message import SipRequest, SipResponse, build_response
from sip_gateway.sip.uri import SipUri

from .config import TrunkConfig
from .errors import EndReason, InvalidNumberError, TrunkError
from .leg import ALLOW, CallLeg, EventCallback, LegHost
from .session_timer import SessionTimer
from .state import CallAnswered, CallInput, CallRinging, CallState, MediaPort

__all__ = [
    "ACK_TIMEOUT",
    "Answer",
    "InboundCall",
    "InboundRoute",
    "Reject",
    "RouteDecision",
    "ScreenedInvite",
    "TrunkRouter",
    "screen_invite",
]

logger = logging.getLogger("sip_gateway.trunk")

ACK_TIMEOUT = 32.0
"""Seconds our 2xx may wait for its ACK before we hang up (64*T1, RFC 3261 13.3.1.4)."""


class TrunkRouter:
    """Finds the trunk of an inbound connection (sans-IO).

    Args:
        trunks: the configured trunks, in priority order (the first match wins).
    """

    def __init__(self, trunks: Sequence[TrunkConfig]) -> None:
        self.trunks = tuple(trunks)

    def match(self, address: str, certificate_names: frozenset[str]) -> TrunkConfig | None:
        """The first trunk whose every configured criterion accepts this peer, or None."""
        for trunk in self.trunks:
            if trunk.matches_peer(address, certificate_names):
                return trunk
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """A routing decision: refuse the call with this final status."""

    status_code: int = 480
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A routing decision: answer with this media port (sending 180 first if ``ring``)."""

    media: MediaPort
    ring: bool = True
    on_event: EventCallback | None = None
    """Set as the call's event callback before answering (optional)."""


RouteDecision = Reject | Answer
InboundRoute = Callable[["InboundCall"], Awaitable[RouteDecision]]
"""The routing callback: gets the screened call, returns what to do with it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenedInvite:
    """What :func:`screen_invite` found in an acceptable INVITE."""

    did: str
    """The called number, E.164."""
    caller: str | None
    """The calling number: E.164 when it normalises, else as sent; None when absent."""
    offer: SdpSession


def screen_invite(config: TrunkConfig, request: SipRequest, *, now: float = 0.0) -> ScreenedInvite:
    """Check a new INVITE from ``config``'s carrier before routing it.

    Raises:
        RemoteProtocolError: with the status to answer: 404/484 (no usable called number),
            400 (no Contact, malformed SDP), 488 (SdpError: no acceptable offer), 422 (session
            interval below our Min-SE).
    """
    did = _called_number(config, request)
    if not request.contacts:
        raise RemoteProtocolError("INVITE without Contact")
    if not request.body:
        raise SdpError("INVITE without SDP offer (delayed offer is not supported)")
    offer = parse_sdp(request.body)
    probe = LocalMedia(address="127.0.0.1", port=9, session_id=0)
    answer_offer(offer, config.media_profile(), probe, key_source=_zero_key)
    if config.session_timer:
        SessionTimer(session_expires=config.session_expires, min_se=config.min_se).answer(
            request, now
        )
    return ScreenedInvite(did=did, caller=_calling_number(config, request), offer=offer)


def _zero_key(n: int) -> bytes:
    """Key source of the screening answer, which is thrown away."""
    return bytes(n)


def _called_number(config: TrunkConfig, request: SipRequest) -> str:
    users = []
    if isinstance(request.uri, SipUri) and request.uri.user:
        users.append(request.uri.user)
    to_uri = request.to_addr.uri
    if isinstance(to_uri, SipUri) and to_uri.user:
        users.append(to_uri.user)
    if not users:
        raise RemoteProtocolError("no called number in the INVITE", status_code=404)
    for user in users:
        try:
            return config.normalize(user)
        except InvalidNumberError:
            continue
    raise RemoteProtocolError(
        "called number is not E.164", status_code=484, reason="Address Incomplete"
    )


def _calling_number(config: TrunkConfig, request: SipRequest) -> str | None:
    candidates = [a.uri for a in request.name_addrs("P-Asserted-Identity")]
    candidates.append(request.from_addr.uri)
    users = [uri.user for uri in candidates if isinstance(uri, SipUri) and uri.user]
    for user in users:
        try:
            return config.normalize(user)
        except InvalidNumberError:
            continue
    return users[-1] if users else None


class _Unanswered:
    """The media port of a call nobody answered yet."""

    local_address = ("127.0.0.1", 9)

    def apply(self, config: MediaConfig) -> None:
        """Never called before the answer."""

    def close(self) -> None:
        """Nothing to close."""


class InboundCall(CallLeg):
    """A call from a carrier, screened and handed to routing (see the module docstring)."""

    direction = "inbound"

    def __init__(
        self,
        host: LegHost,
        *,
        endpoint: SipEndpoint,
        transaction_id: str,
        request: SipRequest,
        screened: ScreenedInvite,
    ) -> None:
        super().__init__(host, call_id=request.call_id, media=_Unanswered())
        self.endpoint = endpoint
        self.transaction_id = transaction_id
        self.request = request
        self.did = screened.did
        self.caller = screened.caller
        self.offer = screened.offer
        self.trunk = host.config
        self._to_tag = host.token()[:12]
        self._route_task: asyncio.Task[None] | None = None
        self._ack_timer: asyncio.TimerHandle | None = None
        self._acked = False
        self.acked = asyncio.Event()
        """Set when the ACK for our 2xx arrived: the dialog is confirmed on both sides."""
        self._early_answer: tuple[SdpSession, MediaConfig] | None = None

    # -- routing ---------------------------------------------------------------------

    def route(self, route: InboundRoute) -> None:
        """Hand the call to the routing callback (the gateway calls this once)."""
        self._route_task = self._loop.create_task(self._route(route), name=f"{self.call_id} route")
        self._tasks.add(self._route_task)
        self._route_task.add_done_callback(self._task_done)

    async def _route(self, route: InboundRoute) -> None:
        try:
            decision = await route(self)
        except Exception:
            logger.exception("call %s: routing failed", self.call_id)
            self.reject(500)
            return
        if self.end is not None:
            if isinstance(decision, Answer):
                decision.media.close()
            return
        if isinstance(decision, Reject):
            self.reject(decision.status_code, decision.reason)
            return
        if decision.on_event is not None:
            self.on_event = decision.on_event
        if decision.ring:
            self.ring()
        try:
            await self.answer(decision.media)
        except (SdpError, TrunkError) as exc:
            logger.info("call %s: not answered: %s", self.call_id, exc)

    # -- our responses ---------------------------------------------------------------

    @property
    def local_tag(self) -> str:
        """Our To tag: the early dialog's local tag once we ring or answer."""
        return self._to_tag

    def ring(self) -> None:
        """Send 180 Ringing (once; a no-op after the answer or the end)."""
        if self.state is not CallState.CALLING:
            return
        contact = str(self.host.contact(self.endpoint_or_fail))
        ringing = build_response(
            self.request, 180, to_tag=self._to_tag, headers=[("Contact", contact)]
        )
        if self._send(ringing):
            self._advance(CallInput.PROVISIONAL)
            self._emit(CallRinging(call_id=self.call_id, status_code=180, early_media=False))

    def progress(self, media: MediaPort) -> MediaConfig:
        """Send 183 Session Progress with our SDP answer and start early media (once).

        The later :meth:`answer` with the same ``media`` repeats this answer in its 200
        (RFC 3261 13.2.1: without 100rel the 183's SDP is a preview of the answer).

        Raises:
            TrunkError: the call is no longer ringing.
            SdpError: the offer cannot be answered (the call was refused with its status).
        """
        if self.state not in (CallState.CALLING, CallState.PROCEEDING):
            if media is not self.media:
                media.close()
            raise TrunkError(
                f"call {self.call_id} is {self.state}, cannot progress", status_code=481
            )
        if self._early_answer is not None:
            return self._early_answer[1]
        self.media = media
        try:
            answer, config = self._answer(self.offer)
        except RemoteProtocolError as exc:
            self._refuse(exc)
            raise
        contact = str(self.host.contact(self.endpoint_or_fail))
        headers = [("Contact", contact), ("Allow", ALLOW), ("Content-Type", "application/sdp")]
        response = build_response(
            self.request, 183, to_tag=self._to_tag, headers=headers, body=answer.to_bytes()
        )
        self._early_answer = (answer, config)
        self.local_sdp = answer
        self._apply_media(config)
        if self._send(response):
            self._advance(CallInput.PROVISIONAL)
            self._emit(CallRinging(call_id=self.call_id, status_code=183, early_media=True))
        return config

    def reject(self, status_code: int = 480, reason: str | None = None) -> None:
        """Refuse the call with a final status (a no-op once answered or ended)."""
        if self.state not in (CallState.CALLING, CallState.PROCEEDING):
            return
        response = build_response(self.request, status_code, reason, to_tag=self._to_tag)
        self._send(response)
        self._advance(CallInput.FAILED)
        self._finish(EndReason.REJECTED, status_code=status_code)

    async def answer(self, media: MediaPort) -> MediaConfig:
        """Answer with 200 and an SDES answer; media is applied before the 200 goes out.

        Raises:
            TrunkError: the call is no longer ringing (cancelled, ended, answered).
            SdpError: the offer cannot be answered (the call was refused with its status).
        """
        if self.state not in (CallState.CALLING, CallState.PROCEEDING):
            if media is not self.media:
                media.close()
            raise TrunkError(f"call {self.call_id} is {self.state}, cannot answer", status_code=481)
        try:
            if self._early_answer is not None and media is self.media:
                answer, config = self._early_answer  # the 200 repeats the 183's answer
            else:
                self.media = media
                answer, config = self._answer(self.offer)
            timer_headers = self.timer.answer(self.request, self._now()) if self.timer else []
        except RemoteProtocolError as exc:
            self._refuse(exc)
            raise
        endpoint = self.endpoint_or_fail
        contact = self.host.contact(endpoint)
        headers = [("Contact", str(contact)), ("Allow", ALLOW), ("Supported", "timer")]
        headers += [*timer_headers, ("Content-Type", "application/sdp")]
        ok = build_response(
            self.request, 200, to_tag=self._to_tag, headers=headers, body=answer.to_bytes()
        )
        self.dialog = Dialog.for_uas(self.request, ok, local_contact=contact)
        self.local_sdp = answer
        self._apply_media(config)
        self.host.attach(self)
        if not self._send(ok):
            self._finish(EndReason.REMOTE_HANGUP)
            raise TrunkError(
                f"call {self.call_id}: connection lost before the answer", status_code=503
            )
        self._advance(CallInput.ANSWERED)
        self._ack_timer = self._call_later(ACK_TIMEOUT, self._ack_missing)
        self._arm_timer()
        self._emit(CallAnswered(call_id=self.call_id, media=config))
        return config

    def _refuse(self, exc: RemoteProtocolError) -> None:
        self.refused_by = getattr(exc, "policy", None)
        response = build_response(
            self.request, exc.status_code, exc.reason, to_tag=self._to_tag, headers=exc.headers
        )
        self._send(response)
        self._advance(CallInput.FAILED)
        reason = EndReason.ENCRYPTION_REFUSED if exc.status_code == 488 else EndReason.REJECTED
        self._finish(reason, status_code=exc.status_code)

    @property
    def endpoint_or_fail(self) -> SipEndpoint:
        """The connection the INVITE came in on."""
        assert self.endpoint is not None
        return self.endpoint

    def _send(self, response: SipResponse) -> bool:
        try:
            self.endpoint_or_fail.send_response(self.transaction_id, response)
        except SipError as exc:
            logger.info("call %s: cannot send %s: %s", self.call_id, response.status_code, exc)
            return False
        return True

    # -- the carrier's requests ------------------------------------------------------

    def receive_cancel(self) -> None:
        """The carrier cancelled (the core already answered the CANCEL): 487, end."""
        if self.state not in (CallState.CALLING, CallState.PROCEEDING):
            return
        self._send(build_response(self.request, 487, to_tag=self._to_tag))
        self._advance(CallInput.FAILED)
        if self._route_task is not None:
            self._route_task.cancel()
        self._finish(EndReason.CANCELLED, status_code=487)

    def receive_ack(self, request: SipRequest) -> None:
        """The ACK for our 2xx: the call is fully up."""
        if not self._acked:
            self._acked = True
            self.acked.set()
            if self._ack_timer is not None:
                self._ack_timer.cancel()
        super().receive_ack(request)

    def _ack_missing(self) -> None:
        if not self._acked and self.state is CallState.CONFIRMED:
            logger.warning("call %s: our 2xx was never ACKed; hanging up", self.call_id)
            self._spawn(self._bye(EndReason.ACK_TIMEOUT), "bye")

    async def hangup(self) -> None:
        """Refuse an unanswered call (480) or BYE an answered one; returns once it ended."""
        if self.state in (CallState.CALLING, CallState.PROCEEDING):
            self.reject(480)
        await super().hangup()
