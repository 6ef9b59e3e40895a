"""What a media session takes from its configuration, and what it draws randomness from.

Theory of operation: :class:`~sip_gateway.media.session.MediaSession` checks a
:class:`~sip_gateway.sdp.MediaConfig` with these helpers when it is created and on every
re-INVITE: the SRTP keys must come from SDES (DTLS legs run on aiortc), the send codec
must be G.711 at 8 kHz, and the frame size follows the negotiated ptime. The session's
randomness (SSRC, first sequence number and timestamp, RTCP jitter, CNAME) comes from an
injected :class:`RandomSource`. No I/O, no state.
"""

from __future__ import annotations

from typing import Final, Protocol

from sip_gateway.sdp.media_config import MediaConfig, SdesCrypto

from .errors import LocalMediaError, UnsupportedCodecError
from .g711 import G711Codec

__all__ = ["CLOCK_RATE", "RandomSource", "frame_samples", "sdes_crypto", "send_codec"]

CLOCK_RATE: Final = 8000
"""The RTP clock rate of G.711 (and of the session's PCM)."""


class RandomSource(Protocol):
    """What the session draws from (``random.Random`` or ``secrets.SystemRandom`` fit)."""

    def random(self) -> float:
        """A float uniformly drawn from [0, 1)."""
        ...

    def getrandbits(self, k: int, /) -> int:
        """An integer with ``k`` random bits."""
        ...


def sdes_crypto(config: MediaConfig) -> SdesCrypto:
    """The configuration's SDES keys.

    Raises:
        LocalMediaError: the configuration is not SDES-keyed.
    """
    if not isinstance(config.crypto, SdesCrypto):
        raise LocalMediaError("MediaSession needs SDES-keyed SRTP (DTLS legs use aiortc)")
    return config.crypto


def send_codec(config: MediaConfig) -> G711Codec:
    """The G.711 codec we send with.

    Raises:
        UnsupportedCodecError: the send codec is not G.711 at 8 kHz.
    """
    codec = config.codec
    if codec.clock_rate != CLOCK_RATE:
        raise UnsupportedCodecError(f"unsupported clock rate for {codec}")
    return G711Codec(codec.name, codec.payload_type)


def frame_samples(config: MediaConfig) -> int:
    """Samples in one frame of the negotiated ptime."""
    return CLOCK_RATE * config.ptime // 1000
