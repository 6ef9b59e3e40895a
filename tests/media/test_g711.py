"""G.711 tables against a scalar ITU-T G.191 (STL) reference, exhaustively."""

from __future__ import annotations

import numpy as np
import pytest

from sip_gateway.media.errors import LocalMediaError, UnsupportedCodecError
from sip_gateway.media.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    G711Codec,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

# --- slow scalar reference: the G.191 STL algorithm, written out sample by sample -----


def ref_ulaw_compress(sample: int) -> int:
    absno = ((~sample) >> 2) + 33 if sample < 0 else (sample >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x08 - segno
    low_nibble = 0x0F - ((absno >> segno) & 0x0F)
    code = (high_nibble << 4) | low_nibble
    return code | 0x80 if sample >= 0 else code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(sample: int) -> int:
    ix = (~sample) >> 4 if sample < 0 else sample >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if sample >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = bytes(range(256))


@pytest.mark.parametrize(
    ("encode", "reference"),
    [(ulaw_encode, ref_ulaw_compress), (alaw_encode, ref_alaw_compress)],
    ids=["ulaw", "alaw"],
)
def test_encode_matches_reference_for_every_sample(encode, reference):
    got = encode(ALL_SAMPLES)
    expected = bytes(reference(int(s)) for s in ALL_SAMPLES)
    assert got == expected


@pytest.mark.parametrize(
    ("decode", "reference"),
    [(ulaw_decode, ref_ulaw_expand), (alaw_decode, ref_alaw_expand)],
    ids=["ulaw", "alaw"],
)
def test_decode_matches_reference_for_every_code(decode, reference):
    got = decode(ALL_CODES)
    assert got.dtype == np.int16
    assert got.tolist() == [reference(c) for c in ALL_CODES]


def test_known_code_points():
    # Values every G.711 implementation agrees on (ITU-T G.711 tables 1a/2a).
    assert ulaw_encode(np.array([0, -1, 32767, -32768], np.int16)) == bytes(
        [0xFF, 0x7F, 0x80, 0x00]
    )
    assert alaw_encode(np.array([0, -1, 32767, -32768], np.int16)) == bytes(
        [0xD5, 0x55, 0xAA, 0x2A]
    )
    assert ulaw_decode(bytes([0x00, 0x80, 0xFF, 0x7F])).tolist() == [-32124, 32124, 0, 0]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]


@pytest.mark.parametrize(
    ("encode", "decode", "bits"), [(ulaw_encode, ulaw_decode, 4), (alaw_encode, alaw_decode, 4)]
)
def test_round_trip_error_is_within_half_a_quantization_step(encode, decode, bits):
    decoded = decode(encode(ALL_SAMPLES)).astype(np.int32)
    error = np.abs(decoded - ALL_SAMPLES.astype(np.int32))
    magnitude = np.abs(ALL_SAMPLES.astype(np.int32))
    # Relative error of a 4-bit mantissa log quantizer: below 2**-bits of the level,
    # plus the fixed error of the smallest segment and the clipping at full scale.
    small = magnitude < 256
    assert error[small].max() <= 16
    loud = (magnitude >= 256) & (magnitude <= 32000)
    assert (error[loud] <= magnitude[loud] / 2**bits + 16).all()
    clipped = magnitude > 32000
    assert error[clipped].max() <= 32768 - 32124 + 512


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_decoded_codes_are_fixed_points(name):
    codec = G711Codec(name)
    decoded = codec.decode(ALL_CODES)
    assert codec.decode(codec.encode(decoded)).tolist() == decoded.tolist()


def test_codec_object():
    pcmu, pcma = G711Codec("pcmu"), G711Codec("PCMA")
    assert (pcmu.name, pcmu.payload_type, pcmu.clock_rate) == ("PCMU", 0, 8000)
    assert (pcma.name, pcma.payload_type) == ("PCMA", 8)
    assert G711Codec("PCMU", payload_type=96).payload_type == 96
    assert repr(pcmu) == "G711Codec('PCMU', payload_type=0)"
    tone = (np.sin(np.arange(160) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
    for codec in (pcmu, pcma):
        payload = codec.encode(tone)
        assert len(payload) == 160
        decoded = codec.decode(payload)
        assert decoded.flags.writeable
        corr = np.corrcoef(decoded.astype(float), tone.astype(float))[0, 1]
        assert corr > 0.999
    assert pcmu.silence(3) == bytes([ULAW_SILENCE] * 3)
    assert pcma.silence(2) == bytes([ALAW_SILENCE] * 2)
    assert pcmu.decode(pcmu.silence(160)).tolist() == [0] * 160
    assert np.abs(pcma.decode(pcma.silence(160))).max() == 8


def test_bad_input_is_refused():
    with pytest.raises(UnsupportedCodecError):
        G711Codec("opus")
    with pytest.raises(LocalMediaError):
        G711Codec("PCMU", payload_type=128)
    with pytest.raises(LocalMediaError):
        ulaw_encode(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="int16"):
        G711Codec("PCMA").encode(np.zeros(160, dtype=np.int32))


def test_accepts_views_and_buffers():
    frame = np.arange(320, dtype=np.int16)
    assert ulaw_encode(frame[::2]) == ulaw_encode(frame[::2].copy())
    assert ulaw_encode(frame.reshape(2, 160)) == ulaw_encode(frame)
    payload = ulaw_encode(frame)
    assert ulaw_decode(memoryview(payload)).tolist() == ulaw_decode(bytearray(payload)).tolist()
    assert ulaw_decode(b"").shape == (0,)
