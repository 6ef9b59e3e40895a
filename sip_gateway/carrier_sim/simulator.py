"""The carrier simulator at run time: a trunk gateway whose routing is the behaviour.

Theory of operation: :class:`CarrierSimulator` runs a
:class:`~sip_gateway.trunk.TrunkGateway` with one inbound trunk that accepts any source
address, listening on SIP over TLS. Screening is the trunk's: a called number that is not
E.164 gets 484, an offer without acceptable SDES-SRTP (plain ``RTP/AVP``) gets 488. Each
screened call reaches :meth:`CarrierSimulator._route`, which plays the configured
:class:`~.config.SimMode`: refuse (486), ring forever (487 on CANCEL, 480 after the no-answer
timeout), or ring for ``ring_time`` and answer with an
:class:`~sip_gateway.aio.RtpMediaPort` whose audio source is the echo buffer, the tone or
the WAV. :meth:`CarrierSimulator.call` places calls the other way, as a carrier calling in,
through a small gateway per target (:class:`~sip_gateway.trunk.OutboundCall`).

Every call is a :class:`SimCall`: the facts a test or an operator wants (number, peer,
times, suite, DTMF received, packet counts, recording) and the per-call behaviour after
the answer (DTMF to send, hang-up timer, recording). Logs go to ``sip_gateway.carrier_sim``
and start with ``carrier-sim:``; they name peers, numbers and received digits, never keys
or SDP bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

from sip_gateway.aio import RtpMediaPort, SipEndpointConfig, SipTlsServer
from sip_gateway.aio.endpoint import format_address
from sip_gateway.media.errors import LocalMediaError
from sip_gateway.media.events import DtmfReceived, MediaEvent, MediaStats
from sip_gateway.sdp import KeySource, MediaConfig, SdpError
from sip_gateway.trunk import (
    Answer,
    CallAnswered,
    CallEnded,
    CallEvent,
    CallLeg,
    InboundCall,
    OutboundCall,
    Reject,
    RouteDecision,
    TrunkError,
    TrunkGateway,
)

from .audio import (
    AnnouncedEcho,
    EchoBuffer,
    Pcm,
    PlaySource,
    ToneSource,
    WavRecorder,
    chime,
    load_wav,
)
from .config import CarrierSimConfig, SimMode

__all__ = ["CarrierSimulator", "SimCall", "run_carrier_sim"]

logger = logging.getLogger("sip_gateway.carrier_sim")

TARGET = "target"
"""Trunk name of the per-target gateways the simulator dials through."""
CLOSE_TIMEOUT = 3.0
"""Seconds :meth:`CarrierSimulator.aclose` waits for each call to hang up."""
_UNSAFE = re.compile(r"[^A-Za-z0-9+]")
Direction = Literal["inbound", "outbound"]


class SimCall:
    """One call the simulator received or placed, with its facts (see the module docstring).

    Attributes:
        index: 1, 2, ... in the order the simulator saw calls.
        direction: ``inbound`` (a peer called the simulator) or ``outbound``.
        number: the called number (E.164).
        caller: the calling number, when known.
        peer: the signaling peer's (host, port).
        mode: the behaviour applied to it.
        call_id: the SIP Call-ID ("" until known).
        started_at, answered_at, ended_at: wall-clock times (``time.time()``).
        end_reason: why it ended (``EndReason`` value), None while it lasts.
        status_code: the final SIP status that ended it, if any.
        digits: RFC 4733 digits received, in order.
        digits_sent: digits the simulator sent.
        suite: the SRTP suite, once answered.
        stats: the media counters, set when the call ends (see :meth:`media_stats`).
        recording: the WAV of the received audio, when recording.
    """

    def __init__(
        self,
        config: CarrierSimConfig,
        *,
        index: int,
        direction: Direction,
        number: str,
        caller: str | None,
        peer: tuple[str, int] | None,
        mode: SimMode,
        wav: Pcm | None,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.index, self.direction, self.mode = index, direction, mode
        self.number, self.caller, self.peer = number, caller, peer
        self.call_id = ""
        self._clock = clock
        self.started_at = clock()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.status_code: int | None = None
        self.digits: list[str] = []
        self.digits_sent = ""
        self.suite: str | None = None
        self.stats: MediaStats | None = None
        self.recording: Path | None = None
        self.leg: CallLeg | None = None
        self.media: RtpMediaPort | None = None
        self._wav = wav
        self._recorder: WavRecorder | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        state = self.end_reason or ("answered" if self.answered_at else "ringing")
        return f"<SimCall #{self.index} {self.direction} {self.number} {self.mode} {state}>"

    @property
    def answered(self) -> bool:
        """Whether the call was answered."""
        return self.answered_at is not None

    @property
    def ended(self) -> bool:
        """Whether the call is over."""
        return self.ended_at is not None

    def media_stats(self) -> MediaStats:
        """The media counters now (zeros before media started)."""
        if self.stats is not None:
            return self.stats
        return self.media.stats() if self.media is not None else MediaStats()

    async def wait_ended(self) -> None:
        """Wait until the call is over (bound it with ``asyncio.timeout``)."""
        await asyncio.shield(self._done)

    async def hangup(self) -> None:
        """Hang up (BYE, CANCEL or a final refusal, as the state requires) and wait."""
        if self.leg is not None and not self.ended:
            await self.leg.hangup()

    # -- set-up ----------------------------------------------------------------------

    async def open_media(self) -> RtpMediaPort:
        """Bind the call's media port with the mode's audio source and the recorder.

        Raises:
            OSError: no UDP port, or the recording file cannot be created.
        """
        echo = EchoBuffer() if self.mode is SimMode.ECHO else None
        if echo is not None and self.config.announcement:
            echo = AnnouncedEcho(self._wav if self._wav is not None else chime())
        source: Callable[[], Pcm | None] | None = echo
        if self.mode is SimMode.TONE:
            cfg = self.config
            source = ToneSource(cfg.tone_hz, on=cfg.tone_on, off=cfg.tone_off, level=cfg.tone_level)
        elif self.mode is SimMode.PLAY and self._wav is not None:
            source = PlaySource(self._wav)
        if self.config.record_dir is not None:
            self.recording = self.config.record_dir / self._recording_name()
            self._recorder = WavRecorder(self.recording)
        recorder = self._recorder

        def sink(pcm: Pcm) -> None:
            if recorder is not None:
                recorder.write(pcm)
            if echo is not None:
                echo.push(pcm)

        self.media = await RtpMediaPort.open(
            self.config.media_address,
            port_range=self.config.media_port_range,
            rtcp_mux=False,  # also take RTCP on port + 1 from peers that refuse rtcp-mux
            audio_source=source,
            audio_sink=sink,
            on_event=self.on_media_event,
        )
        return self.media

    def _recording_name(self) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started_at))
        number = _UNSAFE.sub("", self.number)[:20]
        return f"{stamp}-{self.index:04d}-{self.direction}-{number}.wav"

    def attach(self, leg: CallLeg) -> None:
        """Bind the call to its signaling leg."""
        self.leg, self.call_id = leg, leg.call_id

    # -- events ----------------------------------------------------------------------

    def on_call_event(self, event: CallEvent) -> None:
        """The leg's event callback."""
        if isinstance(event, CallAnswered):
            self._on_answered(event.media)
        elif isinstance(event, CallEnded):
            self._on_ended(event)

    def on_media_event(self, event: MediaEvent) -> None:
        """The media port's event callback: log and keep received digits."""
        if isinstance(event, DtmfReceived):
            self.digits.append(event.digit)
            logger.info("carrier-sim: DTMF %r on call %s", event.digit, self.call_id)

    def _on_answered(self, media: MediaConfig) -> None:
        self.answered_at = self._clock()
        self.suite = getattr(media.crypto, "suite", None)
        logger.info(
            "carrier-sim: call %s (%s %s) answered: %s, SRTP %s, media to %s",
            self.call_id,
            self.direction,
            self.number,
            self.mode,
            self.suite,
            format_address(media.remote_address),
        )
        if self.config.dtmf_to_send:
            self._spawn(self._send_digits(), "dtmf")
        if self.config.hangup_after is not None:
            self._spawn(self._hangup_later(self.config.hangup_after), "hangup")

    def _on_ended(self, event: CallEnded) -> None:
        self.ended_at = self._clock()
        self.end_reason, self.status_code = str(event.reason), event.status_code
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if self.media is not None:
            self.media.close()
            self.stats = self.media.stats()
        if self._recorder is not None:
            self._recorder.close()
        stats = self.media_stats()
        logger.info(
            "carrier-sim: call %s ended (%s%s): %d packets sent, %d received, %d dropped%s",
            self.call_id,
            self.end_reason,
            f", {self.status_code}" if self.status_code else "",
            stats.packets_sent,
            stats.packets_received,
            sum(stats.dropped.values()),
            f", recorded to {self.recording}" if self.recording else "",
        )
        if not self._done.done():
            self._done.set_result(None)

    # -- behaviour after the answer ----------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=f"{self.call_id} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "carrier-sim: call %s: task failed", self.call_id, exc_info=task.exception()
            )

    async def _send_digits(self) -> None:
        await asyncio.sleep(self.config.dtmf_delay)
        if self.media is None or self.ended:
            return
        for digit in self.config.dtmf_to_send:
            try:
                self.media.send_dtmf(digit, self.config.dtmf_duration_ms)
            except LocalMediaError as exc:
                logger.warning("carrier-sim: call %s: cannot send DTMF: %s", self.call_id, exc)
                return
            self.digits_sent += digit.upper()
        logger.info("carrier-sim: sending DTMF %r on call %s", self.digits_sent, self.call_id)

    async def _hangup_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        logger.info("carrier-sim: call %s: hanging up after %.1f s", self.call_id, delay)
        await self.hangup()

    async def aclose(self) -> None:
        """Cancel the background work and close media and recording (after the end)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.media is not None:
            self.media.close()
        if self._recorder is not None:
            self._recorder.close()


class CarrierSimulator:
    """A PSTN gateway simulator on SIP-TLS with SDES-SRTP (see the module docstring).

    Args:
        config: what it does.
        key_source: SRTP key material (``secrets.token_bytes``).
        clock: wall clock for the call facts.
        endpoint_config: SIP connection settings (defaults are fine).
    """

    def __init__(
        self,
        config: CarrierSimConfig,
        *,
        key_source: KeySource = secrets.token_bytes,
        clock: Callable[[], float] = time.time,
        endpoint_config: SipEndpointConfig | None = None,
    ) -> None:
        self.config = config
        self._key_source = key_source
        self._clock = clock
        self._endpoint_config = endpoint_config
        self._gateway: TrunkGateway | None = None
        self._server: SipTlsServer | None = None
        self._dialers: dict[tuple[str, int, str | None, Path | None], TrunkGateway] = {}
        self._calls: list[SimCall] = []
        self._wav: Pcm | None = None
        self._index = itertools.count(1)

    def __repr__(self) -> str:
        where = f"port {self._server.port}" if self._server else "stopped"
        return f"<CarrierSimulator {self.config.mode} {where} calls={len(self._calls)}>"

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the WAV (play mode) and start listening.

        Raises:
            WavFormatError: the play file is not an 8 kHz mono 16-bit PCM WAV.
            TlsPolicyError: the certificate or key cannot be used.
            OSError: the listener cannot bind, or the record directory cannot be made.
        """
        if self._gateway is not None:
            return
        config = self.config
        if config.play_file is not None:
            self._wav = load_wav(config.play_file)
        if config.record_dir is not None:
            config.record_dir.mkdir(parents=True, exist_ok=True)
        context = config.server_context()
        gateway = self._new_gateway(config.inbound_trunk(), route=self._route)
        self._server = await gateway.listen(config.listen_host, config.listen_port, context)
        self._gateway = gateway
        logger.info(
            "carrier-sim: listening on %s (SIP over TLS, SRTP required), mode %s",
            format_address((config.listen_host, self._server.port)),
            config.mode,
        )

    async def aclose(self) -> None:
        """Hang up every call (bounded), then stop listening and close connections."""
        for call in self._calls:
            if not call.ended:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await call.hangup()
            await call.aclose()
        gateways = [*self._dialers.values(), *([self._gateway] if self._gateway else [])]
        self._dialers.clear()
        self._gateway = None
        for gateway in gateways:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await gateway.aclose()

    async def __aenter__(self) -> CarrierSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def port(self) -> int:
        """The SIP-TLS port it listens on.

        Raises:
            RuntimeError: not started.
        """
        if self._server is None:
            raise RuntimeError("the carrier simulator is not started")
        return self._server.port

    @property
    def calls(self) -> tuple[SimCall, ...]:
        """Every call so far, oldest first."""
        return tuple(self._calls)

    def _new_gateway(self, trunk: Any, **kwargs: Any) -> TrunkGateway:
        return TrunkGateway(
            [trunk],
            user=self.config.user,
            key_source=self._key_source,
            endpoint_config=self._endpoint_config,
            **kwargs,
        )

    def _new_call(self, direction: Direction, number: str, **facts: Any) -> SimCall:
        call = SimCall(
            self.config,
            index=next(self._index),
            direction=direction,
            number=number,
            wav=self._wav,
            clock=self._clock,
            **facts,
        )
        self._calls.append(call)
        return call

    # -- calls in ----------------------------------------------------------------------

    async def _route(self, inbound: InboundCall) -> RouteDecision:
        mode = self.config.mode
        endpoint = inbound.endpoint
        peer = endpoint.peer if endpoint is not None else None
        call = self._new_call("inbound", inbound.did, caller=inbound.caller, peer=peer, mode=mode)
        call.attach(inbound)
        inbound.on_event = call.on_call_event
        names = sorted(endpoint.peer_certificate_names) if endpoint is not None else []
        logger.info(
            "carrier-sim: call %s from %s (certificate %s) for %s, caller %s: %s",
            inbound.call_id,
            format_address(peer) if peer else "?",
            names or "none",
            inbound.did,
            inbound.caller,
            mode,
        )
        if mode is SimMode.BUSY:
            return Reject(status_code=486)
        if mode is SimMode.NO_ANSWER:
            inbound.ring()
            await asyncio.sleep(self.config.no_answer_timeout)
            return Reject(status_code=480)
        media = None
        if self.config.early_media:  # 183 with SDP: the caller hears us before the answer
            media = await call.open_media()
            try:
                inbound.progress(media)
            except (SdpError, TrunkError) as exc:
                logger.info("carrier-sim: call %s: no early media: %s", inbound.call_id, exc)
                return Reject(status_code=488)
        elif self.config.ring_time > 0:
            inbound.ring()
        if self.config.ring_time > 0:
            await asyncio.sleep(self.config.ring_time)
        if media is None:
            media = await call.open_media()
        return Answer(media=media, ring=False, on_event=call.on_call_event)

    # -- calls out ---------------------------------------------------------------------

    async def call(
        self,
        number: str,
        host: str,
        port: int,
        *,
        server_name: str | None = None,
        ca_file: Path | None = None,
        caller: str | None = None,
        mode: SimMode | str | None = None,
    ) -> SimCall:
        """Place a call to ``number`` at the SIP-TLS peer ``host:port`` and wait for the answer.

        The call's media follows ``mode`` (default: the configured one), with the same
        recording, DTMF and hang-up settings as answered calls.

        Args:
            number: the called number (E.164, or national with ``country_code``).
            host: the peer's address or name.
            port: its SIP-TLS port.
            server_name: the name its certificate must carry (default ``host``).
            ca_file: CA bundle to verify it (default: the configured ``ca_file``).
            caller: our calling number (From), if any.
            mode: ``echo``, ``tone`` or ``play`` (busy/no-answer make no sense here).

        Raises:
            RuntimeError: the simulator is not started.
            ValueError: ``mode`` does not answer calls (busy, no-answer), or play without WAV.
            InvalidNumberError: ``number`` is not E.164 material (484).
            CallFailedError: the call was not answered (its ``failure`` says why).
            OSError: no media port could be bound.
        """
        if self._gateway is None:
            raise RuntimeError("start the carrier simulator before placing calls")
        chosen = SimMode(mode) if mode is not None else self.config.mode
        if not chosen.answers or (chosen is SimMode.PLAY and self._wav is None):
            raise ValueError(f"mode {chosen} cannot be used for a call the simulator places")
        dialer = self._dialer(host, port, server_name, ca_file)
        number = dialer.trunk(TARGET).config.normalize(number)
        call = self._new_call("outbound", number, caller=caller, peer=(host, port), mode=chosen)
        media = await call.open_media()
        try:
            leg: OutboundCall = dialer.call(
                TARGET, number, media=media, caller=caller, on_event=call.on_call_event
            )
        except Exception:
            await call.aclose()
            self._calls.remove(call)
            raise
        call.attach(leg)
        logger.info(
            "carrier-sim: calling %s at %s (%s)", number, format_address((host, port)), chosen
        )
        try:
            await leg.wait_answered()
        except asyncio.CancelledError:
            leg.cancel()
            raise
        return call

    def _dialer(
        self, host: str, port: int, server_name: str | None, ca_file: Path | None
    ) -> TrunkGateway:
        key = (host, port, server_name, ca_file)
        dialer = self._dialers.get(key)
        if dialer is None:
            trunk = self.config.outbound_trunk(
                TARGET, host, port, server_name=server_name, ca_file=ca_file
            )
            dialer = self._dialers[key] = self._new_gateway(trunk)
        return dialer


async def run_carrier_sim(config: CarrierSimConfig) -> None:
    """Run the simulator until cancelled (``pstn-bridge carrier-sim``).

    Raises:
        WavFormatError: the play file is not an 8 kHz mono 16-bit PCM WAV.
        TlsPolicyError: the certificate or key cannot be used.
        OSError: the listener cannot bind.
    """
    async with CarrierSimulator(config):
        await asyncio.Event().wait()
