"""A packet-level "browser" for tests and the call benchmark: SIP over WSS plus DTLS-SRTP.

Theory of operation
-------------------
:class:`WebRtcClient` does what JsSIP in Chromium does toward the bridge, on the project's
own pieces and with almost no CPU per packet:

* Signaling: a :class:`~sip_gateway.aio.SipEndpoint` over :class:`ClientWebSocketWire`
  (aiohttp's client WebSocket with the ``sip`` subprotocol, RFC 7118); digest answers
  come from :class:`~sip_gateway.sip.auth.DigestClient` through the trunk's
  :func:`~sip_gateway.trunk.leg.answer_challenge` (401 on REGISTER, 407 on INVITE).
  :meth:`WebRtcClient.register` checks that the 200 echoes our Contact;
  :meth:`WebRtcClient.dial` sends an INVITE whose SDP comes from
  :func:`~sip_gateway.sdp.build_offer` (DTLS profile, ``a=setup:actpass``, our ICE
  candidates and fingerprints from a :class:`~bridge.media.webrtc_leg.WebRtcLeg`; the
  offer also lists ``telephone-event/48000`` next to Opus, as Chromium does). Incoming
  INVITEs (a carrier calling the user's DID) wait in a queue for
  :meth:`ClientCall.answer` or :meth:`ClientCall.decline`. In-dialog INFO requests are
  answered 200 and kept (the security records parsed), BYE ends the call.
* Media: the :class:`~bridge.media.webrtc_leg.WebRtcLeg` runs ICE and DTLS (we control ICE
  when we offer). One shared 20 ms clock per event loop (:class:`~tests.webrtc_rtp.Ticker`)
  sends, for every call, the next payload of its :class:`PacketSource` (pre-encoded Opus or
  G.711) through our own :class:`~sip_gateway.media.rtp.RtpPacketizer`; RFC 4733 digits replace
  audio packets while they last. Every received packet is recorded (:class:`Reception`:
  arrival time, sequence, timestamp, payload type, optionally the payload).

Nothing here asserts: tests and the benchmark read the facts (statuses, records, digits,
packets) and judge them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bridge.media.webrtc_leg import WebRtcLeg, WebRtcLegConfig
from sip_gateway.aio import SipEndpoint, SipEndpointConfig
from sip_gateway.media.dtmf import DtmfSender
from sip_gateway.media.rtp import RtpPacketizer
from sip_gateway.sdp import (
    OPUS,
    PCMA,
    PCMU,
    LocalMedia,
    MediaConfig,
    MediaProfile,
    MediaSecurity,
    SdpSession,
    answer_offer,
    build_offer,
    parse_sdp,
    process_answer,
)
from sip_gateway.sip.auth import DigestAccount, DigestClient
from sip_gateway.sip.dialog import Dialog, DialogId
from sip_gateway.sip.events import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimedOut,
)
from sip_gateway.sip.headers import NameAddr
from sip_gateway.sip.message import SipRequest, SipResponse, build_response
from sip_gateway.sip.transaction import build_cancel
from sip_gateway.sip.uri import SipUri
from sip_gateway.trunk.leg import answer_challenge
from sip_gateway.trunk.outbound import out_of_dialog_request

from .sip_ws_client import ClientWebSocketWire
from .webrtc_rtp import PacketSource, Reception, ticker

__all__ = [
    "SECURITY_TYPE",
    "ClientCall",
    "ClientConfig",
    "DialFailedError",
    "PacketSource",
    "Reception",
    "WebRtcClient",
]

SECURITY_TYPE = "application/vnd.pstn-bridge.security+json"
_CODECS = {"opus": OPUS, "PCMU": PCMU, "PCMA": PCMA}
_EVENT_48K_PT = 110


class DialFailedError(Exception):
    """The call was refused or failed before the answer; ``status`` is the final status."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Who the client is and where the bridge is.

    Attributes:
        url: the bridge's SIP WebSocket (``wss://127.0.0.1:8443/sip``).
        ssl: the TLS context that trusts the bridge's certificate.
        user: the SIP user name.
        password: its password (never shown).
        domain: the SIP domain (the bridge's realm): host of our AOR and of dialled URIs.
        codecs: the codecs of our offers and answers, in order.
        ice_address: the address our ICE host candidate binds.
        keep_payloads: keep every received payload (for decoding afterwards).
        connect_timeout: seconds for ICE plus DTLS.
    """

    url: str
    ssl: ssl.SSLContext = field(repr=False)
    user: str
    password: str = field(repr=False)
    domain: str = "pstn-bridge"
    codecs: tuple[str, ...] = ("opus", "PCMU")
    ice_address: str = "127.0.0.1"
    keep_payloads: bool = True
    connect_timeout: float = 10.0

    def profile(self, leg: WebRtcLeg, codecs: tuple[str, ...] | None = None) -> MediaProfile:
        """The DTLS-SRTP media profile of one call, with ``leg``'s fingerprints."""
        return MediaProfile(
            security=MediaSecurity.DTLS,
            codecs=tuple(_CODECS[c] for c in (codecs or self.codecs)),
            telephone_event=True,
            rtcp_mux=True,
            fingerprints=leg.fingerprints,
        )


# -- calls --------------------------------------------------------------------------------


class ClientCall:
    """One call of the client, outgoing (:meth:`WebRtcClient.dial`) or incoming."""

    def __init__(self, client: WebRtcClient, *, direction: str, codecs: tuple[str, ...]) -> None:
        self.client = client
        self.direction = direction
        self.codecs = codecs
        self.provisional: list[int] = []
        self.status: int | None = None
        self.reason = ""
        self.infos: list[tuple[str, bytes]] = []
        self.security_records: list[dict[str, Any]] = []
        self.reception = Reception(keep_payloads=client.config.keep_payloads)
        self.source: PacketSource | None = None
        self.config: MediaConfig | None = None
        self.dialog: Dialog | None = None
        self.leg: WebRtcLeg | None = None
        self.request: SipRequest | None = None  # our INVITE, or the one we received
        self.transaction_id: str | None = None  # incoming: the INVITE's server transaction
        self.ended_by: str | None = None
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[Any] = loop.create_future()
        self._answered: asyncio.Future[None] = loop.create_future()
        for future in (self.connected, self._answered):
            future.add_done_callback(_retrieve)  # a failure nobody awaited is no warning
        self._ended = asyncio.Event()
        self._packetizer: RtpPacketizer | None = None
        self._dtmf: deque[bytes] = deque()
        self._offer: SdpSession | None = None
        self._profile: MediaProfile | None = None
        self._local_tag = secrets.token_hex(6)
        self._ack: SipRequest | None = None
        self._cancelled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<ClientCall {self.direction} status={self.status} ended={self.ended_by}>"

    # -- set-up ---------------------------------------------------------------------------

    async def _new_leg(self, *, controlling: bool) -> WebRtcLeg:
        config = WebRtcLegConfig(
            host_addresses=(self.client.config.ice_address,),
            connect_timeout=self.client.config.connect_timeout,
        )
        leg = await WebRtcLeg.create(
            config,
            on_rtp=self.reception.add,
            on_rtcp=self.reception.add,
            controlling=controlling,
        )
        self.leg = leg
        return leg

    def _local(self, leg: WebRtcLeg) -> LocalMedia:
        address, port = leg.default_address
        return LocalMedia(
            address=address, port=port, session_id=secrets.randbelow(1 << 40), ice=leg.local_ice
        )

    def _start_media(self, config: MediaConfig, *, controlling: bool) -> None:
        self.config = config
        codec = config.codec
        rng = secrets.SystemRandom()
        self._packetizer = RtpPacketizer(
            rng.getrandbits(32),
            codec.payload_type,
            codec.clock_rate,
            rng.getrandbits(16),
            rng.getrandbits(32),
        )
        self._spawn(self._connect(config, controlling))

    async def _connect(self, config: MediaConfig, controlling: bool) -> None:
        assert self.leg is not None
        try:
            facts = await self.leg.connect(config, controlling=controlling)
        except Exception as exc:
            if not self.connected.done():
                self.connected.set_exception(exc)
            return
        if not self.connected.done():
            self.connected.set_result(facts)
        ticker().add(self)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- outgoing -------------------------------------------------------------------------

    async def _invite(self, number: str, offer_hook: Callable[[SdpSession], None] | None) -> None:
        leg = await self._new_leg(controlling=True)
        self._profile = self.client.config.profile(leg, self.codecs)
        offer = build_offer(self._profile, self._local(leg), key_source=secrets.token_bytes)
        if "opus" in self.codecs:
            _add_event_48k(offer)
        if offer_hook is not None:
            offer_hook(offer)
        self._offer = offer
        self._send_invite(self._invite_request(number, secrets.token_hex(10), 1, ()))

    def _invite_request(
        self, number: str, call_id: str, seq: int, auth: Sequence[tuple[str, str]]
    ) -> SipRequest:
        client = self.client
        domain = client.config.domain
        assert self._offer is not None
        request = out_of_dialog_request(
            client.endpoint,
            "INVITE",
            uri=SipUri(user=number, host=domain),
            from_addr=NameAddr(uri=SipUri(user=client.config.user, host=domain)).with_tag(
                self._local_tag
            ),
            to=NameAddr(uri=SipUri(user=number, host=domain)),
            call_id=call_id,
            seq=seq,
            contact=client.contact,
        )
        for name, value in auth:
            request.headers.add(name, value)
        request.headers.add("Content-Type", "application/sdp")
        request.body = self._offer.to_bytes()
        return request

    def _send_invite(self, request: SipRequest) -> None:
        """Send (or re-send with credentials) our INVITE; responses come to :meth:`_response`."""
        self.request = request
        self.client._by_call_id[request.call_id] = self
        self.transaction_id = self.client.endpoint.send_request(request)

    def _challenged(self, response: SipResponse) -> bool:
        """Re-send the INVITE with credentials after a 401/407; False when we cannot."""
        request = self.request
        assert request is not None
        if self._cancelled or request.cseq.seq > 1:
            return False
        auth = answer_challenge(self.client.digest, request, response, "client")
        uri = request.uri
        if auth is None or not isinstance(uri, SipUri) or uri.user is None:
            return False
        self._send_invite(self._invite_request(uri.user, request.call_id, 2, auth))
        return True

    def _final(self, response: SipResponse) -> None:
        assert self.request is not None
        code = response.status_code
        self.status, self.reason = code, response.reason
        if code >= 300:
            self._fail(code, response.reason)
            return
        self.dialog = Dialog.for_uac(self.request, response, local_contact=self.client.contact)
        self.client.dialogs[self.dialog.id] = self
        self._send_ack()
        if self._cancelled:
            self._spawn(self.hangup())
            return
        try:
            assert self._offer is not None and self._profile is not None
            config = process_answer(self._offer, parse_sdp(response.body), self._profile)
        except Exception as exc:
            self._answered.set_exception(DialFailedError(488, f"bad answer: {exc}"))
            self._spawn(self.hangup())
            return
        self._start_media(config, controlling=True)
        self._answered.set_result(None)

    def _send_ack(self) -> None:
        assert self.dialog is not None and self.request is not None
        self._ack = self.dialog.create_ack(
            self.request.cseq.seq, via=self.client.endpoint.make_via()
        )
        with contextlib.suppress(Exception):
            self.client.endpoint.send_request(self._ack)

    def _fail(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        if not self._answered.done():
            self._answered.set_exception(DialFailedError(status, reason))
        self._end(f"failed {status}")

    def cancel(self) -> None:
        """CANCEL our pending INVITE (the final response becomes 487)."""
        self._cancelled = True
        if self.request is not None and self.dialog is None:
            with contextlib.suppress(Exception):
                self.client.endpoint.send_request(build_cancel(self.request))

    # -- incoming -------------------------------------------------------------------------

    def _ring(self, tid: str, request: SipRequest) -> None:
        self.request, self.transaction_id = request, tid
        self.client.endpoint.send_response(
            tid, build_response(request, 180, to_tag=self._local_tag)
        )

    async def answer(self) -> None:
        """Answer the incoming call (200 with our DTLS-SRTP answer), then run ICE/DTLS."""
        assert self.request is not None and self.transaction_id is not None
        leg = await self._new_leg(controlling=False)
        profile = self.client.config.profile(leg, self.codecs)
        answer, config = answer_offer(
            parse_sdp(self.request.body), profile, self._local(leg), key_source=secrets.token_bytes
        )
        response = build_response(
            self.request,
            200,
            to_tag=self._local_tag,
            headers=(("Contact", str(self.client.contact)), ("Content-Type", "application/sdp")),
            body=answer.to_bytes(),
        )
        self.client.endpoint.send_response(self.transaction_id, response)
        self.status = 200
        self.dialog = Dialog.for_uas(self.request, response, local_contact=self.client.contact)
        self.client.dialogs[self.dialog.id] = self
        self._start_media(config, controlling=False)
        self._answered.set_result(None)

    def decline(self, status: int = 603) -> None:
        """Refuse the incoming call with ``status``."""
        assert self.request is not None and self.transaction_id is not None
        self.client.endpoint.send_response(
            self.transaction_id, build_response(self.request, status, to_tag=self._local_tag)
        )
        self._fail(status, "declined by us")

    def _cancelled_by_peer(self) -> None:
        if self.transaction_id is not None and self.request is not None and self.dialog is None:
            with contextlib.suppress(Exception):
                self.client.endpoint.send_response(
                    self.transaction_id, build_response(self.request, 487, to_tag=self._local_tag)
                )
        self._fail(487, "cancelled by the caller")

    # -- in the dialog --------------------------------------------------------------------

    def _in_dialog(self, tid: str, request: SipRequest) -> None:
        assert self.dialog is not None
        with contextlib.suppress(Exception):
            self.dialog.receive_request(request)
        endpoint = self.client.endpoint
        endpoint.send_response(tid, build_response(request, 200))
        if request.method == "INFO":
            kind = (request.headers.get("Content-Type") or "").split(";")[0].strip()
            self.infos.append((kind, request.body))
            if kind == SECURITY_TYPE:
                with contextlib.suppress(ValueError):
                    self.security_records.append(json.loads(request.body))
        elif request.method == "BYE":
            self._end("remote BYE")

    def _response(self, tid: str, response: SipResponse) -> None:
        if response.cseq.method != "INVITE" or self.direction != "outgoing":
            return
        code = response.status_code
        if code < 200:
            self.provisional.append(code)
        elif self.dialog is not None:
            if code < 300 and self._ack is not None:
                with contextlib.suppress(Exception):
                    self.client.endpoint.send_request(self._ack)  # a 2xx retransmission
        elif tid == self.transaction_id and not (code in (401, 407) and self._challenged(response)):
            self._final(response)

    def _timed_out(self, tid: str) -> None:
        if tid == self.transaction_id and self.dialog is None:
            self._fail(408, "no final response")

    # -- media control --------------------------------------------------------------------

    def play(self, source: PacketSource) -> None:
        """Send ``source`` from the next tick on (replaces what was playing)."""
        self.source = source

    def tick(self) -> None:
        """One 20 ms step: a DTMF packet or the next audio payload."""
        leg, packetizer = self.leg, self._packetizer
        if leg is None or packetizer is None or leg.state != "connected":
            return
        if self._dtmf:
            leg.send_rtp(self._dtmf.popleft())
            return
        source = self.source
        if source is None:
            return
        payload = source.next_payload()
        if payload is None:
            return
        samples = packetizer.clock_rate // 50
        if source.keep_times:  # stamped before SRTP and sendto: the bridge's clock starts here
            source.send_log.append((packetizer.sequence, time.perf_counter()))
        leg.send_rtp(packetizer.packet_bytes(payload, samples))

    def send_dtmf_rtp(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 packets for ``digits`` (one per tick, in place of audio)."""
        config, packetizer = self.config, self._packetizer
        if config is None or packetizer is None or config.telephone_event is None:
            raise RuntimeError("no telephone-event negotiated")
        event = config.telephone_event
        sender = DtmfSender(event.payload_type, event.clock_rate, config.ptime)
        for digit in digits:
            self._dtmf.extend(
                p.serialize() for p in sender.packets(digit, packetizer, duration_ms=duration_ms)
            )
            packetizer.advance(event.clock_rate * 60 // 1000)  # a short pause between digits

    async def send_dtmf_info(self, digit: str, duration_ms: int = 160) -> int:
        """Send one digit as SIP INFO ``application/dtmf-relay``; returns the status."""
        body = f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode()
        return await self.send_info("application/dtmf-relay", body)

    async def send_info(self, content_type: str, body: bytes) -> int:
        """Send an in-dialog INFO; returns the final status."""
        assert self.dialog is not None
        endpoint = self.client.endpoint
        request = self.dialog.create_request(
            "INFO", via=endpoint.make_via(), headers=(("Content-Type", content_type),), body=body
        )
        response = await endpoint.request(request, timeout=5)
        return response.status_code

    # -- waiting and ending ---------------------------------------------------------------

    async def wait_answered(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109 - a test helper's bound
        """Wait for the 200 (outgoing) or our answer (incoming).

        Raises:
            DialFailedError: the final status was not 2xx.
            TimeoutError: nothing final within ``timeout``.
        """
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._answered)

    @property
    def ssrc(self) -> int | None:
        """Our RTP SSRC toward the bridge (None before the media config)."""
        return None if self._packetizer is None else self._packetizer.ssrc

    async def wait_media(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a test helper's bound
        """Wait until ICE and DTLS are up (raises the leg's error when they fail)."""
        async with asyncio.timeout(timeout):
            await asyncio.shield(self.connected)

    async def wait_ended(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a test helper's bound
        """Wait until the call is over."""
        async with asyncio.timeout(timeout):
            await self._ended.wait()

    @property
    def ended(self) -> bool:
        """Whether the call is over."""
        return self._ended.is_set()

    async def hangup(self) -> int | None:
        """BYE (or CANCEL before the answer); returns the BYE's status."""
        if self.dialog is None:
            self.cancel()
            return None
        if self.ended:
            return None
        endpoint = self.client.endpoint
        status = None
        with contextlib.suppress(Exception):
            bye = self.dialog.create_request("BYE", via=endpoint.make_via())
            status = (await endpoint.request(bye, timeout=5)).status_code
        self._end("local BYE")
        return status

    def _end(self, why: str) -> None:
        if self._ended.is_set():
            return
        self.ended_by = why
        self._ended.set()
        ticker().remove(self)
        if not self._answered.done():
            self._answered.set_exception(DialFailedError(self.status or 500, why))
        if self.dialog is not None:
            self.client.dialogs.pop(self.dialog.id, None)
        if self.leg is not None:
            self._closer = asyncio.get_running_loop().create_task(self.leg.close())

    async def aclose(self) -> None:
        """End the call locally (no signaling) and wait for its tasks."""
        self._end(self.ended_by or "closed")
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)
        if self.leg is not None:
            await self.leg.close()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _add_event_48k(offer: SdpSession) -> None:
    """Offer ``telephone-event/48000`` too, as Chromium does next to Opus."""
    media = offer.media[0]
    media.formats.append(str(_EVENT_48K_PT))
    media.add_attribute("rtpmap", f"{_EVENT_48K_PT} telephone-event/48000")
    media.add_attribute("fmtp", f"{_EVENT_48K_PT} 0-15")


# -- the client ---------------------------------------------------------------------------


class WebRtcClient:
    """A browser toward the bridge (see the module docstring). Use ``async with``."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.digest = DigestClient(
            DigestAccount(username=config.user, password=config.password),
            cnonce_source=lambda: secrets.token_hex(8),
        )
        self.calls: list[ClientCall] = []
        self.dialogs: dict[DialogId, ClientCall] = {}
        self.incoming: asyncio.Queue[ClientCall] = asyncio.Queue()
        self.registered: SipResponse | None = None
        self._instance = secrets.token_hex(4)
        self._session: aiohttp.ClientSession | None = None
        self._wire: ClientWebSocketWire | None = None
        self._endpoint: SipEndpoint | None = None
        self._run: asyncio.Task[None] | None = None
        self._by_call_id: dict[str, ClientCall] = {}

    async def __aenter__(self) -> WebRtcClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def endpoint(self) -> SipEndpoint:
        """The SIP connection."""
        assert self._endpoint is not None, "connect() first"
        return self._endpoint

    @property
    def contact(self) -> NameAddr:
        """Our Contact (JsSIP style: a random user at an ``.invalid`` host, ``transport=ws``)."""
        return NameAddr(
            uri=SipUri(
                user=f"c{self._instance}",
                host=f"{self._instance}.invalid",
                params=(("transport", "ws"),),
            )
        )

    async def connect(self) -> None:
        """Open the WebSocket and start the SIP endpoint."""
        self._session = aiohttp.ClientSession()
        ws = await self._session.ws_connect(
            self.config.url, protocols=("sip",), ssl=self.config.ssl, autoping=True
        )
        self._wire = ClientWebSocketWire(ws)
        self._endpoint = SipEndpoint(
            self._wire, self._handle, SipEndpointConfig(keepalive_interval=None)
        )
        self._run = asyncio.get_running_loop().create_task(self._endpoint.run(), name="client sip")

    async def send_raw(self, data: bytes) -> None:
        """Send non-SIP bytes on the WebSocket."""
        assert self._wire is not None
        await self._wire.send_raw(data)

    async def close(self, *, hangup: bool = False) -> None:
        """Close the WebSocket (after hanging up calls when ``hangup``) and every leg."""
        if hangup:
            for call in list(self.calls):
                if not call.ended:
                    with contextlib.suppress(Exception):
                        await call.hangup()
        if self._endpoint is not None:
            self._endpoint.close()
        if self._run is not None:
            with contextlib.suppress(Exception):
                await self._run
        for call in self.calls:
            await call.aclose()
        if self._session is not None:
            await self._session.close()

    async def drop(self) -> None:
        """Close the WebSocket only (calls keep their media), as a crashing tab would."""
        if self._endpoint is not None:
            self._endpoint.close()
        if self._run is not None:
            with contextlib.suppress(Exception):
                await self._run

    async def register(self, expires: int = 600) -> SipResponse:
        """REGISTER (answering the 401); returns the final response."""
        endpoint, domain = self.endpoint, self.config.domain
        aor = NameAddr(uri=SipUri(user=self.config.user, host=domain))
        call_id, tag = secrets.token_hex(10), secrets.token_hex(6)
        auth: list[tuple[str, str]] | None = None
        for seq in (1, 2):
            request = out_of_dialog_request(
                endpoint,
                "REGISTER",
                uri=SipUri(host=domain),
                from_addr=aor.with_tag(tag),
                to=aor,
                call_id=call_id,
                seq=seq,
                contact=self.contact,
            )
            request.headers.add("Expires", str(expires))
            for name, value in auth or []:
                request.headers.add(name, value)
            response = await endpoint.request(request, timeout=10)
            if response.status_code != 401 or seq == 2:
                break
            auth = answer_challenge(self.digest, request, response, "client")
            if auth is None:
                break
        if response.status_code == 200:
            self.registered = response
        return response

    def contact_echoed(self) -> bool:
        """Whether the last 200 to REGISTER listed our Contact (JsSIP needs it)."""
        if self.registered is None:
            return False
        return any(str(c.uri) == str(self.contact.uri) for c in self.registered.contacts)

    async def dial(
        self,
        number: str,
        *,
        codecs: tuple[str, ...] | None = None,
        offer_hook: Callable[[SdpSession], None] | None = None,
    ) -> ClientCall:
        """Send an INVITE to ``number``; wait with :meth:`ClientCall.wait_answered`.

        Args:
            number: the number (Request-URI user part).
            codecs: this call's codec order (default: the client's).
            offer_hook: edits our SDP offer before it is sent (hostile-input tests).
        """
        call = ClientCall(self, direction="outgoing", codecs=codecs or self.config.codecs)
        self.calls.append(call)
        await call._invite(number, offer_hook)
        return call

    async def next_incoming(self, timeout: float = 10.0) -> ClientCall:  # noqa: ASYNC109 - a test helper's bound
        """The next INVITE toward us (it is ringing: 180 sent)."""
        async with asyncio.timeout(timeout):
            return await self.incoming.get()

    # -- events ---------------------------------------------------------------------------

    def _handle(self, endpoint: SipEndpoint, event: SipEvent) -> None:
        if isinstance(event, RequestReceived):
            self._request(event.transaction_id, event.request)
        elif isinstance(event, ResponseReceived):
            call = self._by_call_id.get(event.response.call_id)
            if call is not None:
                call._response(event.transaction_id, event.response)
        elif isinstance(event, TransactionTimedOut):
            for call in self.calls:
                call._timed_out(event.transaction_id)
        elif isinstance(event, CancelReceived):
            call = self._by_call_id.get(event.request.call_id)
            if call is not None:
                call._cancelled_by_peer()

    def _request(self, tid: str, request: SipRequest) -> None:
        endpoint = self.endpoint
        if request.to_addr.tag:
            key = DialogId(request.call_id, request.to_addr.tag, request.from_addr.tag or "")
            call = self.dialogs.get(key)
            if call is None:
                endpoint.send_response(tid, build_response(request, 481))
            else:
                call._in_dialog(tid, request)
            return
        if request.method == "INVITE":
            call = ClientCall(self, direction="incoming", codecs=self.config.codecs)
            self.calls.append(call)
            self._by_call_id[request.call_id] = call
            call._ring(tid, request)
            self.incoming.put_nowait(call)
            return
        status = 200 if request.method == "OPTIONS" else 405
        endpoint.send_response(tid, build_response(request, status, to_tag=secrets.token_hex(4)))
