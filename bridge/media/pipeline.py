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
* Browser to gateway: every decrypted RTP packet of the browser is either its audio codec
  or ``telephone-event`` (RFC 4733: each digit is re-sent on the gateway leg as RFC 4733).
  Audio payloads go into an adaptive jitter buffer (:class:`~sip_gateway.media.jitter.
  JitterBuffer`, by sequence number and arrival time) which the gateway leg's 20 ms clock
  plays out: the payload due is decoded then (Opus: decoded and filtered to 8 kHz; G.711:
  table-decoded), a lost one is concealed (Opus: libopus loss concealment), so reordering,
  bursts and a clock drift between the browser and the gateway leg cost neither gaps
  nor shifts in the audio.
* Gateway to browser: the gateway leg plays out one 8 kHz frame per tick from its jitter
  buffer; each is encoded for the browser (Opus or G.711), packetised and sent at once.
  Digits the carrier sends become RFC 4733 packets toward the browser in place of audio.
* "Relay" (both legs G.711) skips Opus and resampling entirely; the G.711 table lookups
  stay because the gateway leg's jitter buffer works on PCM.

Keys stay inside the SRTP sessions; nothing here logs payloads or key material.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sip_gateway.aio.media_port import RtpMediaPort
from sip_gateway.media.dtmf import DtmfReceiver, DtmfSender
from sip_gateway.media.errors import MalformedPacketError, MediaError
from sip_gateway.media.events import DtmfReceived
from sip_gateway.media.events import MediaEvent as GatewayMediaEvent
from sip_gateway.media.g711 import G711Codec
from sip_gateway.media.jitter import Concealment, JitterBuffer, JitterStats
from sip_gateway.media.rtp import RtpPacketizer, parse_fields
from sip_gateway.sdp import DtlsCrypto, IceParameters, MediaConfig, SdesCrypto

from .events import (
    DigitRelayed,
    MediaEvent,
    MediaFailed,
    MediaMode,
    WebRtcConnected,
)
from .transcode import OpusDecoder, OpusEncoder, OpusEncoderConfig, TranscodeError
from .webrtc_leg import DtlsFacts, WebRtcLeg, WebRtcLegConfig, WebRtcLegError

if TYPE_CHECKING:
    import asyncio

    import numpy as np
    import numpy.typing as npt

__all__ = ["CallMedia", "MediaCounters", "PipelineConfig", "WebRtcPort"]

log = logging.getLogger("bridge.media")

JITTER_MIN_MS, JITTER_MAX_MS = 20, 120
"""Bounds of the browser-to-gateway jitter buffer's adaptive delay."""
FRAME = 160
"""Samples of one 20 ms frame at 8 kHz: the gateway leg's unit."""
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
    """What the pipeline moved (the call's stats; no payloads)."""

    browser_packets: int = 0
    browser_audio_frames: int = 0
    browser_bad_packets: int = 0
    browser_digits: int = 0
    gateway_frames: int = 0
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
        self._candidates: list[WebRtcPort] = []
        self._gateway: RtpMediaPort | None = None
        self._jitter: JitterBuffer | None = None
        self._pending: deque[npt.NDArray[np.int16]] = deque()
        self._decode: Callable[[bytes], npt.NDArray[np.int16]] | None = None
        self._conceal: Callable[[], npt.NDArray[np.int16] | None] = _no_concealment
        self._clock = time.monotonic
        self._encode: Callable[[npt.NDArray[np.int16]], bytes] | None = None
        self._audio_pt = -1
        self._event_pt = -1
        self._samples = 160
        self._dtmf_in: DtmfReceiver | None = None
        self._dtmf_out: DtmfSender | None = None
        self._dtmf_queue: deque[bytes] = deque()
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
            audio_source=self._gateway_source,
            audio_sink=self._to_browser,
            on_event=self._gateway_event,
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
            self._webrtc = port  # answering a browser's offer: there is only this one
        return port

    async def choose_webrtc(self, port: WebRtcPort) -> None:
        """The browser leg that answered: close every other one."""
        self._webrtc = port
        if port.config is not None:
            self.use_webrtc_config(port.config)
        others = [p for p in self._candidates if p is not port]
        self._candidates = [port]
        for other in others:
            other.close()
            await other.leg.close()

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
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            log.exception("media event handler failed on %r", event)

    # -- configuration -----------------------------------------------------------------

    def use_webrtc_config(self, config: MediaConfig) -> None:
        """Set up the codec path for the browser leg's negotiated codec."""
        codec = config.codecs[0]
        name = codec.name.lower()
        self._audio_pt = codec.payload_type
        self.webrtc_codec = f"{codec.name}/{codec.clock_rate}" + (
            f"/{codec.channels}" if codec.channels != 1 else ""
        )
        if name == "opus":
            decoder, encoder = OpusDecoder(), OpusEncoder(self._config.opus)
            self._decode, self._encode = decoder.decode, encoder.encode
            self._conceal = decoder.conceal
            self._samples, self.mode = 960, MediaMode.TRANSCODE
        else:
            g711 = G711Codec(codec.name.upper(), codec.payload_type)
            self._decode, self._encode = g711.decode, g711.encode_frame
            self._conceal = _no_concealment  # the gateway leg sends comfort silence
            self._samples, self.mode = 160, MediaMode.RELAY
        if self._jitter is None or self._jitter.clock_rate != codec.clock_rate:
            self._jitter = JitterBuffer(
                codec.clock_rate,
                config.ptime,
                min_delay_ms=JITTER_MIN_MS,
                max_delay_ms=JITTER_MAX_MS,
            )
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
        counters = self.counters
        counters.browser_packets += 1
        try:
            payload_type, sequence, timestamp, _ssrc, payload = parse_fields(data)
        except MalformedPacketError:
            counters.browser_bad_packets += 1
            return
        jitter = self._jitter
        if payload_type == self._audio_pt and jitter is not None:
            jitter.put_frame(sequence, timestamp, payload, self._clock())
            counters.browser_audio_frames += 1
        elif payload_type == self._event_pt and self._dtmf_in is not None:
            if jitter is not None:
                jitter.put_non_audio(sequence, timestamp)
            for digit in self._dtmf_in.feed_payload(payload_type, timestamp, payload):
                self.send_digit_to_gateway(digit.digit, digit.duration_ms, via="rtp")

    def _gateway_source(self) -> npt.NDArray[np.int16] | None:
        """The gateway leg's tick: the browser's frame due now, decoded (or concealed)."""
        pending = self._pending
        if pending:
            return pending.popleft()
        jitter, decode = self._jitter, self._decode
        if jitter is None or decode is None:
            return None
        due = jitter.pop_frame(self._clock())
        if due is None:
            return None
        if due.__class__ is Concealment:
            return self._conceal()
        try:
            pcm = decode(due)  # type: ignore[arg-type]  # put_frame stored payload bytes
        except (TranscodeError, MediaError):
            self.counters.browser_bad_packets += 1
            return self._conceal()
        if len(pcm) == FRAME:
            return pcm
        frames = _split(pcm)  # a 40/60 ms packet: the rest plays on the next ticks
        pending.extend(frames[1:])
        return frames[0] if frames else None

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

    def _to_browser(self, pcm: npt.NDArray[np.int16]) -> None:
        self.counters.gateway_frames += 1
        webrtc, packetizer = self._webrtc, self._packetizer
        if webrtc is None or packetizer is None or webrtc.leg.state != "connected":
            return
        if self._dtmf_queue:
            webrtc.leg.send_rtp(self._dtmf_queue.popleft())
        elif self._encode is not None:
            webrtc.leg.send_rtp(packetizer.packet_bytes(self._encode(pcm), self._samples))
        else:
            return
        self.counters.sent_to_browser += 1

    def _gateway_event(self, event: GatewayMediaEvent) -> None:
        if not isinstance(event, DtmfReceived):
            return
        self.counters.gateway_digits += 1
        if self._dtmf_out is None or self._packetizer is None:
            log.info("digit from the carrier dropped: the browser has no telephone-event")
            return
        packets = self._dtmf_out.packets(event.digit, self._packetizer)
        self._dtmf_queue.extend(packet.serialize() for packet in packets)
        self.emit(DigitRelayed(digit=event.digit, toward="webrtc", via="rtp"))

    # -- facts and the end ---------------------------------------------------------------

    def jitter_stats(self) -> JitterStats | None:
        """The browser-to-gateway jitter buffer's counters (late, lost, concealed ...)."""
        return None if self._jitter is None else self._jitter.stats()

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
        self._pending.clear()
        self._dtmf_queue.clear()


def _split(pcm: npt.NDArray[np.int16]) -> list[npt.NDArray[np.int16]]:
    """A 40/60 ms packet's audio as 20 ms frames (a short tail is dropped: Opus never
    makes one, and the gateway leg's clock is 20 ms)."""
    return [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


def _no_concealment() -> None:
    """G.711 from the browser: a lost frame becomes the gateway leg's comfort silence."""
    return None
