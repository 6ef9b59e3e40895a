"""The browser side of calls: SIP dialogs over secure WebSocket on the trunk leg machinery.

Theory of operation: a browser's call leg is a SIP dialog like a carrier's, so it reuses the
gateway package's :class:`~sip_gateway.trunk.CallLeg` classes (dialogs, in-dialog requests,
CANCEL/BYE handling, 2xx retransmission and ACK) with a different host:

* :class:`BrowserHost` is the ``LegHost`` of one browser leg: its "next hop" is always the
  WebSocket connection the browser is on (RFC 7118 section 5: requests toward a browser go
  over its own connection), its media profile is DTLS-SRTP with our fingerprints, it never
  answers digest challenges and it has no session timer (JsSIP runs none with our config).
* A browser's INVITE becomes an :class:`~sip_gateway.trunk.InboundCall` after
  :func:`screen_browser_invite` (DTLS fingerprint present, ICE candidates bounded, an offer
  we can answer: 488 otherwise).
* Our INVITE to a registered browser is a :class:`BrowserInvite` (an ``OutboundCall``
  addressed to the binding's Contact instead of a trunk).
* :class:`BrowserDialogs` finds the leg of every in-dialog request, ACK, CANCEL and
  response that arrives on a browser connection.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sip_gateway.aio import SipEndpoint
from sip_gateway.sdp import (
    OPUS,
    PCMA,
    PCMU,
    CodecSpec,
    Fingerprint,
    IceParameters,
    KeySource,
    LocalMedia,
    MediaProfile,
    MediaSecurity,
    SdpError,
    SdpSession,
    answer_offer,
    parse_sdp,
)
from sip_gateway.sip.dialog import DialogId
from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.events import (
    AckReceived,
    CancelReceived,
    ResponseReceived,
    SipEvent,
)
from sip_gateway.sip.headers import NameAddr
from sip_gateway.sip.message import SipRequest, build_response
from sip_gateway.sip.uri import AbsoluteUri, SipUri
from sip_gateway.trunk import (
    CallerIdRules,
    CallLeg,
    InboundCall,
    MediaPort,
    OutboundCall,
    TrunkConfig,
)
from sip_gateway.trunk.outbound import out_of_dialog_request, uri_host

__all__ = [
    "BrowserDialogs",
    "BrowserHost",
    "BrowserInvite",
    "BrowserProfile",
    "screen_browser_invite",
]

log = logging.getLogger("bridge.call")

CODEC_SPECS: dict[str, CodecSpec] = {"opus": OPUS, "PCMU": PCMU, "PCMA": PCMA}
_PROBE_ICE = IceParameters(ufrag="probe", pwd="probe-" * 4)


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowserProfile:
    """Settings shared by every browser leg.

    Attributes:
        realm: our SIP domain (From/To host of requests to browsers).
        codecs: codec names accepted from browsers, in our order (``opus``, ``PCMU``, ``PCMA``).
        ring_timeout: seconds a browser may ring before we give up (inbound calls).
        max_remote_candidates: most ICE candidates accepted in one offer.
    """

    realm: str
    codecs: tuple[str, ...] = ("opus", "PCMU", "PCMA")
    ring_timeout: float = 60.0
    max_remote_candidates: int = 32

    def media_profile(self, fingerprints: tuple[Fingerprint, ...] = ()) -> MediaProfile:
        """The DTLS-SRTP profile of one browser leg."""
        return MediaProfile(
            security=MediaSecurity.DTLS,
            codecs=tuple(CODEC_SPECS[name] for name in self.codecs),
            telephone_event=True,
            rtcp_mux=True,
            fingerprints=fingerprints,
        )

    def trunk_config(self) -> TrunkConfig:
        """The leg settings the trunk machinery reads (no session timer, our domain)."""
        return TrunkConfig(
            name="browser",
            host=self.realm,
            from_domain=self.realm,
            session_timer=False,
            options_interval=None,
            ring_timeout=self.ring_timeout,
            caller_id=CallerIdRules(),
        )


class BrowserHost:
    """The ``LegHost`` (and ``OutboundHost``) of one browser leg."""

    timer_scale = 1.0

    def __init__(
        self,
        profile: BrowserProfile,
        endpoint: SipEndpoint,
        dialogs: BrowserDialogs,
        fingerprints: tuple[Fingerprint, ...],
    ) -> None:
        self.endpoint = endpoint
        self.config = profile.trunk_config()
        self.profile = profile.media_profile(fingerprints)
        self.key_source: KeySource = secrets.token_bytes  # unused: DTLS legs have no SDES keys
        self._dialogs = dialogs

    def token(self) -> str:
        """A fresh random token for tags, Call-IDs and session ids."""
        return secrets.token_hex(16)

    def contact(self, endpoint: SipEndpoint) -> NameAddr:
        """Our Contact on a WebSocket connection (RFC 7118 ``transport=ws``)."""
        host, port = endpoint.local
        return NameAddr(
            uri=SipUri(
                user="pstn-bridge", host=uri_host(host), port=port, params=(("transport", "ws"),)
            )
        )

    def digest_client(self) -> None:
        """Browsers never challenge us."""
        return None

    async def endpoint_for(
        self, target: SipUri | AbsoluteUri, fallback: SipEndpoint | None
    ) -> SipEndpoint:
        """Every request toward a browser goes over its own WebSocket."""
        return self.endpoint

    async def connect(self) -> SipEndpoint:
        """The browser's WebSocket (for :class:`BrowserInvite`)."""
        return self.endpoint

    def attach(self, leg: CallLeg) -> None:
        """Route the leg's in-dialog requests to it."""
        self._dialogs.attach(leg)

    def detach(self, leg: CallLeg) -> None:
        """The leg is over."""
        self._dialogs.detach(leg)


def screen_browser_invite(request: SipRequest, profile: BrowserProfile) -> SdpSession:
    """Check a browser's INVITE offer before anything else is done for it.

    Returns:
        the parsed offer.

    Raises:
        RemoteProtocolError: 400 (no Contact, malformed SDP), 488 (no SDP, no DTLS
            fingerprint, too many candidates, no common codec).
    """
    if not request.contacts:
        raise RemoteProtocolError("INVITE without Contact")
    if not request.body:
        raise SdpError("INVITE without SDP offer (delayed offer is not supported)")
    offer = parse_sdp(request.body)
    candidates = sum(
        1
        for media in offer.media
        for attribute in media.attributes
        if attribute.name == "candidate"
    )
    if candidates > profile.max_remote_candidates:
        raise SdpError(
            f"offer lists {candidates} ICE candidates (at most {profile.max_remote_candidates})"
        )
    probe = LocalMedia(address="127.0.0.1", port=9, session_id=0, ice=_PROBE_ICE)
    placeholder = Fingerprint(algorithm="sha-256", value=":".join(["00"] * 32))
    answer_offer(offer, profile.media_profile((placeholder,)), probe, key_source=bytes)
    return offer


class BrowserInvite(OutboundCall):
    """Our INVITE to one registered browser contact (an inbound call ringing it)."""

    def __init__(
        self,
        host: BrowserHost,
        *,
        user: str,
        contact: SipUri | AbsoluteUri,
        caller: str | None,
        media: MediaPort,
    ) -> None:
        super().__init__(host, number=user, caller=caller, media=media)
        self.user = user
        self.target = contact

    def _build_invite(
        self, endpoint: SipEndpoint, *, seq: int, extra: list[tuple[str, str]]
    ) -> SipRequest:
        realm = self.host.config.domain
        caller = self.caller
        uri = self.target if isinstance(self.target, SipUri) else SipUri(user=self.user, host=realm)
        invite = out_of_dialog_request(
            endpoint,
            "INVITE",
            uri=uri,
            from_addr=NameAddr(uri=SipUri(user=caller.from_user, host=realm)).with_tag(
                self._from_tag
            ),
            to=NameAddr(uri=SipUri(user=self.user, host=realm)),
            call_id=self.call_id,
            seq=seq,
            contact=self.host.contact(endpoint),
        )
        for name, value in extra:
            invite.headers.add(name, value)
        invite.headers.add("Content-Type", "application/sdp")
        assert self._offer is not None
        invite.body = self._offer.to_bytes()
        return invite


class BrowserDialogs:
    """Finds the call leg of whatever arrives on a browser connection."""

    def __init__(self) -> None:
        self._legs: dict[DialogId, CallLeg] = {}
        self._pending: dict[tuple[SipEndpoint, str], InboundCall] = {}
        self._outbound: dict[str, OutboundCall] = {}

    def __len__(self) -> int:
        return len(self._legs) + len(self._pending) + len(self._outbound)

    def attach(self, leg: CallLeg) -> None:
        """Route the leg's in-dialog requests to it (its dialog exists now)."""
        if leg.dialog is not None:
            self._legs[leg.dialog.id] = leg
        if isinstance(leg, InboundCall):
            self._pending.pop((leg.endpoint_or_fail, leg.transaction_id), None)

    def detach(self, leg: CallLeg) -> None:
        """Forget a leg that is over."""
        if leg.dialog is not None and self._legs.get(leg.dialog.id) is leg:
            del self._legs[leg.dialog.id]
        if isinstance(leg, InboundCall):
            self._pending.pop((leg.endpoint_or_fail, leg.transaction_id), None)
        if self._outbound.get(leg.call_id) is leg:
            del self._outbound[leg.call_id]

    def pending(self, call: InboundCall) -> None:
        """A browser's INVITE that is not answered yet (CANCEL finds it here)."""
        self._pending[(call.endpoint_or_fail, call.transaction_id)] = call

    def track(self, call: OutboundCall) -> None:
        """Our INVITE to a browser: its provisional responses are routed to it."""
        self._outbound[call.call_id] = call

    def leg_for(self, request: SipRequest) -> CallLeg | None:
        """The leg whose dialog ``request`` belongs to."""
        key = DialogId(request.call_id, request.to_addr.tag or "", request.from_addr.tag or "")
        return self._legs.get(key)

    def early_call(self, request: SipRequest) -> InboundCall | None:
        """The unanswered browser call whose early dialog ``request`` names."""
        for call in self._pending.values():
            invite = call.request
            if invite.call_id == request.call_id and invite.from_addr.tag == request.from_addr.tag:
                return call
        return None

    def handle(self, endpoint: SipEndpoint, event: SipEvent) -> bool:
        """Dispatch ACK, CANCEL and responses; True when the event was for a call."""
        if isinstance(event, AckReceived):
            leg = self.leg_for(event.request)
            if leg is not None:
                leg.receive_ack(event.request)
            return True
        if isinstance(event, CancelReceived):
            call = self._pending.get((endpoint, event.transaction_id))
            if call is not None:
                call.receive_cancel()
            return True
        if isinstance(event, ResponseReceived):
            response = event.response
            key = DialogId(
                response.call_id, response.from_addr.tag or "", response.to_addr.tag or ""
            )
            target = self._outbound.get(response.call_id) or self._legs.get(key)
            if target is not None:
                target.receive_response(endpoint, response)
            return True
        return False

    def in_dialog(self, endpoint: SipEndpoint, tid: str, request: SipRequest) -> CallLeg | None:
        """Hand an in-dialog request to its leg (481 when none; early BYE ends the call)."""
        leg = self.leg_for(request)
        if leg is not None:
            leg.receive_request(endpoint, tid, request)
            return leg
        if request.method == "BYE" and (early := self.early_call(request)) is not None:
            endpoint.send_response(tid, build_response(request, 200))
            early.receive_cancel()
            return None
        endpoint.send_response(tid, build_response(request, 481))
        return None

    def legs(self) -> list[CallLeg]:
        """Every leg known (for shutdown and counters)."""
        return [*self._legs.values(), *self._pending.values(), *self._outbound.values()]
