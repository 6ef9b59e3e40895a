"""Outbound calls through a trunk: INVITE with an SDES offer, until answered or failed.

Theory of operation: :class:`OutboundCall` runs one dialing task:

1. connect to the trunk (a TLS failure is :attr:`CallFailure.UNREACHABLE`);
2. send the INVITE with our ``RTP/SAVP`` offer (:func:`sip_gateway.sdp.build_offer`, fresh
   keys, suites in the trunk's order), caller ID per :class:`~.config.CallerIdRules` and
   session-timer headers; re-send it (new CSeq, same offer) once per 401/407 challenge
   and after a 422 that raised Min-SE, never in a loop;
3. provisional responses arrive through :meth:`OutboundCall.receive_response` (the
   gateway's handler): 180/183 are reported, and a 183 with SDP starts early media;
4. a 2xx creates the dialog, is ACKed, and its SDP answer is checked: without acceptable
   crypto the call is hung up at once (:attr:`CallFailure.ENCRYPTION_REFUSED`); other
   final responses map to a :class:`CallFailure` through
   :func:`~.errors.classify_status`.

:meth:`OutboundCall.cancel` may be called at any time before the answer: the CANCEL goes
out once the INVITE has a provisional response (RFC 3261 9.1) and a 2xx that races it is
ACKed and hung up with BYE. The ring timeout cancels with NO_ANSWER. ``answered``
resolves (or fails with :class:`~.errors.CallFailedError`) as soon as the outcome is known;
``ended`` resolves when the signaling is finished.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from sip_gateway.aio import SipEndpoint, SipTransportError
from sip_gateway.sdp import (
    MediaConfig,
    SdpError,
    SdpParseError,
    SdpSession,
    build_offer,
    parse_sdp,
    process_answer,
)
from sip_gateway.sip.dialog import Dialog
from sip_gateway.sip.errors import RemoteProtocolError, SipError
from sip_gateway.sip.headers import Headers, NameAddr
from sip_gateway.sip.message import SipRequest, SipResponse
from sip_gateway.sip.transaction import build_cancel
from sip_gateway.sip.uri import SipUri

from .config import TrunkConfig
from .errors import CallFailedError, CallFailure, EndReason, InvalidNumberError, classify_status
from .leg import ALLOW, CallLeg, EventCallback, LegHost, _allow, answer_challenge
from .state import (
    CallAnswered,
    CallInput,
    CallProceeding,
    CallRinging,
    CallState,
    EarlyMediaStarted,
    MediaPort,
)

__all__ = [
    "CallerPresentation",
    "OutboundCall",
    "OutboundHost",
    "out_of_dialog_request",
    "present_caller",
    "uri_host",
]

logger = logging.getLogger("sip_gateway.trunk")

MAX_RETRIES = 3
"""INVITEs re-sent after 401/407/422 at most (one per challenge is the normal case)."""
CANCEL_TIMEOUT = 10.0
"""Seconds a CANCEL may wait for its own response."""
_RINGING = (180, 181, 182, 183)


class OutboundHost(LegHost, Protocol):
    """A :class:`LegHost` that can also dial its trunk."""

    async def connect(self) -> SipEndpoint:
        """The connection to the trunk's SBC (made or reused).

        Raises:
            SipConnectError: TCP or TLS failed.
        """


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerPresentation:
    """How our calling number goes on the wire."""

    from_user: str
    from_host: str
    asserted: str | None
    """The number for P-Asserted-Identity, or None."""
    private: bool
    """Send ``Privacy: id``."""


def present_caller(config: TrunkConfig, caller: str | None) -> CallerPresentation:
    """Apply the trunk's caller-ID rules to the caller's number (None: unknown)."""
    rules = config.caller_id
    number = None
    if caller:
        try:
            number = config.normalize(caller)
        except InvalidNumberError:
            logger.info("caller id %r does not normalise; using the default", caller[:40])
    if number and rules.allowed_prefixes and not number.startswith(rules.allowed_prefixes):
        number = None
    if number is None and rules.default_caller_id:
        number = config.normalize(rules.default_caller_id)
    asserted = number if rules.asserted_identity else None
    if rules.anonymous:
        return CallerPresentation(
            from_user="anonymous", from_host="anonymous.invalid", asserted=asserted, private=True
        )
    user = rules.from_user or number or "anonymous"
    return CallerPresentation(
        from_user=user, from_host=config.domain, asserted=asserted, private=False
    )


def uri_host(host: str) -> str:
    """A host for a URI: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def out_of_dialog_request(
    endpoint: SipEndpoint,
    method: str,
    *,
    uri: SipUri,
    from_addr: NameAddr,
    to: NameAddr,
    call_id: str,
    seq: int,
    contact: NameAddr,
) -> SipRequest:
    """A request outside any dialog (INVITE, OPTIONS, REGISTER) with the common headers.

    Via (of ``endpoint``), Max-Forwards, From (``from_addr``, tagged), To, Call-ID, CSeq,
    Contact and Allow, in that order; callers add the rest and the body.
    """
    headers = Headers()
    headers.add("Via", str(endpoint.make_via()))
    headers.add("Max-Forwards", "70")
    headers.add("From", str(from_addr))
    headers.add("To", str(to))
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{seq} {method}")
    headers.add("Contact", str(contact))
    headers.add("Allow", ALLOW)
    return SipRequest(method=method, uri=uri, headers=headers)


class OutboundCall(CallLeg):
    """One outbound call (see the module docstring); create with ``Trunk.call``."""

    direction = "outbound"

    def __init__(
        self,
        host: OutboundHost,
        *,
        number: str,
        caller: str | None,
        media: MediaPort,
        on_event: EventCallback | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(host, call_id=host.token(), media=media, on_event=on_event)
        self.dialer = host
        self.number = number
        """The called number, E.164."""
        self.caller = present_caller(host.config, caller)
        self.answered: asyncio.Future[MediaConfig] = self._loop.create_future()
        """Resolves with the media config on answer, or fails with CallFailedError."""
        self.answered.add_done_callback(_retrieve)
        self.invite: SipRequest | None = None
        """The last INVITE sent."""
        self.invites_sent = 0
        self.provisional: list[int] = []
        """Status codes of the 1xx responses received, in order."""
        self.response: SipResponse | None = None
        """The final response to the INVITE."""
        self._from_tag = host.token()[:12]
        self._headers = headers
        self._offer: SdpSession | None = None
        self._early: MediaConfig | None = None
        self._cancel_failure: CallFailure | None = None
        self._cancel_sent = False
        self._proceeding_seq: int | None = None
        self._ring_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start dialing (the trunk calls this once)."""
        self._spawn(self._run(), "dial")

    async def wait_answered(self) -> MediaConfig:
        """Wait for the answer (bound it with ``asyncio.timeout``).

        Raises:
            CallFailedError: the call failed or was cancelled (``failure`` says why).
        """
        return await asyncio.shield(self.answered)

    # -- giving up -------------------------------------------------------------------

    def cancel(self, failure: CallFailure = CallFailure.CANCELLED) -> None:
        """Give up before the answer; a no-op once answered or ended.

        ``answered`` fails at once with ``failure``; the CANCEL (and, if a 2xx races it,
        ACK and BYE) follow in the background.
        """
        if self.state not in (CallState.CALLING, CallState.PROCEEDING):
            return
        self._cancel_failure = failure
        self._resolve_failure(
            failure, 487, "cancelled" if failure is CallFailure.CANCELLED else str(failure)
        )
        proceeding = self._proceeding_seq is not None and self.invite is not None
        self._advance(CallInput.CANCEL)
        if proceeding:
            self._send_cancel()

    async def hangup(self) -> None:
        """Cancel an unanswered call or BYE an answered one; returns once it ended."""
        if self.state in (CallState.CALLING, CallState.PROCEEDING):
            self.cancel()
        await super().hangup()

    def _send_cancel(self) -> None:
        if self._cancel_sent or self.invite is None or self.endpoint is None:
            return
        self._cancel_sent = True
        endpoint, cancel = self.endpoint, build_cancel(self.invite)
        logger.info("call %s: sending CANCEL (%s)", self.call_id, self._cancel_failure)

        async def send() -> None:
            try:
                await endpoint.request(cancel, timeout=CANCEL_TIMEOUT)
            except SipError as exc:
                logger.info("call %s: CANCEL got no answer: %s", self.call_id, exc)

        self._spawn(send(), "cancel")

    # -- dialing ---------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            endpoint = await self.dialer.connect()
        except SipTransportError as exc:
            self._fail(CallFailure.UNREACHABLE, exc.status_code, str(exc))
            return
        self.endpoint = endpoint
        if self._cancel_failure is not None:
            self._fail(self._cancel_failure, 487, "cancelled before dialing")
            return
        profile, keys = self.host.profile, self.host.key_source
        self._offer = self.local_sdp = build_offer(profile, self._local_media(), key_source=keys)
        ring = self.host.config.ring_timeout
        self._ring_timer = self._call_later(ring, lambda: self.cancel(CallFailure.NO_ANSWER))
        try:
            await self._dial(endpoint)
        finally:
            self._ring_timer.cancel()

    async def _dial(self, endpoint: SipEndpoint) -> None:
        invite = self._build_invite(endpoint, seq=1, extra=[])
        for _round in range(MAX_RETRIES + 1):
            self.invite = invite
            self.invites_sent += 1
            try:
                response = await endpoint.request(invite)
            except SipTransportError as exc:
                failure = self._cancel_failure or CallFailure.UNREACHABLE
                self._fail(failure, exc.status_code, str(exc))
                return
            if 200 <= response.status_code < 300:
                await self._confirm(endpoint, invite, response)
                return
            retry = None if self._cancel_failure else self._retry_headers(invite, response)
            if retry is None:
                break
            invite = self._build_invite(endpoint, seq=invite.cseq.seq + 1, extra=retry)
        self.response = response
        code = response.status_code
        failure = self._cancel_failure or classify_status(code)
        self._fail(failure, code, response.reason)

    def _retry_headers(
        self, invite: SipRequest, response: SipResponse
    ) -> list[tuple[str, str]] | None:
        """Headers for a re-sent INVITE after 401/407 or 422; None when not to retry."""
        code = response.status_code
        if code == 422 and self.timer is not None and self.timer.handle_too_small(response):
            return self._auth.authorize(method="INVITE", uri=str(invite.uri)) if self._auth else []
        context = f"call {self.call_id} on {self.host.config.name}"
        return answer_challenge(self._auth, invite, response, context)

    def _build_invite(
        self, endpoint: SipEndpoint, *, seq: int, extra: list[tuple[str, str]]
    ) -> SipRequest:
        config = self.host.config
        target = SipUri(
            user=self.number,
            host=uri_host(config.host),
            port=config.port,
            params=(("transport", "tls"),),
        )
        caller = self.caller
        local = NameAddr(uri=SipUri(user=caller.from_user, host=uri_host(caller.from_host)))
        invite = out_of_dialog_request(
            endpoint,
            "INVITE",
            uri=target,
            from_addr=local.with_tag(self._from_tag),
            to=NameAddr(uri=SipUri(user=self.number, host=uri_host(config.host))),
            call_id=self.call_id,
            seq=seq,
            contact=self.host.contact(endpoint),
        )
        headers = invite.headers
        for name, value in self.timer.request_headers() if self.timer else []:
            headers.add(name, value)
        if caller.asserted is not None:
            headers.add("P-Asserted-Identity", f"<sip:{caller.asserted}@{uri_host(config.domain)}>")
        if caller.private:
            headers.add("Privacy", "id")
        for name, value in (*self._headers, *extra):
            headers.add(name, value)
        headers.add("Content-Type", "application/sdp")
        assert self._offer is not None
        invite.body = self._offer.to_bytes()
        return invite

    # -- responses -------------------------------------------------------------------

    def receive_response(self, endpoint: SipEndpoint, response: SipResponse) -> None:
        """A provisional response, or a 2xx no request waits for (retransmission, fork)."""
        invite = self.invite
        if self.end is not None or invite is None or response.cseq.method != "INVITE":
            return
        if response.cseq.seq != invite.cseq.seq:
            super().receive_response(endpoint, response)
        elif response.status_code < 200:
            self._provisional(response)
        elif self.dialog is not None and response.to_addr.tag != self.dialog.id.remote_tag:
            self._spawn(self._drop_fork(response), "drop fork")
        else:
            super().receive_response(endpoint, response)

    def _provisional(self, response: SipResponse) -> None:
        code = response.status_code
        assert self.invite is not None
        self.provisional.append(code)
        self._proceeding_seq = self.invite.cseq.seq
        self._advance(CallInput.PROVISIONAL)
        if self.state is CallState.CANCELLING:
            self._send_cancel()
            return
        if code in _RINGING and response.body and self._early is None:
            try:
                assert self._offer is not None
                config = process_answer(self._offer, parse_sdp(response.body), self.host.profile)
            except SdpError as exc:
                logger.warning("call %s: early media answer refused: %s", self.call_id, exc)
                self.refused_by = exc.policy
                self.cancel(CallFailure.ENCRYPTION_REFUSED)
                return
            self._early = config
            self._apply_media(config)
            self._emit(EarlyMediaStarted(call_id=self.call_id, media=config))
        if code in _RINGING:
            self._emit(
                CallRinging(
                    call_id=self.call_id, status_code=code, early_media=self._early is not None
                )
            )
        else:
            self._emit(CallProceeding(call_id=self.call_id, status_code=code))

    async def _confirm(
        self, endpoint: SipEndpoint, invite: SipRequest, response: SipResponse
    ) -> None:
        self.response = response
        try:
            self.dialog = Dialog.for_uac(
                invite, response, local_contact=self.host.contact(endpoint)
            )
        except RemoteProtocolError as exc:  # no To tag or Contact: we cannot even ACK it
            self._fail(CallFailure.REJECTED, response.status_code, f"unusable 2xx: {exc}")
            return
        self.host.attach(self)
        self._remote_allow = _allow(response)
        await self._ack_2xx(endpoint, invite)
        if self._cancel_failure is not None:  # the 2xx raced our CANCEL
            self._advance(CallInput.ANSWERED)
            failure = self._cancel_failure
            await self._bye(self._end_reason(failure), failure=failure, status_code=487)
            return
        try:
            config = self._answer_config(response)
        except SdpError as exc:
            failure = (
                CallFailure.REJECTED
                if isinstance(exc, SdpParseError)
                else CallFailure.ENCRYPTION_REFUSED
            )
            logger.warning("call %s: SDP answer refused: %s", self.call_id, exc)
            self.refused_by = exc.policy
            self._resolve_failure(failure, exc.status_code, str(exc))
            self._advance(CallInput.ANSWERED)
            await self._bye(self._end_reason(failure), failure=failure, status_code=exc.status_code)
            return
        self._advance(CallInput.ANSWERED)
        self._apply_media(config)
        self._start_timer(response)
        self._emit(CallAnswered(call_id=self.call_id, media=config))
        if not self.answered.done():
            self.answered.set_result(config)

    async def _ack_2xx(self, endpoint: SipEndpoint, invite: SipRequest) -> None:
        try:
            target = await self._next_hop()
        except (SipError, OSError):
            target = endpoint
        self._send_ack(target, invite)

    def _answer_config(self, response: SipResponse) -> MediaConfig:
        assert self._offer is not None
        if response.body:
            return process_answer(self._offer, parse_sdp(response.body), self.host.profile)
        if self._early is not None:
            return self._early
        raise SdpError("the 2xx carries no SDP answer")

    def _start_timer(self, response: SipResponse) -> None:
        if self.timer is None:
            return
        try:
            self.timer.handle_success(response, self._now())
        except RemoteProtocolError:
            self.timer.stop()
        self._arm_timer()

    async def _drop_fork(self, response: SipResponse) -> None:
        """A 2xx from a second fork: ACK it and hang that dialog up at once."""
        assert self.invite is not None
        try:
            stray = Dialog.for_uac(self.invite, response)
            endpoint = await self.host.endpoint_for(stray.remote_target, self.endpoint)
            endpoint.send_request(stray.create_ack(self.invite.cseq.seq, via=endpoint.make_via()))
            await endpoint.request(
                stray.create_request("BYE", via=endpoint.make_via()), timeout=5.0
            )
        except (SipError, OSError) as exc:
            logger.info("call %s: could not drop a forked answer: %s", self.call_id, exc)

    # -- outcomes --------------------------------------------------------------------

    @staticmethod
    def _end_reason(failure: CallFailure) -> EndReason:
        if failure is CallFailure.CANCELLED:
            return EndReason.CANCELLED
        if failure is CallFailure.ENCRYPTION_REFUSED:
            return EndReason.ENCRYPTION_REFUSED
        return EndReason.FAILED

    def _resolve_failure(self, failure: CallFailure, status_code: int, reason: str) -> None:
        if self.answered.done():
            return
        config = self.host.config
        error = CallFailedError(
            f"call to {self.number} via {config.name}: {failure} ({status_code} {reason})",
            failure=failure,
            status_code=status_code,
            reason=reason,
        )
        self.answered.set_exception(error)

    def _fail(self, failure: CallFailure, status_code: int, reason: str) -> None:
        self._resolve_failure(failure, status_code, reason)
        self._advance(CallInput.FAILED)
        self._finish(self._end_reason(failure), failure=failure, status_code=status_code)


def _retrieve(future: asyncio.Future[MediaConfig]) -> None:
    """Mark a failed ``answered`` as seen: nobody has to await it."""
    if not future.cancelled():
        future.exception()
