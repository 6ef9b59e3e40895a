"""libopus called directly (ctypes), to price the FFmpeg/PyAV layer around the encoder.

Theory of operation: :class:`DirectOpusEncoder` opens the same libopus that PyAV ships
(``av.libs/libopus-*.so*``; the system's ``libopus.so.0`` when the wheel has none), sets
the controls FFmpeg's ``libopus`` encoder sets for an :class:`OpusEncoderConfig`
(application voip, bit rate, complexity, VBR, packet loss, FEC) and encodes each 8 kHz
frame with one ``opus_encode`` call into a buffer kept for the stream: no AVFrame, no
filter graph, no Packet. ``quality_bench`` checks that its packets are byte for byte
those of ``bridge.media.transcode.OpusEncoder`` and times both. Benchmark code only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from bridge.media.transcode import OpusEncoderConfig

__all__ = ["DirectOpusEncoder", "load_libopus"]

_VOIP = 2048  # OPUS_APPLICATION_VOIP
_CTL = {"bitrate": 4002, "vbr": 4006, "complexity": 4010, "fec": 4012, "loss": 4014}
_MAX_PACKET = 1500


def load_libopus() -> ctypes.CDLL | None:
    """PyAV's own libopus, else the system's, else None."""
    bundled = sorted((Path(av.__file__).parent.parent / "av.libs").glob("libopus-*.so*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library("opus")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.opus_encode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_get_version_string.restype = ctypes.c_char_p
    return lib


class DirectOpusEncoder:
    """8 kHz ``int16`` frames -> Opus packets with one libopus call each."""

    def __init__(self, lib: ctypes.CDLL, config: OpusEncoderConfig) -> None:
        error = ctypes.c_int()
        self._lib = lib
        self._state = lib.opus_encoder_create(8000, 1, _VOIP, ctypes.byref(error))
        if error.value or not self._state:
            raise RuntimeError(f"opus_encoder_create failed: {error.value}")
        for ctl, value in (
            ("bitrate", config.bitrate),
            ("complexity", config.complexity),
            ("vbr", 0 if config.constant_bitrate else 1),
            ("loss", config.fec_loss_percent),
            ("fec", 1 if config.fec_loss_percent else 0),
        ):
            if lib.opus_encoder_ctl(self._state, _CTL[ctl], value):
                raise RuntimeError(f"opus_encoder_ctl {ctl}={value} failed")
        self._samples = 8 * config.frame_ms
        self._out = ctypes.create_string_buffer(_MAX_PACKET)

    @property
    def version(self) -> str:
        """libopus's version string."""
        return str(self._lib.opus_get_version_string().decode())

    def encode(self, pcm8k: npt.NDArray[np.int16]) -> bytes:
        """One frame (C-contiguous ``int16``) -> one packet."""
        size = self._lib.opus_encode(
            self._state, pcm8k.ctypes.data, self._samples, self._out, _MAX_PACKET
        )
        if size < 0:
            raise RuntimeError(f"opus_encode failed: {size}")
        return self._out.raw[:size]

    def close(self) -> None:
        """Free the libopus state."""
        if self._state:
            self._lib.opus_encoder_destroy(self._state)
            self._state = None
