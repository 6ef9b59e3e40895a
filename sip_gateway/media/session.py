"""The per-leg media engine: SDES-SRTP G.711 with RFC 4733 DTMF, sans-IO.

Theory of operation
-------------------
A :class:`MediaSession` turns one negotiated :class:`~sip_gateway.sdp.MediaConfig`
into datagrams and events, h11/aioquic style: the caller feeds datagrams with
:meth:`~MediaSession.receive_datagram`, drives time with :meth:`~MediaSession.get_timer`
and :meth:`~MediaSession.handle_timer`, and collects :meth:`~MediaSession.datagrams_to_send`
and :meth:`~MediaSession.next_event`. It never reads a clock, opens a socket or draws
randomness of its own (sequence number, timestamp and RTCP jitter come from ``rng``).

Receiving: a datagram is RTCP or RTP by its second byte (RFC 5761), is unprotected by
the inbound SRTP context and only then trusted. Symmetric RTP: the first authenticated
RTP packet fixes the peer's source address and SSRC ("latching", :class:`SourceLatched`)
and our RTP goes there from then on; another source or SSRC takes over only after the
latched one has been silent for :data:`RELATCH_AFTER` seconds. Accepted packets feed
the reception statistics, the RFC 4733 receiver (:class:`DtmfReceived`) and the jitter
buffer. Everything else is dropped and counted by reason (:class:`PacketDropped`,
aggregated); nothing the network sends makes a method raise.

Timing: ptime ticks fall at ``start + k * ptime``. Each tick sends exactly one packet
(local audio, a digit's event packet, or comfort silence; see ``_outbound``) and plays
one frame out of the jitter buffer (:class:`AudioReceived`; a missing frame is the last
one attenuated once, then silence; see ``_playout``). RTCP SR/RR with SDES CNAME goes
out over SRTCP at the RFC 3550 A.7 interval (about 5 s, randomized; see
``_rtcp_reports``), to the peer's RTP address with rtcp-mux or to its RTCP port.

Cut-through (``cut_through=True``, for a relay whose peers have jitter buffers; see
:mod:`.cut_through`): no ticks and no jitter buffer. Each accepted audio packet is decoded
and reported at once (:class:`AudioReceived`; one with ``concealed=True`` and silence of
the missing length first when its timestamp shows a gap); a late or duplicate one is
dropped (reasons ``late``, ``duplicate``, ``sequence_jump``). :meth:`~MediaSession.
send_audio_now` sends a frame at once; the timer only sends digit packets, comfort
silence when the audio pauses, and RTCP.

Secrets: keys live only in :class:`~sip_gateway.media.srtp.SrtpSession`; no event,
statistic or ``repr`` here carries them.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import numpy as np
import numpy.typing as npt

from sip_gateway.sdp.media_config import MediaConfig

from ._drops import DropLog
from ._outbound import OutboundStream, check_pcm
from ._playout import Playout
from ._rtcp_reports import RtcpReports
from ._setup import CLOCK_RATE, RandomSource
from ._setup import frame_samples as _samples
from ._setup import sdes_crypto as _sdes
from ._setup import send_codec as _send_codec
from .cut_through import (
    DROP_REASONS,
    CutThroughSender,
    ForwardOrder,
    PayloadReceived,
    PayloadSink,
    convert_g711,
    gap_silence,
)
from .dtmf import DtmfReceiver, DtmfSender
from .errors import LocalMediaError, MalformedPacketError, UnsupportedCodecError
from .events import (
    AudioReceived,
    DtmfReceived,
    MediaEvent,
    MediaStats,
    RtcpReceived,
    SourceLatched,
)
from .g711 import G711Codec
from .reception import ReceptionStats
from .rtcp import parse_rtcp
from .rtp import RtpPacketizer, parse_fields
from .srtp import SrtpSession

__all__ = ["RELATCH_AFTER", "MediaSession", "RandomSource"]

Address = tuple[str, int]
Pcm = npt.NDArray[np.int16]
_INT16: Final = np.dtype(np.int16)

RELATCH_AFTER: Final = 1.0
"""Seconds the latched source must be silent before another one may take over."""
MAX_CATCH_UP: Final = 10
"""Ticks handled at once after a late timer; older ones are skipped (time moves on)."""


class MediaSession:
    """One SDES-SRTP G.711 audio stream, both directions (see the module docstring).

    Args:
        config: the negotiated media configuration (SDES crypto, G.711 codec).
        local_ssrc: our SSRC (drawn by the caller at random).
        rng: the injected random source (first sequence number and timestamp, RTCP
            interval jitter, CNAME).
        comfort_noise: send G.711 silence on ticks without local audio (no gaps).
        cname: the RTCP CNAME (default: 16 random hex digits, RFC 7022 style).
        cut_through: forward each packet as it comes, both ways (module docstring):
            audio goes out with :meth:`send_audio_now` (or :meth:`send_payload_now`),
            received audio is reported at once; :meth:`send_audio` and :meth:`ticks_due`
            are not used.
        report_payloads: cut-through only: report received audio as
            :class:`~.cut_through.PayloadReceived` (the G.711 codes, not decoded).
        payload_sink: cut-through only: called with each received audio payload and its
            codec instead of a ``PayloadReceived`` event (the relay's per-packet path).
            A packet after a gap still comes as events (the gap's ``AudioReceived``,
            then ``PayloadReceived``), so the order is kept. It must not raise: an
            exception leaves :meth:`receive_datagram` (the state is consistent).

    Raises:
        LocalMediaError: the configuration is not SDES-keyed, or its suite is not supported.
        UnsupportedCodecError: the send codec is not G.711.
    """

    def __init__(
        self,
        config: MediaConfig,
        *,
        local_ssrc: int,
        rng: RandomSource,
        comfort_noise: bool = True,
        cname: str | None = None,
        cut_through: bool = False,
        report_payloads: bool = False,
        payload_sink: PayloadSink | None = None,
    ) -> None:
        self._rng = rng
        self._cut_through = cut_through
        self._report_payloads = cut_through and (report_payloads or payload_sink is not None)
        self._payload_sink = payload_sink if cut_through else None
        self._cut: CutThroughSender | None = None  # created by start()
        self._order = ForwardOrder()
        self._srtp = SrtpSession(_sdes(config))
        self._use_config(config)
        codec = _send_codec(config)
        packetizer = RtpPacketizer(
            local_ssrc, codec.payload_type, CLOCK_RATE, rng.getrandbits(16), rng.getrandbits(32)
        )
        self._out = OutboundStream(
            codec, packetizer, _samples(config), dtmf=None, comfort_noise=comfort_noise
        )
        self._rtcp = RtcpReports(cname or f"{rng.getrandbits(64):016x}", rng)
        self._remote = config.remote_address
        self._remote_rtcp = config.remote_rtcp_address
        self._latched = self._rtcp_latched = False
        self._remote_ssrc: int | None = None
        self._last_rx = float("-inf")
        self._reception: ReceptionStats | None = None
        self._dtmf_rx: DtmfReceiver | None = None
        self._dtmf_active = False  # the receiver's ``active``, as of the last packet fed
        self._apply_codecs(config)
        self._events: deque[MediaEvent] = deque()
        self._playout = Playout(config.ptime, self._events)
        self._datagrams: list[tuple[bytes, Address]] = []
        self._drops = DropLog(self._events)
        self._drop = self._drops.drop
        # counters as plain attributes: three of them move on every packet
        self._received = self._octets = self._datagrams_received = 0
        self._dtmf_received = self._concealed = 0
        self._epoch: float | None = None
        self._ticks = 0
        self._unix_offset = 0.0
        self._sent_since_report = False
        self._closed = False
        self._running = False  # started and not closed: the clock ticks

    # -- public API ------------------------------------------------------------------

    def __repr__(self) -> str:
        """SSRC, destination and suite (never keys)."""
        return (
            f"MediaSession(ssrc={self.local_ssrc:#010x}, remote={self._remote}, "
            f"suite={self._srtp.suite!r}, latched={self._latched})"
        )

    @property
    def config(self) -> MediaConfig:
        """The configuration in force."""
        return self._config

    @property
    def local_ssrc(self) -> int:
        """Our SSRC."""
        return self._out.packetizer.ssrc

    @property
    def cname(self) -> str:
        """Our RTCP CNAME."""
        return self._rtcp.cname

    @property
    def remote_address(self) -> Address:
        """Where our RTP goes: the SDP address until a source is latched."""
        return self._remote

    @property
    def remote_rtcp_address(self) -> Address:
        """Where our RTCP goes."""
        return self._remote_rtcp

    def start(self, now: float, *, unix_offset: float = 0.0) -> None:
        """Start the tick clock: the first packet goes out at ``now``.

        Args:
            now: the current time (any monotonic clock, seconds).
            unix_offset: wall-clock seconds minus ``now`` (for RTCP NTP timestamps).
        """
        if self._epoch is not None:
            return
        self._epoch, self._ticks, self._unix_offset = now, 0, unix_offset
        self._running = not self._closed
        if self._cut_through:
            self._cut = CutThroughSender(self._out, self._ptime, now, CLOCK_RATE)
            self._cut.sending = self._sends
        self._schedule_rtcp(now, initial=True)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (None: not started, or closed)."""
        epoch = self._epoch
        if not self._running or epoch is None:
            return None
        cut = self._cut
        tick = epoch + self._ticks * self._ptime if cut is None else cut.deadline()
        rtcp = self._rtcp.next_at
        return tick if tick < rtcp else rtcp

    def ticks_due(self, now: float) -> int:
        """How many ptime ticks :meth:`handle_timer` would handle at ``now``."""
        epoch = self._epoch
        if not self._running or epoch is None or now < epoch or self._cut is not None:
            return 0
        behind = int((now - epoch) / self._ptime + 1e-9) + 1 - self._ticks  # _behind inlined
        return 0 if behind < 0 else behind if behind < MAX_CATCH_UP else MAX_CATCH_UP

    def handle_timer(self, now: float) -> None:
        """Run the due ptime ticks (send, play out) and the RTCP report if due."""
        epoch = self._epoch
        if not self._running or epoch is None:
            return
        if self._cut is not None:
            self._send_packets(self._cut.handle(now))
            self._after_ticks(now)
            return
        # _behind inlined: ticks due and not handled yet
        behind = int((now - epoch) / self._ptime + 1e-9) + 1 - self._ticks if now >= epoch else 0
        if behind == 1:  # the common case: on time
            self._tick(now)
        elif behind > 1:
            for _ in range(behind - MAX_CATCH_UP):  # very late: move time on, no burst
                self._out.skip()
                self._ticks += 1
            for _ in range(min(behind, MAX_CATCH_UP)):
                self._tick(now)
        self._after_ticks(now)

    def _after_ticks(self, now: float) -> None:
        if now >= self._rtcp.next_at:
            self._send_rtcp(now)
            self._schedule_rtcp(now, initial=False)
        if self._drops.unreported:
            self._drops.flush(now)

    def send_audio(self, pcm: Pcm, now: float) -> None:
        """Queue local audio (8 kHz mono ``int16``); one frame goes out per tick.

        Raises:
            LocalMediaError: not a one-dimensional ``int16`` array.
        """
        self._out.push(pcm)

    def send_audio_now(self, pcm: Pcm, now: float) -> None:
        """Cut-through: packetize, protect and queue ``pcm`` (8 kHz ``int16``) at once.

        Longer than one ptime, it goes out as several packets; the timestamp moves by
        its samples. Dropped (and counted) while a digit is sent; dropped before
        :meth:`start`, after :meth:`close` and when the direction does not send.

        Raises:
            LocalMediaError: not a one-dimensional ``int16`` array, or not cut-through.
        """
        if (
            self._cut is None
            or pcm.__class__ is not np.ndarray
            or pcm.dtype is not _INT16
            or pcm.ndim != 1
        ):
            check_pcm(pcm)  # the fast path takes a one-dimensional native int16 array only
        self._send_now(self._out.codec.encode_frame(pcm), now)

    def send_payload_now(self, payload: bytes, codec: str, now: float) -> None:
        """Cut-through: like :meth:`send_audio_now` for G.711 codes (``codec`` PCMU or
        PCMA; turned into the send codec's law if it is the other one).

        Raises:
            LocalMediaError: not cut-through.
        """
        law = self._out.codec.name
        if codec != law:
            payload = convert_g711(payload, codec, law)
        cut = self._cut  # _send_now, inlined for the common case: one frame, sending
        if cut is not None and self._running and self._sends and len(payload) <= self._out.samples:
            if (packet := cut.audio(payload, now)) is not None:
                self._datagrams.append((self._srtp.protect(packet), self._remote))
                self._sent_since_report = True
            return
        self._send_now(payload, now)

    def _send_now(self, payload: bytes, now: float) -> None:
        cut = self._cut
        if cut is None:
            if not self._cut_through:
                raise LocalMediaError("sending now needs a cut-through session")
            return  # not started yet
        if not self._running or not self._sends:
            return
        if len(payload) > self._out.samples:
            self._send_packets(cut.send(payload, now))
        elif (packet := cut.audio(payload, now)) is not None:  # one frame: the common case
            self._datagrams.append((self._srtp.protect(packet), self._remote))
            self._sent_since_report = True

    def send_dtmf(self, digit: str, now: float, duration_ms: int = 100) -> None:
        """Queue an RFC 4733 digit; its packets replace audio on the next ticks (slots).

        Raises:
            LocalMediaError: no telephone-event was negotiated, or not a DTMF digit.
        """
        self._out.queue_digit(digit, duration_ms)

    @property
    def audio_suppressed(self) -> int:
        """Cut-through: local audio frames dropped because a digit was being sent."""
        return 0 if self._cut is None else self._cut.suppressed

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        """Handle one datagram from the network (RTP or RTCP, protected). Never raises."""
        if self._closed:
            return
        self._datagrams_received += 1
        if len(data) > 1 and 192 <= data[1] <= 223:  # is_rtcp (RFC 5761), inlined
            self._receive_rtcp(data, source, now)
        else:
            self._receive_rtp(data, source, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """The SRTP/SRTCP datagrams to send, with their destinations; clears the queue."""
        out, self._datagrams = self._datagrams, []
        return out

    @property
    def pending(self) -> bool:
        """Whether datagrams or events wait to be collected."""
        return bool(self._datagrams or self._events)

    def next_event(self) -> MediaEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def update(self, config: MediaConfig, now: float) -> None:
        """Apply a re-negotiated configuration (re-INVITE).

        The SRTP contexts (rollover counters, replay windows) are kept when suite and
        keys did not change; a new remote address undoes the latch.

        Raises:
            LocalMediaError: the new configuration is not SDES-keyed or not supported.
            UnsupportedCodecError: the new send codec is not G.711.
        """
        crypto = _sdes(config)
        codec = _send_codec(config)
        if not self._srtp.same_keys(crypto):
            self._srtp.retire()
            self._srtp = SrtpSession(crypto)
        if config.remote_address != self._config.remote_address:
            self._remote, self._latched = config.remote_address, False
        if config.remote_rtcp_address != self._config.remote_rtcp_address:
            self._remote_rtcp, self._rtcp_latched = config.remote_rtcp_address, False
        ptime_changed = config.ptime != self._config.ptime
        if ptime_changed and self._epoch is not None:
            self._epoch, self._ticks = self._tick_time(self._ticks), 0
        self._out.codec = codec
        self._out.packetizer.payload_type = codec.payload_type
        self._out.samples = _samples(config)
        self._use_config(config)
        self._apply_codecs(config)
        if ptime_changed:
            self._playout.reset(config.ptime)

    def close(self, now: float) -> None:
        """Stop: queue a final SRTCP report with BYE; no timer after this."""
        if self._closed:
            return
        if self._epoch is not None:
            self._send_rtcp(now, bye=True)
        self._closed = True
        self._running = False
        self._srtp.retire()

    def stats(self) -> MediaStats:
        """A snapshot of the counters."""
        reception, out, buffer = self._reception, self._out, self._playout.buffer
        return MediaStats(
            packets_sent=out.packetizer.packet_count,
            octets_sent=out.packetizer.octet_count,
            silence_sent=out.silence_sent,
            dtmf_sent=out.dtmf_sent,
            rtcp_sent=self._rtcp.sent,
            datagrams_received=self._datagrams_received,
            packets_received=self._received,
            octets_received=self._octets,
            rtcp_received=self._rtcp.received,
            dtmf_received=self._dtmf_received,
            dropped=dict(self._drops.counts),
            lost=max(0, reception.cumulative_lost) if reception else 0,
            jitter_ms=reception.jitter_seconds * 1000 if reception else 0.0,
            concealed=self._concealed + self._playout.concealed,
            late=self._drops.counts.get("late", 0) if self._cut_through else buffer.late,
            playout_delay_ms=0.0 if self._cut_through else buffer.delay * 1000,
            audio_overflow=out.overflow,
            round_trip_time=self._rtcp.round_trip_time,
            remote_address=self._remote,
            latched=self._latched,
            suite=self._srtp.suite,
        )

    # -- configuration ---------------------------------------------------------------

    def _use_config(self, config: MediaConfig) -> None:
        """Put ``config`` in force, with the values the per-packet path reads."""
        self._config = config
        self._ptime = config.ptime / 1000
        self._sends = config.direction.sends
        if self._cut is not None:
            self._cut.sending, self._cut.ptime = self._sends, self._ptime
        self._receives = config.direction.receives
        event = config.telephone_event
        self._event_payload_type = -1 if event is None else event.payload_type

    def _apply_codecs(self, config: MediaConfig) -> None:
        self._decoders: dict[int, G711Codec] = {}
        for codec in config.codecs:
            try:
                self._decoders[codec.payload_type] = G711Codec(codec.name, codec.payload_type)
            except (UnsupportedCodecError, LocalMediaError):
                continue  # negotiated but not decodable here: counted when it arrives
        event = config.telephone_event
        receiver = self._dtmf_rx
        if receiver is None or event is None or receiver.payload_type != event.payload_type:
            self._dtmf_rx = self._new_dtmf_receiver()  # a digit in progress survives a re-INVITE
            self._dtmf_active = False
        self._out.dtmf = (
            None
            if event is None
            else DtmfSender(event.payload_type, event.clock_rate, config.ptime)
        )

    def _new_dtmf_receiver(self) -> DtmfReceiver | None:
        event = self._config.telephone_event
        return None if event is None else DtmfReceiver(event.payload_type, event.clock_rate)

    def _tick_time(self, index: int) -> float:
        assert self._epoch is not None
        return self._epoch + index * self._ptime

    # -- ticks -----------------------------------------------------------------------

    def _send_packets(self, packets: list[bytes | None] | list[bytes]) -> None:
        for packet in packets:
            if packet is not None:
                self._datagrams.append((self._srtp.protect(packet), self._remote))
                self._sent_since_report = True

    def _tick(self, now: float) -> None:
        self._ticks += 1
        if self._sends:
            packet = self._out.tick()
            if packet is not None:
                self._datagrams.append((self._srtp.protect(packet), self._remote))
                self._sent_since_report = True
        else:
            self._out.skip()
        playout = self._playout
        if playout.playing and self._receives:
            playout.play(now, self._decoders, _samples(self._config))

    # -- receiving -------------------------------------------------------------------

    def _receive_rtp(self, data: bytes, source: Address, now: float) -> None:
        plain = self._srtp.unprotect(data)
        if plain is None:
            self._drop(self._srtp.last_drop_reason or "malformed", now)
            return
        try:
            payload_type, sequence, timestamp, ssrc, payload = parse_fields(plain)
        except MalformedPacketError:
            self._drop("malformed", now)
            return
        latched = self._latched and ssrc == self._remote_ssrc and source == self._remote
        if not latched and not self._accept_source(ssrc, source, now):
            return
        assert self._reception is not None
        self._reception.update(sequence, timestamp, now)
        self._last_rx = now
        is_event = payload_type == self._event_payload_type
        if not is_event and payload_type not in self._decoders:
            self._drop("unknown_payload_type", now)
            return
        self._received += 1
        self._octets += len(payload)
        if not self._receives:
            return
        receiver = self._dtmf_rx
        if receiver is not None and (is_event or self._dtmf_active):  # else feed does nothing
            for digit in receiver.feed_payload(payload_type, timestamp, payload):
                self._dtmf_received += 1
                self._events.append(DtmfReceived(digit=digit.digit, duration_ms=digit.duration_ms))
            self._dtmf_active = receiver.active  # kept here: read on every packet
        if self._cut_through:
            if not is_event:
                self._forward(payload_type, sequence, timestamp, payload, now)
            return
        playout = self._playout
        if is_event:
            playout.buffer.put_non_audio(sequence, timestamp)  # fills its sequence number
        else:
            playout.buffer.put_frame(sequence, timestamp, (payload_type, payload), now)
        playout.playing = True

    def _forward(
        self, payload_type: int, sequence: int, timestamp: int, payload: bytes, now: float
    ) -> None:
        """Cut-through: report an audio packet at once, unless it is late or a duplicate."""
        verdict = self._order.accept(sequence, timestamp, len(payload))  # G.711: 1 B/sample
        if verdict < 0:
            self._drop(DROP_REASONS[verdict], now)
            return
        decoder = self._decoders[payload_type]
        if verdict:
            self._concealed += 1
            self._events.append(AudioReceived(pcm=gap_silence(verdict), concealed=True))
        elif (sink := self._payload_sink) is not None:  # the common case of a relay
            sink(payload, decoder.name)
            return
        if self._report_payloads:
            self._events.append(PayloadReceived(payload=payload, codec=decoder.name))
        else:
            self._events.append(AudioReceived(pcm=decoder.decode(payload)))

    def _accept_source(self, ssrc: int, source: Address, now: float) -> bool:
        """Symmetric RTP latching; only ever called for authenticated packets."""
        if self._latched and source == self._remote and ssrc == self._remote_ssrc:
            return True
        if self._latched and now - self._last_rx < RELATCH_AFTER:
            self._drop("wrong_source" if source != self._remote else "wrong_ssrc", now)
            return False
        previous, self._remote, self._latched = self._remote, source, True
        if self._config.rtcp_mux:
            self._remote_rtcp = source
        if ssrc != self._remote_ssrc:
            self._remote_ssrc = ssrc
            self._reception = ReceptionStats(ssrc, CLOCK_RATE)
            self._playout.reset(self._config.ptime)
            self._order = ForwardOrder()
            self._dtmf_rx, self._dtmf_active = self._new_dtmf_receiver(), False
        self._events.append(SourceLatched(address=source, ssrc=ssrc, previous=previous))
        return True

    def _receive_rtcp(self, data: bytes, source: Address, now: float) -> None:
        plain = self._srtp.unprotect_rtcp(data)
        if plain is None:
            self._drop(self._srtp.last_drop_reason or "malformed", now)
            return
        try:
            packets = tuple(parse_rtcp(plain))
        except MalformedPacketError:
            self._drop("malformed", now)
            return
        if not self._config.rtcp_mux and not self._rtcp_latched:
            self._remote_rtcp, self._rtcp_latched = source, True
        self._rtcp.account(len(data), sent=False)
        rtt = self._rtcp.read(
            packets,
            now,
            local_ssrc=self.local_ssrc,
            remote_ssrc=self._remote_ssrc,
            reception=self._reception,
            unix_offset=self._unix_offset,
        )
        self._events.append(RtcpReceived(packets=packets, round_trip_time=rtt))

    # -- RTCP ------------------------------------------------------------------------

    def _schedule_rtcp(self, now: float, *, initial: bool) -> None:
        frame_octets = len(self._out.codec.silence(_samples(self._config))) + 12 + 16
        self._rtcp.schedule(
            now,
            initial=initial,
            frame_octets=frame_octets,
            ptime=self._ptime,
            heard=self._reception is not None,
            sends=self._sends,
        )

    def _send_rtcp(self, now: float, *, bye: bool = False) -> None:
        sender = None
        if self._sent_since_report:  # an SR: the RTP timestamp of now, from the schedule
            packetizer = self._out.packetizer
            due = self._tick_time(self._ticks) if self._cut is None else self._cut.due
            sender = (packetizer, packetizer.timestamp - round((due - now) * CLOCK_RATE))
        plain = self._rtcp.compound(
            now,
            ssrc=self.local_ssrc,
            reception=self._reception,
            sender=sender,
            unix_offset=self._unix_offset,
            bye=bye,
        )
        data = self._srtp.protect_rtcp(plain)
        self._datagrams.append((data, self._remote_rtcp))
        self._rtcp.account(len(data), sent=True)
        self._sent_since_report = False
