"""The trunk's media port on real UDP: a MediaSession on a MediaSocket.

Theory of operation
-------------------
Signaling needs our RTP address before anything is negotiated (it goes into the SDP),
and hands over a :class:`~sip_gateway.sdp.MediaConfig` once offer/answer is done. So
:class:`RtpMediaPort` is built in two steps:

1. :meth:`RtpMediaPort.open` binds the UDP socket(s) (:class:`~.rtp.MediaSocket`):
   :attr:`~RtpMediaPort.local_address` is known, nothing is sent or read yet;
2. the first :meth:`~RtpMediaPort.apply` creates the sans-IO
   :class:`~sip_gateway.media.session.MediaSession` (SSRC, sequence and timestamp drawn
   from the injected random source) and starts a :class:`~.rtp.MediaEndpoint` on the
   socket; later calls (early media then answer, re-INVITE) go to
   :meth:`MediaEndpoint.update <.rtp.MediaEndpoint.update>`, which keeps the SRTP
   contexts when the keys did not change.

Audio is pluggable: ``audio_source`` is pulled once per ptime tick for one frame of
8 kHz ``int16`` PCM (None: comfort silence), ``audio_sink`` gets every played-out frame,
``on_event`` every :class:`~sip_gateway.media.events.MediaEvent`. With
``cut_through=True`` (a relay: see :mod:`sip_gateway.media.cut_through`) there is no
playout clock: :meth:`RtpMediaPort.send_audio` sends a frame at once instead of the
source, and the sink gets each received frame as it arrives (and the silence standing
for a gap, which ``on_event`` sees as ``AudioReceived(concealed=True)``). It implements the
trunk's :class:`~sip_gateway.trunk.state.MediaPort` protocol structurally (this package
never imports the trunk). Keys live in the session only; nothing here logs or shows them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from sip_gateway.media.cut_through import PayloadSink
from sip_gateway.media.errors import LocalMediaError
from sip_gateway.media.events import AudioReceived, MediaEvent, MediaStats
from sip_gateway.media.session import MediaSession, RandomSource

from .rtp import AudioSource, EventSink, MediaEndpoint, MediaSocket

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from sip_gateway.sdp.media_config import MediaConfig

__all__ = ["AudioSink", "RtpMediaPort"]

logger = logging.getLogger("sip_gateway.aio.media_port")

AudioSink = Callable[["npt.NDArray[np.int16]"], None]
"""Called with each played-out frame (8 kHz mono ``int16``, one ptime; silence or
concealment when nothing arrived); cut-through: each received frame, at once."""


class RtpMediaPort:
    """One call leg's SDES-SRTP media on UDP (see the module docstring); use :meth:`open`.

    Attributes:
        socket: the bound socket(s); owned by this port.
        endpoint: the running endpoint, None until the first :meth:`apply`.
    """

    def __init__(
        self,
        media_socket: MediaSocket,
        *,
        audio_source: AudioSource | None = None,
        audio_sink: AudioSink | None = None,
        on_event: EventSink | None = None,
        rng: RandomSource | None = None,
        comfort_noise: bool = True,
        cut_through: bool = False,
        report_payloads: bool = False,
        payload_sink: PayloadSink | None = None,
    ) -> None:
        """Wrap a bound socket (prefer :meth:`open`)."""
        self.socket = media_socket
        self.endpoint: MediaEndpoint | None = None
        self._audio_source = audio_source
        self._audio_sink = audio_sink
        self._on_event = on_event
        self._rng: RandomSource = rng if rng is not None else secrets.SystemRandom()
        self._comfort_noise = comfort_noise
        self._cut_through = cut_through
        self._report_payloads = report_payloads
        self._payload_sink = payload_sink
        self._closed = False

    @classmethod
    async def open(
        cls,
        host: str,
        *,
        port_range: tuple[int, int] | None = None,
        rtcp_mux: bool = True,
        audio_source: AudioSource | None = None,
        audio_sink: AudioSink | None = None,
        on_event: EventSink | None = None,
        rng: RandomSource | None = None,
        comfort_noise: bool = True,
        cut_through: bool = False,
        report_payloads: bool = False,
        payload_sink: PayloadSink | None = None,
    ) -> RtpMediaPort:
        """Bind the media socket(s) so that :attr:`local_address` can go into the SDP.

        Args:
            host: the IP address literal to bind and announce (``127.0.0.1``, ``::1`` ...).
            port_range: inclusive ``(low, high)`` for the RTP port (an even one is taken);
                None: any free port.
            rtcp_mux: bind one socket only. With False the RTCP socket on ``port + 1`` is
                bound too, for peers that refuse ``a=rtcp-mux`` and send RTCP there.
            audio_source: pulled once per ptime tick for the next frame to send.
            audio_sink: receives each played-out frame.
            on_event: receives every media event (audio, DTMF, latching, drops, RTCP).
            rng: the random source of SSRC, sequence number, timestamp and RTCP timing
                (default :class:`secrets.SystemRandom`).
            comfort_noise: send G.711 silence on ticks without audio (no gaps).
            cut_through: no playout clock: audio goes out with :meth:`send_audio` as it
                comes, received frames are reported as they arrive (a relay's mode).
            report_payloads: with ``cut_through``: ``on_event`` gets received audio as
                :class:`~sip_gateway.media.cut_through.PayloadReceived` (G.711 codes, not
                decoded; the sink gets nothing), for a relay that passes them on.
            payload_sink: with ``cut_through``: gets each received payload and its codec
                at once instead of a ``PayloadReceived`` event (see
                :class:`~sip_gateway.media.session.MediaSession`); an exception in it is
                logged and the media goes on.

        Raises:
            OSError: no port could be bound.
        """
        media_socket = await MediaSocket.open(host, port_range=port_range, rtcp_mux=rtcp_mux)
        return cls(
            media_socket,
            audio_source=audio_source,
            audio_sink=audio_sink,
            on_event=on_event,
            rng=rng,
            comfort_noise=comfort_noise,
            cut_through=cut_through,
            report_payloads=report_payloads,
            payload_sink=payload_sink,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self.endpoint else "bound"
        return f"<RtpMediaPort {self.socket.host}:{self.socket.port} {state}>"

    # -- the MediaPort protocol ----------------------------------------------------------

    @property
    def local_address(self) -> tuple[str, int]:
        """Our RTP address and port (announced in the SDP)."""
        return self.socket.host, self.socket.port

    def apply(self, config: MediaConfig) -> None:
        """Start media with the negotiated configuration, or update it.

        Raises:
            LocalMediaError: the port is closed, or the configuration is not SDES-keyed
                G.711 (:class:`~sip_gateway.media.errors.UnsupportedCodecError` included).
        """
        if self._closed:
            raise LocalMediaError("media port is closed")
        if self.endpoint is not None:
            self.endpoint.update(config)
            return
        session = MediaSession(
            config,
            local_ssrc=self._rng.getrandbits(32),
            rng=self._rng,
            comfort_noise=self._comfort_noise,
            cut_through=self._cut_through,
            report_payloads=self._report_payloads,
            payload_sink=self._payload_sink,
        )
        # without a sink, events go straight to on_event (one call less per packet)
        on_event = self._event if self._audio_sink is not None else self._on_event
        self.endpoint = MediaEndpoint(
            session, self.socket, audio_source=self._audio_source, on_event=on_event
        )
        self.endpoint.start()
        logger.debug("media started on port %d: %r", self.socket.port, session)

    def close(self) -> None:
        """Stop media (a final SRTCP BYE goes out) and close the socket(s). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.endpoint is not None:
            self.endpoint.close()
        else:
            self.socket.close()

    # -- more than the protocol --------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def started(self) -> bool:
        """Whether media runs (or ran): a configuration was applied."""
        return self.endpoint is not None

    @property
    def config(self) -> MediaConfig | None:
        """The configuration in force, None before the first :meth:`apply`."""
        return None if self.endpoint is None else self.endpoint.session.config

    def send_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        """Cut-through: send 8 kHz ``int16`` audio now (one packet per ptime it holds).

        Dropped while media is not running (before the first :meth:`apply`, after
        :meth:`close`) and while a digit is being sent.

        Raises:
            LocalMediaError: not ``int16`` audio, or the port is not cut-through.
        """
        if not self._cut_through:
            raise LocalMediaError("send_audio needs a cut-through port")
        endpoint = self.endpoint
        if endpoint is not None:
            endpoint.send_audio(pcm)

    def send_payload(self, payload: bytes, codec: str) -> None:
        """Cut-through: send G.711 codes (``codec`` PCMU or PCMA) now, as :meth:`send_audio`.

        Raises:
            LocalMediaError: the port is not cut-through.
        """
        if not self._cut_through:
            raise LocalMediaError("send_payload needs a cut-through port")
        endpoint = self.endpoint
        if endpoint is not None:
            endpoint.send_payload(payload, codec)

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Queue an RFC 4733 digit (``0``-``9``, ``*``, ``#``, ``A``-``D``).

        Raises:
            LocalMediaError: media is not running, no telephone-event was negotiated, or
                the digit is not a DTMF digit.
        """
        if self.endpoint is None or self._closed:
            raise LocalMediaError("media is not running: no DTMF can be sent")
        self.endpoint.send_dtmf(digit, duration_ms)

    def stats(self) -> MediaStats:
        """The session's counters (still readable after :meth:`close`; zeros before the
        first :meth:`apply`)."""
        if self.endpoint is None:
            return MediaStats()
        return self.endpoint.session.stats()

    def _event(self, event: MediaEvent) -> None:
        try:
            if self._audio_sink is not None and isinstance(event, AudioReceived):
                self._audio_sink(event.pcm)
        finally:  # a failing sink must not hide the event (the endpoint logs the error)
            if self._on_event is not None:
                self._on_event(event)
