"""G.711 mu-law (PCMU) and A-law (PCMA) by table lookup.

Theory of operation: G.711 maps 16-bit linear PCM to 8-bit codes and back. Both
directions are precomputed once at import, vectorised with numpy, following the ITU-T
G.191 software tool library's reference algorithm (one's complement for negative
samples, truncation to 14 bits for mu-law and 13 bits for A-law):

* encode: a 65536-entry ``uint8`` table indexed by the samples' ``uint16`` bit patterns
  (``take`` wraps negative ``int16`` indices onto exactly those entries),
  so a frame is one ``take`` (well under a microsecond for 160 samples; ``take`` skips
  the generic machinery of fancy indexing, which costs about as much again);
* decode: a 256-entry ``int16`` table indexed by the code bytes.

This module owns the codec arithmetic only: no packetization, no resampling, no I/O.
Samples are ``numpy`` arrays of ``int16`` (native byte order) at 8 kHz; codes are
``bytes``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from .errors import LocalMediaError, UnsupportedCodecError

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "G711Codec",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

Pcm = npt.NDArray[np.int16]

ULAW_SILENCE: Final = 0xFF
"""The mu-law code of linear 0 (positive zero)."""
ALAW_SILENCE: Final = 0xD5
"""The A-law code of the smallest positive level (A-law has no exact zero)."""

_SEGMENT_ENDS_ULAW = np.array([64, 128, 256, 512, 1024, 2048, 4096], dtype=np.int32)
_SEGMENT_ENDS_ALAW = np.array([16, 32, 64, 128, 256, 512, 1024], dtype=np.int32)


def _all_samples() -> npt.NDArray[np.int32]:
    """Every int16 value, in the order of its uint16 bit pattern (the table index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encoder() -> npt.NDArray[np.uint8]:
    x = _all_samples()
    magnitude = np.where(x < 0, ~x, x) >> 2  # 14-bit magnitude, one's complement
    biased = np.minimum(magnitude + 33, 0x1FFF)
    exponent = np.searchsorted(_SEGMENT_ENDS_ULAW, biased, side="right").astype(np.int32)
    mantissa = (biased >> (exponent + 1)) & 0x0F
    code = 0x7F ^ ((exponent << 4) | mantissa)
    table: npt.NDArray[np.uint8] = np.where(x >= 0, code | 0x80, code).astype(np.uint8)
    return table


def _build_alaw_encoder() -> npt.NDArray[np.uint8]:
    x = _all_samples()
    magnitude = np.where(x < 0, ~x, x) >> 4  # 12-bit magnitude, one's complement
    exponent = np.searchsorted(_SEGMENT_ENDS_ALAW, magnitude, side="right").astype(np.int32)
    mantissa = (magnitude >> np.maximum(exponent - 1, 0)) & 0x0F
    code = np.where(magnitude < 16, magnitude, (exponent << 4) | mantissa)
    return (np.where(x >= 0, code | 0x80, code) ^ 0x55).astype(np.uint8)


def _build_ulaw_decoder() -> Pcm:
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (inverted >> 4) & 0x07
    level = (((inverted & 0x0F) << 3) + 0x84 << exponent) - 0x84
    return np.where(inverted & 0x80, -level, level).astype(np.int16)


def _build_alaw_decoder() -> Pcm:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    level = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108))
    level = level << np.maximum(exponent - 1, 0)
    table: Pcm = np.where(code & 0x80, level, -level).astype(np.int16)
    return table


_INT16: Final = np.dtype(np.int16)
_UINT8: Final = np.dtype(np.uint8)

_ULAW_ENCODE: Final = _build_ulaw_encoder()
_ALAW_ENCODE: Final = _build_alaw_encoder()
_ULAW_DECODE: Final = _build_ulaw_decoder()
_ALAW_DECODE: Final = _build_alaw_decoder()
for _table in (_ULAW_ENCODE, _ALAW_ENCODE, _ULAW_DECODE, _ALAW_DECODE):
    _table.flags.writeable = False


def _table_index(pcm: npt.ArrayLike) -> Pcm:
    """The samples as a flat index into an encode table.

    ``take`` wraps negative indices like Python does, so sample ``v < 0`` reads entry
    ``65536 + v``: its ``uint16`` bit pattern, the table's order. No view is needed.
    """
    samples = np.asarray(pcm)
    if samples.dtype is not _INT16 and samples.dtype != _INT16:
        raise LocalMediaError(f"G.711 encodes native int16 samples, not {samples.dtype}")
    if samples.ndim != 1:
        samples = samples.reshape(-1)
    return samples


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """Encode linear PCM to mu-law (PCMU).

    Args:
        pcm: ``int16`` samples (any shape; flattened in C order).

    Returns:
        One code byte per sample.

    Raises:
        LocalMediaError: the samples are not native ``int16``.
    """
    return _ULAW_ENCODE.take(_table_index(pcm)).tobytes()


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """Encode linear PCM to A-law (PCMA).

    Args:
        pcm: ``int16`` samples (any shape; flattened in C order).

    Returns:
        One code byte per sample.

    Raises:
        LocalMediaError: the samples are not native ``int16``.
    """
    return _ALAW_ENCODE.take(_table_index(pcm)).tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> Pcm:
    """Decode mu-law (PCMU) codes to a new, writable ``int16`` array."""
    return _ULAW_DECODE.take(np.frombuffer(data, _UINT8))


def alaw_decode(data: bytes | bytearray | memoryview) -> Pcm:
    """Decode A-law (PCMA) codes to a new, writable ``int16`` array."""
    return _ALAW_DECODE.take(np.frombuffer(data, _UINT8))


class G711Codec:
    """One G.711 variant with its static RTP payload type (RFC 3551).

    Attributes:
        name: ``"PCMU"`` or ``"PCMA"`` (upper case).
        payload_type: the RTP payload type to send (default 0 for PCMU, 8 for PCMA;
            the negotiated value when the peer used a dynamic one).
        clock_rate: always 8000.
        silence_code: the code byte of linear zero, for comfort silence.
    """

    __slots__ = ("_decode_table", "_encode_table", "name", "payload_type", "silence_code")

    clock_rate: Final = 8000

    def __init__(self, name: str = "PCMU", payload_type: int | None = None) -> None:
        """Select the variant by its SDP encoding name (case-insensitive).

        Raises:
            UnsupportedCodecError: the name is not PCMU or PCMA.
            LocalMediaError: the payload type is outside 0..127.
        """
        upper = name.upper()
        if upper == "PCMU":
            tables, default_pt, silence = (_ULAW_ENCODE, _ULAW_DECODE), 0, ULAW_SILENCE
        elif upper == "PCMA":
            tables, default_pt, silence = (_ALAW_ENCODE, _ALAW_DECODE), 8, ALAW_SILENCE
        else:
            raise UnsupportedCodecError(f"not a G.711 codec: {name!r}")
        pt = default_pt if payload_type is None else payload_type
        if not 0 <= pt <= 127:
            raise LocalMediaError(f"RTP payload type out of range: {pt}")
        self.name = upper
        self.payload_type = pt
        self.silence_code = silence
        self._encode_table, self._decode_table = tables

    def __repr__(self) -> str:
        return f"G711Codec({self.name!r}, payload_type={self.payload_type})"

    def encode(self, pcm: npt.ArrayLike) -> bytes:
        """Encode ``int16`` samples; one code byte per sample.

        Raises:
            LocalMediaError: the samples are not native ``int16``.
        """
        return self._encode_table.take(_table_index(pcm)).tobytes()

    def encode_frame(self, pcm: Pcm) -> bytes:
        """Like :meth:`encode` for a one-dimensional native ``int16`` array, unchecked.

        The per-packet path: the caller has validated the array (``OutboundStream.push``).
        """
        return self._encode_table.take(pcm).tobytes()  # negative samples wrap: _table_index

    def decode(self, data: bytes | bytearray | memoryview) -> Pcm:
        """Decode code bytes to a new, writable ``int16`` array."""
        return self._decode_table.take(np.frombuffer(data, _UINT8))

    def silence(self, samples: int) -> bytes:
        """A payload of ``samples`` codes of linear zero (comfort silence)."""
        return bytes((self.silence_code,)) * samples
