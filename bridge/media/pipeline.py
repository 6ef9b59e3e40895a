"""The per-call media pipeline: a WebRTC leg and a gateway leg joined by our own codec path.

Theory of operation
-------------------
The call layer talks to media only through :class:`CallMedia` (create the legs and get
their local SDP parameters, apply negotiated :class:`~sip_gateway.sdp.MediaConfig` objects,
send DTMF, read stats and facts, receive :class:`MediaEvent` records, close), so that media
can later move to worker processes without touching call logic.

* :attr:`CallMedia.webrtc_port` is the browser leg's media port (ICE + DTLS-SRTP through
  :mod:`bridge.media.webrtc_leg`); :attr:`CallMedia.gateway_port` is the trunk leg's
  SDES-SRTP :class:`~sip_gateway.aio.media_port.RtpMediaPort`. Both satisfy the trunk's
  ``MediaPort`` protocol, so the SIP legs apply their negotiated configs to them directly.
* Cut-through, both ways: the bridge is a relay in the middle of the call, and both
  endpoints (the browser, the carrier) have jitter buffers of their own, so nothing here
  buffers or waits for a clock; each packet is handled as it arrives, like rtpengine
  (the gateway leg runs :class:`~sip_gateway.media.session.MediaSession` with
  ``cut_through=True``; see :mod:`sip_gateway.media.cut_through`).
* Browser to gateway: every decrypted RTP packet of the browser is either its audio codec
  or ``telephone-event`` (RFC 4733: each digit is re-sent on the gateway leg as RFC 4733).
  An audio packet older than the newest one forwarded (or a duplicate) is dropped and
  counted (:class:`~sip_gateway.media.cut_through.ForwardOrder`): forwarding it would
  bake the reordering into the gateway leg's re-numbered stream. The others are decoded
  at once (Opus: decoded and filtered to 8 kHz; G.711: table-decoded) and sent on the
  gateway leg at once (a 40/60 ms packet as two or three 20 ms packets). The gateway leg
  fills a pause or a lost packet with comfort silence and sends digits in place of audio.
* Gateway to browser: the gateway leg reports each carrier frame as it arrives; it is
  encoded for the browser (Opus or G.711), packetised and sent at once. A gap in the
  carrier's timestamps (loss, a late packet dropped, a sender suppressing silence)
  moves the browser stream's timestamp on by as much, so the browser's jitter buffer
  conceals it in time. Digits the carrier sends become RFC 4733 packets toward the
  browser in place of the next audio frames.
* "Relay" (both legs G.711) skips Opus, resampling and even the G.711 tables: the gateway
  leg hands the carrier's codes straight to :meth:`CallMedia._to_browser` (its
  ``payload_sink``: no event object per packet) and takes the browser's
  (``send_payload``), and they pass as they are (PCMU and PCMA meet through a 256-byte
  table). Transcoding decodes the carrier's codes here, for the Opus encoder.
* Per packet, both ways, the chain is plain calls: the browser leg's socket callback
  (SRTP unprotect) calls :meth:`CallMedia._from_browser` directly once that leg is
  chosen, and sends with the leg's ``rtp_sender``.

Keys stay inside the SRTP sessions; nothing here logs payloads or key material.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from sip_gateway.aio.media_port import RtpMediaPort
from sip_gateway.media.cut_through import (
    DUPLICATE,
    ForwardOrder,
    PayloadReceived,
    convert_g711,
)
from sip_gateway.media.dtmf import DtmfReceiver, DtmfSender
from sip_gateway.media.errors import MalformedPacketError, MediaError
from sip_gateway.media.events import AudioReceived, DtmfReceived, MediaStats
from sip_gateway.media.events import MediaEvent as GatewayMediaEvent
from sip_gateway.media.g711 import G711Codec
from sip_gateway.media.rtp import RtpPacketizer, parse_fields
from sip_gateway.sdp import DtlsCrypto, IceParameters, MediaConfig, SdesCrypto

from .events import (
    DigitRelayed,
    MediaEvent,
    MediaFailed,
    MediaMode,
    WebRtcConnected,
    codec_label,
    deliver,
)
from .transcode import OpusDecoder, OpusEncoder, OpusEncoderConfig, TranscodeError
from .webrtc_leg import DtlsFacts, WebRtcLeg, WebRtcLegConfig, WebRtcLegError, WebRtcLegStats

if TYPE_CHECKING:
    import asyncio

    import numpy.typing as npt

__all__ = ["CallMedia", "MediaCounters", "PipelineConfig", "WebRtcPort"]

log = logging.getLogger("bridge.media")

GATEWAY_RATE = 8000
"""The gateway leg's PCM rate (G.711)."""
FRAME = 160
"""Samples of one 20 ms frame at 8 kHz: what the Opus encoder takes."""
_DTMF_MIN_MS, _DTMF_MAX_MS = 80, 1000
MediaEventSink = Callable[[MediaEvent], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineConfig:
    """Media settings of every call.

    Attributes:
        webrtc: ICE/DTLS settings of the browser leg.
        opus: the Opus encoder toward browsers.
        gateway_host: the address the gateway leg's RTP binds to and announces.
        gateway_port_range: inclusive UDP port range of the gateway leg (None: any).
    """

    webrtc: WebRtcLegConfig
    opus: OpusEncoderConfig = field(default_factory=OpusEncoderConfig)
    gateway_host: str = "127.0.0.1"
    gateway_port_range: tuple[int, int] | None = None


@dataclass(slots=True)
class MediaCounters:
    """What the pipeline moved (the call's stats; no payloads).

    Attributes:
        browser_packets: RTP packets the browser leg decrypted.
        browser_audio_frames: browser audio packets forwarded to the gateway leg.
        browser_bad_packets: malformed or undecodable browser packets.
        browser_late: browser audio packets dropped as older than the newest forwarded.
        browser_duplicates: browser audio packets dropped as the newest forwarded, again.
        browser_digits: digits relayed to the carrier (from RTP or SIP INFO).
        gateway_frames: carrier frames the gateway leg reported.
        gateway_gaps: gaps in the carrier's timestamps passed on as a timestamp jump.
        gateway_digits: digits received from the carrier.
        sent_to_browser: packets sent toward the browser (audio and digits).
    """

    browser_packets: int = 0
    browser_audio_frames: int = 0
    browser_bad_packets: int = 0
    browser_late: int = 0
    browser_duplicates: int = 0
    browser_digits: int = 0
    gateway_frames: int = 0
    gateway_gaps: int = 0
    gateway_digits: int = 0
    sent_to_browser: int = 0


class WebRtcPort:
    """The browser leg's media port (the trunk ``MediaPort`` and ``IcePort`` protocols)."""

    def __init__(self, media: CallMedia, leg: WebRtcLeg, *, controlling: bool) -> None:
        self._media = media
        self.leg = leg
        self.controlling = controlling
        self.config: MediaConfig | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def local_address(self) -> tuple[str, int]:
        """The default candidate's address (``c=`` and ``m=``)."""
        return self.leg.default_address

    @property
    def local_ice(self) -> IceParameters:
        """Our ICE credentials and host candidates."""
        return self.leg.local_ice

    def apply(self, config: MediaConfig) -> None:
        """Start ICE and DTLS with the browser (first call) or update the codecs."""
        if not isinstance(config.crypto, DtlsCrypto):
            raise MediaError("the browser leg needs DTLS-SRTP")
        first = self.config is None
        self.config = config
        if self._media.webrtc_port is self:
            self._media.use_webrtc_config(config)
        if first:
            import asyncio

            self._task = asyncio.get_running_loop().create_task(
                self._connect(config), name="webrtc connect"
            )

    async def _connect(self, config: MediaConfig) -> None:
        try:
            facts = await self.leg.connect(config, controlling=self.controlling)
        except WebRtcLegError as exc:
            log.warning("WebRTC leg failed: %s", exc)
            self._media.emit(MediaFailed(leg="webrtc", reason=str(exc)))
            return
        self._media.browser_connected(self)
        self._media.emit(WebRtcConnected(facts=facts))

    def close(self) -> None:
        """Stop the connect attempt; the leg itself is closed by :meth:`CallMedia.aclose`."""
        if self._task is not None and not self._task.done():
            self._task.cancel()


class CallMedia:
    """Both media legs of one call and the pipeline between them (module docstring).

    Use :meth:`open`; always :meth:`aclose`.
    """

    def __init__(self, config: PipelineConfig, on_event: MediaEventSink | None = None) -> None:
        self._config = config
        self.on_event: MediaEventSink | None = on_event
        """Receives every :class:`MediaEvent` (the call sets it)."""
        self.counters = MediaCounters()
        self._webrtc: WebRtcPort | None = None
        self._send_to_browser: Callable[[bytes], None] | None = None  # once it is connected
        self._candidates: list[WebRtcPort] = []
        self._gateway: RtpMediaPort | None = None
        self._order = ForwardOrder()
        self._browser_ssrc = -1
        self._browser_law: str | None = None  # PCMU/PCMA: relayed as codes; None: Opus
        self._decode: Callable[[bytes], npt.NDArray[np.int16]] | None = None  # Opus
        self._encode: Callable[[npt.NDArray[np.int16]], bytes] | None = None  # Opus
        self._carrier_pcm = {law: G711Codec(law).decode for law in ("PCMU", "PCMA")}
        self._audio_pt = -1
        self._event_pt = -1
        self._samples = 160
        self._rate_ratio = 1  # browser RTP clock ticks per gateway (8 kHz) sample
        self._dtmf_in: DtmfReceiver | None = None
        self._dtmf_out: DtmfSender | None = None
        self._dtmf_queue: deque[bytes] = deque()
        self._digits_waiting: deque[str] = deque()
        self._packetizer: RtpPacketizer | None = None
        self.mode: MediaMode | None = None
        self.webrtc_codec: str | None = None
        self.gateway_codec: str | None = None
        self._closed = False

    async def open(self) -> None:
        """Bind the gateway leg's sockets (its address goes into the trunk SDP).

        Raises:
            OSError: no gateway media port could be bound.
        """
        self._gateway = await RtpMediaPort.open(
            self._config.gateway_host,
            port_range=self._config.gateway_port_range,
            rtcp_mux=False,  # binds RTCP on port+1 too: works with and without a=rtcp-mux
            on_event=self._gateway_event,
            cut_through=True,
            report_payloads=True,  # G.711 codes: relayed as they are, decoded for Opus
            payload_sink=self._to_browser,  # each at once: no event object per packet
        )

    async def new_webrtc_port(self, *, controlling: bool) -> WebRtcPort:
        """Gather candidates for one browser leg (an inbound call rings several browsers).

        Args:
            controlling: we offer to the browser (inbound calls), so we are the ICE
                controlling agent; False when we answer the browser's offer.

        Raises:
            WebRtcLegError: ICE gathering failed.
        """
        port: WebRtcPort | None = None

        def received(data: bytes) -> None:
            if port is not None and port is self._webrtc:
                self._from_browser(data)

        leg = await WebRtcLeg.create(self._config.webrtc, on_rtp=received, controlling=controlling)
        port = WebRtcPort(self, leg, controlling=controlling)
        self._candidates.append(port)
        if self._webrtc is None and not controlling:
            self._use_webrtc_port(port)  # answering a browser's offer: there is only this one
        return port

    def _use_webrtc_port(self, port: WebRtcPort) -> None:
        """``port`` is the browser leg: its packets come straight here (no check per packet)."""
        self._webrtc = port
        port.leg.on_rtp = self._from_browser

    async def choose_webrtc(self, port: WebRtcPort) -> None:
        """The browser leg that answered: close every other one."""
        self._use_webrtc_port(port)
        self._send_to_browser = port.leg.rtp_sender if port.leg.state == "connected" else None
        if port.config is not None:
            self.use_webrtc_config(port.config)
        others = [p for p in self._candidates if p is not port]
        self._candidates = [port]
        for other in others:
            other.close()
            await other.leg.close()

    def browser_connected(self, port: WebRtcPort) -> None:
        """``port``'s leg connected (ICE and DTLS): audio may go to it if it is the one."""
        if port is self._webrtc:
            self._send_to_browser = port.leg.rtp_sender

    @property
    def webrtc_port(self) -> WebRtcPort | None:
        """The browser leg's media port in use (None until one is chosen)."""
        return self._webrtc

    @property
    def gateway_port(self) -> RtpMediaPort:
        """The gateway leg's media port."""
        assert self._gateway is not None, "CallMedia.open() first"
        return self._gateway

    def emit(self, event: MediaEvent) -> None:
        """Report ``event`` to the call (never raises into media code)."""
        deliver(self.on_event, event)

    # -- configuration -----------------------------------------------------------------

    def use_webrtc_config(self, config: MediaConfig) -> None:
        """Set up the codec path for the browser leg's negotiated codec."""
        codec = config.codecs[0]
        name = codec.name.lower()
        self._audio_pt = codec.payload_type
        self.webrtc_codec = codec_label(codec)
        if name == "opus":
            decoder, encoder = OpusDecoder(), OpusEncoder(self._config.opus)
            self._decode, self._encode = decoder.decode, encoder.encode
            self._browser_law, self._samples, self.mode = None, 960, MediaMode.TRANSCODE
        else:
            self._browser_law = G711Codec(codec.name.upper(), codec.payload_type).name
            self._decode = self._encode = None
            self._samples, self.mode = 160, MediaMode.RELAY
        self._rate_ratio = max(1, codec.clock_rate // GATEWAY_RATE)
        event = config.telephone_event
        self._event_pt = event.payload_type if event is not None else -1
        self._dtmf_in = DtmfReceiver(event.payload_type, event.clock_rate) if event else None
        self._dtmf_out = (
            DtmfSender(event.payload_type, event.clock_rate, config.ptime) if event else None
        )
        if self._packetizer is None:
            rng = secrets.SystemRandom()
            self._packetizer = RtpPacketizer(
                rng.getrandbits(32),
                codec.payload_type,
                codec.clock_rate,
                rng.getrandbits(16),
                rng.getrandbits(32),
            )
        else:
            self._packetizer.payload_type = codec.payload_type
            self._packetizer.clock_rate = codec.clock_rate

    def gateway_config_applied(self, config: MediaConfig) -> None:
        """Note the gateway leg's codec (for the record); the port applies it itself."""
        if isinstance(config.crypto, SdesCrypto):
            codec = config.codecs[0]
            self.gateway_codec = f"{codec.name}/{codec.clock_rate}"

    # -- browser to gateway --------------------------------------------------------------

    def _from_browser(self, data: bytes) -> None:
        """One decrypted browser packet: audio goes to the gateway leg now (per packet)."""
        counters = self.counters
        counters.browser_packets += 1
        try:
            payload_type, sequence, timestamp, ssrc, payload = parse_fields(data)
        except MalformedPacketError:
            counters.browser_bad_packets += 1
            return
        if payload_type == self._audio_pt:
            if ssrc != self._browser_ssrc:  # a new stream: its own sequence numbers
                self._browser_ssrc, self._order = ssrc, ForwardOrder()
            verdict = self._order.in_order(sequence)
            if verdict:
                if verdict == DUPLICATE:
                    counters.browser_duplicates += 1
                else:
                    counters.browser_late += 1
                return
            law, gateway = self._browser_law, self._gateway
            if law is not None and gateway is not None:  # relay: _to_gateway, inlined
                counters.browser_audio_frames += 1
                if (endpoint := gateway.endpoint) is not None:
                    endpoint.send_payload(payload, law)
                return
            self._to_gateway(payload)
        elif payload_type == self._event_pt and self._dtmf_in is not None:
            for digit in self._dtmf_in.feed_payload(payload_type, timestamp, payload):
                self.send_digit_to_gateway(digit.digit, digit.duration_ms, via="rtp")

    def _to_gateway(self, payload: bytes) -> None:
        """A browser frame goes out on the gateway leg now (a 40/60 ms one as 20 ms
        packets): G.711 codes as they are (the law converted if need be), Opus decoded."""
        gateway, law = self._gateway, self._browser_law
        endpoint = None if gateway is None else gateway.endpoint  # the port's, inlined
        if law is not None:
            self.counters.browser_audio_frames += 1
            if endpoint is not None:
                endpoint.send_payload(payload, law)
            return
        decode = self._decode
        if decode is None:
            return
        try:
            pcm = decode(payload)
        except (TranscodeError, MediaError):
            self.counters.browser_bad_packets += 1
            return
        self.counters.browser_audio_frames += 1
        if endpoint is not None:
            endpoint.send_audio(pcm)

    def send_digit_to_gateway(self, digit: str, duration_ms: int = 100, *, via: str) -> None:
        """Send a browser's digit to the carrier as RFC 4733 (from RTP or SIP INFO)."""
        gateway = self._gateway
        if gateway is None or not gateway.started or gateway.closed:
            log.info("digit from the browser dropped: the gateway leg has no media yet")
            return
        duration = min(max(duration_ms, _DTMF_MIN_MS), _DTMF_MAX_MS)
        try:
            gateway.send_dtmf(digit, duration)
        except MediaError as exc:
            log.info("digit from the browser not relayed: %s", exc)
            return
        self.counters.browser_digits += 1
        self.emit(DigitRelayed(digit=digit, toward="gateway", via=via))

    # -- gateway to browser --------------------------------------------------------------

    def _gateway_event(self, event: GatewayMediaEvent) -> None:
        kind = event.__class__
        if kind is PayloadReceived:
            assert isinstance(event, PayloadReceived)
            self._to_browser(event.payload, event.codec)
        elif kind is AudioReceived:  # the gateway port reports payloads: only gaps come so
            assert isinstance(event, AudioReceived)
            self._gap_to_browser(len(event.pcm))
        elif kind is DtmfReceived:
            assert isinstance(event, DtmfReceived)
            self._digit_to_browser(event.digit)

    def _to_browser(self, payload: bytes, codec: str) -> None:
        """One carrier frame (G.711 codes) to the browser now: relayed as it is (the law
        converted if need be), or decoded and encoded to Opus."""
        self.counters.gateway_frames += 1
        send, packetizer, law = self._send_to_browser, self._packetizer, self._browser_law
        if send is None or packetizer is None:
            return
        if self._digits_waiting:
            self._start_digits()
        if self._dtmf_queue:
            send(self._dtmf_queue.popleft())
        elif law is not None:
            if codec != law:
                payload = convert_g711(payload, codec, law)
            send(packetizer.packet_bytes(payload, len(payload)))
        elif (encode := self._encode) is not None:
            pcm = self._carrier_pcm[codec](payload)
            if len(pcm) != FRAME:  # not 20 ms: the Opus encoder takes 20 ms frames
                self._opus_frames_to_browser(pcm, send, packetizer, encode)
                return
            send(packetizer.packet_bytes(encode(pcm), FRAME * self._rate_ratio))
        else:
            return
        self.counters.sent_to_browser += 1

    def _opus_frames_to_browser(
        self,
        pcm: npt.NDArray[np.int16],
        send: Callable[[bytes], None],
        packetizer: RtpPacketizer,
        encode: Callable[[npt.NDArray[np.int16]], bytes],
    ) -> None:
        """A carrier packet of another length, as 20 ms Opus packets (a short tail is
        padded with silence)."""
        for start in range(0, len(pcm), FRAME):
            frame = pcm[start : start + FRAME]
            if len(frame) < FRAME:
                frame = np.concatenate((frame, np.zeros(FRAME - len(frame), np.int16)))
            send(packetizer.packet_bytes(encode(frame), FRAME * self._rate_ratio))
            self.counters.sent_to_browser += 1

    def _gap_to_browser(self, samples: int) -> None:
        """The carrier's timestamps jumped: the browser's move on as much (its jitter
        buffer conceals the gap in time)."""
        self.counters.gateway_gaps += 1
        if self._packetizer is not None:
            self._packetizer.advance(samples * self._rate_ratio)
        if self._digits_waiting:
            self._start_digits()

    def _digit_to_browser(self, digit: str) -> None:
        """A carrier digit ended: it starts toward the browser with the next frame, after
        the gap its event packets left in the carrier's audio (so it is in time)."""
        self.counters.gateway_digits += 1
        if self._dtmf_out is None or self._packetizer is None:
            log.info("digit from the carrier dropped: the browser has no telephone-event")
            return
        self._digits_waiting.append(digit)
        self.emit(DigitRelayed(digit=digit, toward="webrtc", via="rtp"))

    def _start_digits(self) -> None:
        """Packetize the waiting digits; their packets replace the next audio frames."""
        sender, packetizer = self._dtmf_out, self._packetizer
        while self._digits_waiting:
            digit = self._digits_waiting.popleft()
            if sender is not None and packetizer is not None:
                packets = sender.packets(digit, packetizer)
                self._dtmf_queue.extend(packet.serialize() for packet in packets)

    # -- facts and the end ---------------------------------------------------------------

    def stats(self) -> MediaCounters:
        """A copy of the pipeline's counters."""
        return replace(self.counters)

    def leg_stats(self) -> tuple[WebRtcLegStats | None, MediaStats | None]:
        """Snapshots of the browser leg's SRTP path and the gateway leg's session counters
        (None for a leg not there yet); read by the metrics."""
        webrtc = None if self._webrtc is None else self._webrtc.leg.stats()
        gateway = None if self._gateway is None else self._gateway.stats()
        return webrtc, gateway

    def webrtc_facts(self) -> DtlsFacts | None:
        """What the browser leg's DTLS session negotiated (None before it exists)."""
        return None if self._webrtc is None else self._webrtc.leg.facts()

    async def aclose(self) -> None:
        """Close both legs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._gateway is not None:
            self._gateway.close()
        for port in self._candidates:
            port.close()
            await port.leg.close()
        self._candidates.clear()
        self._dtmf_queue.clear()
        self._digits_waiting.clear()
