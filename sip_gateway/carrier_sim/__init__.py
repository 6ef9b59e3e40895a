"""A PSTN gateway simulator on the gateway leg's own stack (``pstn-bridge carrier-sim``).

It speaks the real protocols, SIP over TLS and SDES-SRTP with G.711 and RFC 4733, so the
bridge (and its tests) can be run with no carrier: it listens on ``127.0.0.1:5062`` by
default, refuses plain RTP with 488, and answers any E.164 number after a ring time with
one of the :class:`SimMode` behaviours (echo, play a WAV, a tone, busy, no answer). It
records what it receives to WAV when asked, sends and logs DTMF, and can place calls
toward the bridge as a carrier calling in::

    config = CarrierSimConfig(certificate=cert, private_key=key, mode="tone", record_dir=rec)
    async with CarrierSimulator(config) as sim:
        call = await sim.call("+15551230001", "127.0.0.1", 5061, ca_file=ca)
        ...
        await call.hangup()
        print(call.digits, call.suite, call.media_stats(), call.recording)

:func:`run_carrier_sim` runs it until cancelled. It is a test and demo tool: it accepts
calls from any peer (and logs who called), which a real trunk never does.
"""

from .audio import (
    EchoBuffer,
    PlaySource,
    ToneSource,
    WavFormatError,
    WavRecorder,
    load_wav,
)
from .config import ANY_PEER, CarrierSimConfig, SimMode
from .simulator import CarrierSimulator, SimCall, run_carrier_sim

__all__ = [
    "ANY_PEER",
    "CarrierSimConfig",
    "CarrierSimulator",
    "EchoBuffer",
    "PlaySource",
    "SimCall",
    "SimMode",
    "ToneSource",
    "WavFormatError",
    "WavRecorder",
    "load_wav",
    "run_carrier_sim",
]
