"""One call leg on a trunk once it has a dialog: in-dialog requests both ways, session timer.

Theory of operation: :class:`CallLeg` is the part that outbound and inbound calls share.
It owns the :class:`~sip_gateway.sip.dialog.Dialog`, the media port, the last SDP we sent
(a session refresh re-sends it unchanged, so keys and the ``o=`` version stay put) and a
:class:`~sip_gateway.trunk.session_timer.SessionTimer`.

* In-dialog requests from the carrier arrive through :meth:`CallLeg.receive_request`
  (the gateway's handler finds the leg by dialog id): BYE ends the call with 200, a
  re-INVITE or UPDATE is answered with :func:`sip_gateway.sdp.answer_offer` using the
  current config as ``previous`` (an unchanged crypto line keeps our key), and also
  refreshes the session timer; OPTIONS and INFO get 200, anything else 405.
* Our in-dialog requests (:meth:`CallLeg._request`) go to the dialog's next hop through the
  trunk, answer one digest challenge, and feed the dialog with the response.
* One timer task sleeps until the session timer's deadline and then refreshes (re-INVITE
  or UPDATE at half the interval) or sends BYE (session expired).

The protocol decisions live in the sans-IO pieces (dialog, SDP offer/answer, session timer,
:data:`~sip_gateway.trunk.state.TRANSITIONS`); this module sequences them on asyncio.
Logs name the call id and the trunk, never SDP bodies or credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from sip_gateway.aio import SipEndpoint
from sip_gateway.sdp import (
    KeySource,
    LocalMedia,
    MediaConfig,
    MediaProfile,
    SdpError,
    SdpSession,
    answer_offer,
    parse_sdp,
    process_answer,
)
from sip_gateway.sip.auth import AuthError, DigestClient
from sip_gateway.sip.dialog import Dialog, DialogState
from sip_gateway.sip.errors import LocalProtocolError, RemoteProtocolError, SipError
from sip_gateway.sip.headers import NameAddr, parse_name_addr
from sip_gateway.sip.message import SipRequest, SipResponse, build_response
from sip_gateway.sip.uri import AbsoluteUri, SipUri

from .config import TrunkConfig
from .errors import CallFailure, EndReason
from .session_timer import SessionTimer, TimerAction
from .state import (
    CallEnded,
    CallEvent,
    CallInput,
    CallState,
    IcePort,
    MediaPort,
    MediaUpdated,
    SessionRefreshed,
    advance,
)

__all__ = ["ALLOW", "BYE_TIMEOUT", "CallLeg", "EventCallback", "LegHost", "answer_challenge"]

logger = logging.getLogger("sip_gateway.trunk")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
"""Methods we accept on the gateway leg."""
BYE_TIMEOUT = 10.0
"""Seconds a BYE may wait for its response before the leg ends anyway."""
_CHALLENGES = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}

EventCallback = Callable[[CallEvent], None]
"""Receives the :class:`~sip_gateway.trunk.state.CallEvent` records of a leg; must not block."""


class LegHost(Protocol):
    """What a call leg needs from its trunk (implemented by :class:`~.gateway.Trunk`)."""

    config: TrunkConfig
    profile: MediaProfile
    key_source: KeySource
    timer_scale: float

    def token(self) -> str:
        """A fresh random token for tags, Call-IDs and session ids."""

    def contact(self, endpoint: SipEndpoint) -> NameAddr:
        """Our Contact for requests and responses on ``endpoint``."""

    def digest_client(self) -> DigestClient | None:
        """A fresh digest client for the trunk's account, None without credentials."""

    async def endpoint_for(
        self, target: SipUri | AbsoluteUri, fallback: SipEndpoint | None
    ) -> SipEndpoint:
        """The connection for a request to ``target`` (``fallback`` if none can be made)."""

    def attach(self, leg: CallLeg) -> None:
        """Route in-dialog requests of ``leg.dialog`` to the leg."""

    def detach(self, leg: CallLeg) -> None:
        """The leg is over: forget it."""


class CallLeg:
    """State shared by outbound and inbound calls (see the module docstring)."""

    direction = "none"

    def __init__(
        self,
        host: LegHost,
        *,
        call_id: str,
        media: MediaPort,
        on_event: EventCallback | None = None,
    ) -> None:
        self.host = host
        self.call_id = call_id
        self.media = media
        self.on_event = on_event
        """Receives every :class:`CallEvent` of this leg (may be set after creation)."""
        self.on_info: Callable[[SipRequest], None] | None = None
        """Receives each in-dialog INFO (RFC 6086) before it is answered with 200."""
        self.state = CallState.CALLING
        self.dialog: Dialog | None = None
        self.endpoint: SipEndpoint | None = None
        """The connection the call was set up on (for the call record's TLS facts)."""
        self.media_config: MediaConfig | None = None
        """The media config in force, None before the first answer."""
        self.local_sdp: SdpSession | None = None
        """The last SDP we sent (offer or answer)."""
        self.end: CallEnded | None = None
        self.refused_by: str | None = None
        """The SDP policy that refused the peer's SDP (reported in :class:`CallEnded`)."""
        config = host.config
        self.timer: SessionTimer | None = None
        if config.session_timer:
            self.timer = SessionTimer(session_expires=config.session_expires, min_se=config.min_se)
        self._loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[CallEnded] = self._loop.create_future()
        """Resolves with the :class:`CallEnded` event once the leg is over."""
        self._session_id = int(host.token()[:8], 16)
        self._sdp_version = 0
        self._remote_allow: frozenset[str] = frozenset()
        self._auth = host.digest_client()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer_task: asyncio.Task[None] | None = None
        self._handles: list[asyncio.TimerHandle] = []
        self._timer_wake = asyncio.Event()
        self._invite_busy = False
        self._ack: tuple[SipEndpoint, SipRequest] | None = None
        self._offer_in_2xx = False
        self._bye_sent = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.call_id} {self.state} via {self.host.config.name}>"

    # -- bookkeeping -----------------------------------------------------------------

    def _emit(self, event: CallEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            logger.exception("call %s: event callback failed on %s", self.call_id, event)

    def _advance(self, event: CallInput) -> None:
        self.state = advance(self.state, event)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = self._loop.create_task(coroutine, name=f"{self.call_id} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call %s: task failed", self.call_id, exc_info=task.exception())

    def _call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """A timer that is cancelled when the leg ends."""
        handle = self._loop.call_later(delay, callback)
        self._handles.append(handle)
        return handle

    def _finish(
        self,
        reason: EndReason,
        *,
        failure: CallFailure | None = None,
        status_code: int | None = None,
    ) -> None:
        """End the leg once: stop timers, close media, report :class:`CallEnded`."""
        if self.end is not None:
            return
        self.state = CallState.TERMINATED
        for handle in self._handles:
            handle.cancel()
        if self.dialog is not None:
            self.dialog.state = DialogState.TERMINATED
        if self.timer is not None:
            self.timer.stop()
        if self._timer_task is not None and self._timer_task is not asyncio.current_task():
            self._timer_task.cancel()
        with contextlib.suppress(Exception):
            self.media.close()
        self.host.detach(self)
        self.end = CallEnded(
            call_id=self.call_id,
            reason=reason,
            failure=failure,
            status_code=status_code,
            policy=self.refused_by,
        )
        logger.info(
            "call %s on %s ended: %s%s",
            self.call_id,
            self.host.config.name,
            reason,
            f" ({failure}, {status_code})" if failure else "",
        )
        self._emit(self.end)
        if not self.ended.done():
            self.ended.set_result(self.end)

    async def wait_ended(self) -> CallEnded:
        """Wait until the leg is over (bound it with ``asyncio.timeout``)."""
        return await asyncio.shield(self.ended)

    async def aclose(self) -> None:
        """Cancel the leg's background tasks (after it ended or on shutdown)."""
        tasks = [*self._tasks, *([self._timer_task] if self._timer_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- media -----------------------------------------------------------------------

    def _local_media(self) -> LocalMedia:
        address, port = self.media.local_address
        return LocalMedia(
            address=address,
            port=port,
            session_id=self._session_id,
            session_version=self._sdp_version,
            ice=self.media.local_ice if isinstance(self.media, IcePort) else None,
        )

    def _apply_media(self, config: MediaConfig) -> bool:
        """Hand a new config to the media port; False when nothing changed."""
        if config == self.media_config:
            return False
        self.media.apply(config)
        self.media_config = config
        return True

    def _answer(self, offer: SdpSession) -> tuple[SdpSession, MediaConfig]:
        """Answer an offer in this dialog; the ``o=`` version moves only on change.

        Raises:
            SdpError: the offer is refused (488) or malformed (400).
        """
        profile, keys = self.host.profile, self.host.key_source
        previous = self.media_config
        answer, config = answer_offer(
            offer, profile, self._local_media(), key_source=keys, previous=previous
        )
        if self.local_sdp is not None and answer.to_bytes() != self.local_sdp.to_bytes():
            self._sdp_version += 1
            answer, config = answer_offer(
                offer, profile, self._local_media(), key_source=keys, previous=previous
            )
        return answer, config

    # -- the session timer -------------------------------------------------------------

    def _now(self) -> float:
        """Session-timer time: the loop clock divided by the trunk's timer scale."""
        return self._loop.time() / self.host.timer_scale

    def _arm_timer(self) -> None:
        if self.timer is None or self.end is not None:
            return
        if self._timer_task is None:
            self._timer_task = self._loop.create_task(
                self._run_timer(), name=f"{self.call_id} session timer"
            )
        self._timer_wake.set()

    async def _run_timer(self) -> None:
        assert self.timer is not None
        while self.end is None:
            self._timer_wake.clear()
            deadline = self.timer.get_timer()
            delay = None if deadline is None else max(0.0, deadline - self._now())
            if delay is not None:
                delay *= self.host.timer_scale
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._timer_wake.wait()
                continue
            action = self.timer.handle_timer(max(self._now(), deadline or 0.0))
            if action is TimerAction.REFRESH:
                self._spawn(self._refresh(), "session refresh")
            elif action is TimerAction.EXPIRE:
                logger.warning("call %s: session expired without refresh", self.call_id)
                self._spawn(self._bye(EndReason.SESSION_EXPIRED), "bye")

    # -- requests we send in the dialog ------------------------------------------------

    async def _next_hop(self) -> SipEndpoint:
        assert self.dialog is not None
        target = self.dialog.remote_target
        if self.dialog.route_set:
            target = parse_name_addr(self.dialog.route_set[0]).uri
        return await self.host.endpoint_for(target, self.endpoint)

    async def _request(
        self,
        method: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        timeout: float | None = None,  # noqa: ASYNC109 - per-request bound
    ) -> tuple[SipEndpoint, SipRequest, SipResponse]:
        """Send an in-dialog request, answering at most one digest challenge.

        Raises:
            SipError: the transport failed or timed out (SipTransportError), or the dialog
                cannot send (LocalProtocolError).
            OSError: the connection failed.
        """
        assert self.dialog is not None
        extra = list(headers or [])
        endpoint = await self._next_hop()
        request = self.dialog.create_request(
            method, via=endpoint.make_via(), headers=tuple(extra), body=body
        )
        response = await endpoint.request(request, timeout=timeout)
        credentials = answer_challenge(self._auth, request, response, f"call {self.call_id}")
        if credentials is not None:
            request = self.dialog.create_request(
                method, via=endpoint.make_via(), headers=(*extra, *credentials), body=body
            )
            response = await endpoint.request(request, timeout=timeout)
        self.dialog.receive_response(method, response)
        return endpoint, request, response

    async def send_info(
        self,
        content_type: str,
        body: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per-request bound
    ) -> int:
        """Send an in-dialog INFO (RFC 6086) and return the status of its response.

        Raises:
            LocalProtocolError: the dialog is not confirmed.
            SipError: the transport failed or timed out.
            OSError: the connection failed.
        """
        if self.dialog is None or self.state is not CallState.CONFIRMED:
            raise LocalProtocolError(f"call {self.call_id} is {self.state}: no INFO")
        _, _, response = await self._request(
            "INFO", headers=[("Content-Type", content_type)], body=body, timeout=timeout
        )
        return response.status_code

    def _send_ack(self, endpoint: SipEndpoint, invite: SipRequest) -> None:
        assert self.dialog is not None
        ack = self.dialog.create_ack(invite.cseq.seq, via=endpoint.make_via())
        self._ack = (endpoint, ack)
        endpoint.send_request(ack)

    async def _bye(
        self,
        reason: EndReason,
        *,
        failure: CallFailure | None = None,
        status_code: int | None = None,
    ) -> None:
        """Send BYE (once) and end the leg with ``reason`` whatever the answer."""
        if self._bye_sent or self.state is CallState.TERMINATED:
            return
        self._bye_sent = True
        self._advance(CallInput.HANGUP)
        try:
            await self._request("BYE", timeout=BYE_TIMEOUT)
        except (SipError, OSError) as exc:
            logger.info("call %s: BYE got no answer: %s", self.call_id, exc)
        self._finish(reason, failure=failure, status_code=status_code)

    async def hangup(self) -> None:
        """End the call from our side: BYE when answered (subclasses handle earlier states)."""
        if self.state is CallState.CONFIRMED:
            await self._bye(EndReason.LOCAL_HANGUP)
        await self.wait_ended()

    async def _refresh(self) -> None:
        """Refresh the session (RFC 4028 section 7.4): UPDATE if allowed, else re-INVITE."""
        assert self.timer is not None and self.local_sdp is not None
        if self.state is not CallState.CONFIRMED or self._invite_busy:
            return
        update = self.host.config.refresh_method == "UPDATE" and "UPDATE" in self._remote_allow
        for _attempt in range(2):
            method = "UPDATE" if update else "INVITE"
            headers = [("Allow", ALLOW), *self.timer.request_headers(refresh=True)]
            body = b""
            if method == "INVITE":
                headers.append(("Content-Type", "application/sdp"))
                body = self.local_sdp.to_bytes()
            self._invite_busy = True
            try:
                endpoint, request, response = await self._request(
                    method, headers=headers, body=body
                )
            except (SipError, OSError) as exc:
                logger.warning("call %s: session refresh failed: %s", self.call_id, exc)
                return  # the expiry deadline ends the call if nothing else works
            finally:
                self._invite_busy = False
            if response.status_code == 422 and self.timer.handle_too_small(response):
                continue
            await self._refreshed(endpoint, request, response)
            return

    async def _refreshed(
        self, endpoint: SipEndpoint, request: SipRequest, response: SipResponse
    ) -> None:
        assert self.timer is not None and self.local_sdp is not None
        code = response.status_code
        if 200 <= code < 300:
            if request.method == "INVITE":
                self._send_ack(endpoint, request)
            if response.body:
                try:
                    answer = parse_sdp(response.body)
                    config = process_answer(self.local_sdp, answer, self.host.profile)
                except SdpError as exc:
                    logger.warning("call %s: refresh answer refused: %s", self.call_id, exc)
                    self.refused_by = exc.policy
                    await self._bye(EndReason.ENCRYPTION_REFUSED)
                    return
                if self._apply_media(config):
                    self._emit(MediaUpdated(call_id=self.call_id, media=config))
            self.timer.handle_success(response, self._now())
            self._emit(
                SessionRefreshed(call_id=self.call_id, interval=self.timer.interval, by_us=True)
            )
            self._arm_timer()
        elif code == 481:
            self._finish(EndReason.REFRESH_FAILED, status_code=code)
        elif code == 408:
            await self._bye(EndReason.REFRESH_FAILED)
        else:
            logger.warning("call %s: session refresh got %s", self.call_id, code)

    # -- requests the carrier sends in the dialog ----------------------------------------

    def receive_request(self, endpoint: SipEndpoint, tid: str, request: SipRequest) -> None:
        """Handle an in-dialog request (the gateway matched it to this leg)."""
        assert self.dialog is not None
        try:
            self.dialog.receive_request(request)
        except RemoteProtocolError as exc:
            endpoint.send_response(tid, build_response(request, exc.status_code, exc.reason))
            return
        method = request.method
        if method == "BYE":
            endpoint.send_response(tid, build_response(request, 200))
            self._finish(EndReason.REMOTE_HANGUP)
        elif method in ("INVITE", "UPDATE"):
            self._answer_offer_request(endpoint, tid, request)
        elif method in ("OPTIONS", "INFO"):
            if method == "INFO" and self.on_info is not None:
                try:
                    self.on_info(request)
                except Exception:
                    logger.exception("call %s: INFO handler failed", self.call_id)
            endpoint.send_response(tid, build_response(request, 200, headers=[("Allow", ALLOW)]))
        else:
            endpoint.send_response(tid, build_response(request, 405, headers=[("Allow", ALLOW)]))

    def receive_ack(self, request: SipRequest) -> None:
        """An ACK for our 2xx; it carries the answer when our 2xx carried an offer."""
        if self.dialog is not None:
            with contextlib.suppress(RemoteProtocolError):
                self.dialog.receive_request(request)
        if not self._offer_in_2xx or not request.body or self.local_sdp is None:
            return
        self._offer_in_2xx = False
        try:
            config = process_answer(self.local_sdp, parse_sdp(request.body), self.host.profile)
        except SdpError as exc:
            logger.warning("call %s: answer in ACK refused: %s", self.call_id, exc)
            self.refused_by = exc.policy
            self._spawn(self._bye(EndReason.ENCRYPTION_REFUSED), "bye")
            return
        if self._apply_media(config):
            self._emit(MediaUpdated(call_id=self.call_id, media=config))

    def receive_response(self, endpoint: SipEndpoint, response: SipResponse) -> None:
        """A response no request is waiting for: re-ACK a retransmitted 2xx to INVITE."""
        if response.cseq.method != "INVITE" or not 200 <= response.status_code < 300:
            return
        if self._ack is not None and self._ack[1].cseq.seq == response.cseq.seq:
            ack_endpoint, ack = self._ack
            with contextlib.suppress(SipError):
                ack_endpoint.send_request(ack)

    def _answer_offer_request(self, endpoint: SipEndpoint, tid: str, request: SipRequest) -> None:
        """Answer a re-INVITE or UPDATE: new media (same keys if unchanged), timer refresh."""
        if self.state is not CallState.CONFIRMED or (
            request.method == "INVITE" and self._invite_busy
        ):
            endpoint.send_response(tid, build_response(request, 491))  # glare (RFC 3261 14.2)
            return
        answer = config = None
        try:
            if request.body:
                answer, config = self._answer(parse_sdp(request.body))
            timer_headers = self.timer.answer(request, self._now()) if self.timer else []
        except RemoteProtocolError as exc:  # SDP refused, 422...: the old session stays (14.2)
            endpoint.send_response(
                tid, build_response(request, exc.status_code, exc.reason, headers=exc.headers)
            )
            return
        self._remote_allow = _allow(request) or self._remote_allow
        sdp = answer
        if answer is None and request.method == "INVITE":  # offerless: our offer in the 2xx
            sdp, self._offer_in_2xx = self.local_sdp, True
        self._respond_ok(endpoint, tid, request, timer_headers, sdp)
        if answer is not None and config is not None:
            self.local_sdp = answer
            if self._apply_media(config):
                self._emit(MediaUpdated(call_id=self.call_id, media=config))
        if self.timer is not None and self.timer.active:
            self._emit(
                SessionRefreshed(call_id=self.call_id, interval=self.timer.interval, by_us=False)
            )
        self._arm_timer()

    def _respond_ok(
        self,
        endpoint: SipEndpoint,
        tid: str,
        request: SipRequest,
        extra: list[tuple[str, str]],
        sdp: SdpSession | None,
    ) -> None:
        headers = [
            ("Contact", str(self.host.contact(endpoint))),
            ("Allow", ALLOW),
            ("Supported", "timer"),
            *extra,
        ]
        body = b""
        if sdp is not None:
            headers.append(("Content-Type", "application/sdp"))
            body = sdp.to_bytes()
        local_tag = self.dialog.id.local_tag if self.dialog else None
        response = build_response(request, 200, to_tag=local_tag, headers=headers, body=body)
        endpoint.send_response(tid, response)


def answer_challenge(
    auth: DigestClient | None, request: SipRequest, response: SipResponse, context: str
) -> list[tuple[str, str]] | None:
    """The credentials to re-send ``request`` with after ``response`` challenged it.

    Args:
        auth: the trunk's digest client (None: no credentials).
        request: the request that was answered.
        response: its response.
        context: who asks, for the log line (``call <id>``, ``trunk <name>``).

    Returns:
        ``(header name, value)`` pairs; None when ``response`` is no 401/407, there are no
        credentials, or the challenge cannot be answered (logged; credentials that were
        refused are not sent again).
    """
    header = _CHALLENGES.get(response.status_code)
    if header is None or auth is None:
        return None
    sent = request.headers.get_lines("Authorization") + request.headers.get_lines(
        "Proxy-Authorization"
    )
    try:
        return auth.answer(
            response.status_code,
            response.headers.get_lines(header),
            method=request.method,
            uri=str(request.uri),
            body=request.body,
            sent=sent,
        )
    except (AuthError, RemoteProtocolError) as exc:
        logger.warning("%s: cannot authenticate %s: %s", context, request.method, exc)
        return None


def _allow(message: SipRequest | SipResponse) -> frozenset[str]:
    """The methods a peer's Allow header lists (uppercase)."""
    return frozenset(m.strip().upper() for m in message.headers.get_all("Allow") if m.strip())
