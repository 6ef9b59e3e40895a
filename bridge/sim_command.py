"""The carrier simulator as a command (``pstn-bridge carrier-sim``) and inside ``serve``.

Theory of operation: :func:`carrier_sim_config` maps ``[carrier_sim]`` to the simulator's
own configuration; :func:`start_carrier_sim` starts it in-process for the embedded
defaults (the default trunk of ``make run``); :func:`run_carrier_sim_command` serves
stand-alone until a signal, or places one call (:class:`OutboundSimCall`) and waits for
its end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sip_gateway.carrier_sim import (
    CarrierSimConfig,
    CarrierSimulator,
    SimMode,
    WavFormatError,
    run_carrier_sim,
)
from sip_gateway.tls import TlsPolicyError
from sip_gateway.trunk import CallFailedError

from .launch import StartupError, configure_logging, run_until_signal, tls_material
from .settings import CarrierSimSettings, Settings

__all__ = [
    "OutboundSimCall",
    "carrier_sim_config",
    "run_carrier_sim_command",
    "start_carrier_sim",
]

log = logging.getLogger("bridge.app")


async def start_carrier_sim(
    settings: Settings, cert: Path, key: Path, ca: Path | None
) -> CarrierSimulator | None:
    if not settings.carrier_sim.enabled:
        return None
    simulator = CarrierSimulator(carrier_sim_config(settings.carrier_sim, cert, key, ca))
    try:
        await simulator.start()
    except (OSError, ValueError, TlsPolicyError) as exc:
        raise StartupError(f"cannot start the carrier simulator: {exc}") from exc
    log.info(
        "carrier simulator (%s) on %s:%d",
        settings.carrier_sim.mode,
        settings.carrier_sim.listen_host,
        simulator.port,
    )
    return simulator


def carrier_sim_config(
    sim: CarrierSimSettings, cert: Path, key: Path, ca: Path | None
) -> CarrierSimConfig:
    """Map the simulator's settings to its own configuration object.

    Raises:
        ValueError: an option the simulator refuses.
    """
    return CarrierSimConfig(
        listen_host=sim.listen_host,
        listen_port=sim.listen_port,
        certificate=cert,
        private_key=key,
        ca_file=ca,
        mode=SimMode(sim.mode),
        play_file=sim.play_file,
        tone_hz=sim.tone_hz,
        announcement=sim.announcement,
        early_media=sim.early_media,
        ring_time=sim.ring_time,
        no_answer_timeout=sim.no_answer_timeout,
        record_dir=sim.record_dir,
        dtmf_to_send=sim.dtmf_to_send,
        dtmf_delay=sim.dtmf_delay,
        hangup_after=sim.hangup_after,
        media_host=sim.media_host,
        media_port_range=sim.media_port_range,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundSimCall:
    """A call the stand-alone simulator places (``pstn-bridge carrier-sim --call``)."""

    number: str
    host: str
    port: int
    server_name: str | None = None
    caller: str | None = None


async def run_carrier_sim_command(settings: Settings, place: OutboundSimCall | None) -> int:
    """Run ``pstn-bridge carrier-sim``: serve until SIGINT/SIGTERM, or place one call.

    Returns:
        the exit status: 0, or 1 when the placed call was not answered.

    Raises:
        StartupError: certificates, WAV or listener cannot be used.
    """
    configure_logging(settings)
    cert, key, ca = tls_material(settings)
    try:
        config = carrier_sim_config(settings.carrier_sim, cert, key, ca)
        if place is None:
            await run_until_signal(run_carrier_sim(config))
            return 0
        async with CarrierSimulator(config) as simulator:
            return await _place_call(simulator, place)
    except (WavFormatError, TlsPolicyError, ValueError, OSError) as exc:
        raise StartupError(f"carrier simulator: {exc}") from exc


async def _place_call(simulator: CarrierSimulator, place: OutboundSimCall) -> int:
    try:
        call = await simulator.call(
            place.number,
            place.host,
            place.port,
            server_name=place.server_name,
            caller=place.caller,
        )
    except CallFailedError as exc:
        print(f"call to {place.number} failed: {exc.failure.value} ({exc.status_code})")
        return 1
    print(f"call to {place.number} answered (SRTP {call.suite}); hang up with Ctrl-C")
    await run_until_signal(call.wait_ended())
    if call.end_reason is None:
        await call.hangup()
    print(f"call ended: {call.end_reason}; DTMF received: {''.join(call.digits) or '-'}")
    return 0
