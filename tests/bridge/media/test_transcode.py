"""Opus <-> 8 kHz transcoding against real libopus (PyAV), and the 48k -> 8k downsampler.

Round trips go 8 kHz -> OpusEncoder -> OpusDecoder -> 8 kHz; the codec delay (libopus
lookahead + the downsampler's FIR) is found by cross-correlation before comparing.
"""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.media.transcode import (
    CorruptPayloadError,
    Downsampler,
    FrameSizeError,
    OpusDecoder,
    OpusEncoder,
    OpusEncoderConfig,
    TranscodeError,
)

RATE = 8000
FRAME = 160

# -- signals and measures ----------------------------------------------------------------


def tone(freq: float, seconds: float = 1.0, rate: int = RATE, amplitude: float = 8000.0):
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def speech_like(seconds: float = 2.0) -> npt.NDArray[np.int16]:
    """Voiced syllables: a gliding 110-190 Hz pitch with formant-weighted harmonics,
    a 4 Hz syllable envelope, and a little noise (fricatives)."""
    rng = np.random.default_rng(7)
    t = np.arange(round(RATE * seconds)) / RATE
    pitch = 150 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = np.zeros_like(t)
    for k in range(1, 24):
        f = k * 150
        weight = sum(np.exp(-(((f - fmt) / 250) ** 2)) for fmt in (500, 1500, 2500)) + 0.05
        voiced += weight / k**0.5 * np.sin(k * phase)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    signal = envelope * voiced / np.max(np.abs(voiced)) + 0.02 * rng.standard_normal(t.size)
    pcm: npt.NDArray[np.int16] = (6000 * signal).astype(np.int16)
    return pcm


def frames(pcm: npt.NDArray[np.int16], size: int = FRAME) -> list[npt.NDArray[np.int16]]:
    return [pcm[i : i + size] for i in range(0, pcm.size - size + 1, size)]


def round_trip(pcm, config: OpusEncoderConfig | None = None):
    encoder, decoder = OpusEncoder(config), OpusDecoder()
    packets = [encoder.encode(f) for f in frames(pcm, encoder.frame_samples)]
    return packets, np.concatenate([decoder.decode(p) for p in packets])


def best_lag(reference, received, max_lag: int = 400) -> int:
    """The delay of ``received`` against ``reference``, by cross-correlation."""
    ref = reference.astype(np.float64)
    rec = received.astype(np.float64)
    n = ref.size - max_lag
    scores = [np.dot(ref[:n], rec[lag : lag + n]) for lag in range(max_lag)]
    return int(np.argmax(scores))


def ncc(reference, received, lag: int) -> float:
    """Normalised cross-correlation after removing ``lag`` (skipping the first 100 ms)."""
    a = reference[800 : reference.size - lag].astype(np.float64)
    b = received[800 + lag :].astype(np.float64)[: a.size]
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def dominant_hz(pcm, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.argmax(spectrum) * rate / pcm.size)


def rms(pcm) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def toc_ms(packet: bytes) -> float:
    """Duration of an Opus packet from its TOC (RFC 6716 3.1)."""
    config, code = packet[0] >> 3, packet[0] & 3
    if config < 12:
        frame_ms = (10.0, 20.0, 40.0, 60.0)[config % 4]
    elif config < 16:
        frame_ms = (10.0, 20.0)[config % 2]
    else:
        frame_ms = (2.5, 5.0, 10.0, 20.0)[config % 4]
    count = 1 if code == 0 else 2 if code in (1, 2) else packet[1] & 0x3F
    return frame_ms * count


# -- round trips ---------------------------------------------------------------------------


def test_speech_like_signal_survives_with_the_codec_delay():
    pcm = speech_like()
    _, out = round_trip(pcm)
    assert out.dtype == np.int16
    assert out.size == pcm.size
    lag = best_lag(pcm, out)
    # libopus lookahead (6.5 ms = 52 samples) + the downsampler FIR (2.24 ms = 18)
    assert 60 <= lag <= 80
    assert ncc(pcm, out, lag) > 0.85
    assert dominant_hz(out[800:]) == pytest.approx(dominant_hz(pcm[800:]), abs=10)
    assert rms(out) == pytest.approx(rms(pcm), rel=0.2)


@pytest.mark.parametrize("freq", [1000.0, 3500.0])
def test_tones_survive_with_their_frequency_and_level(freq):
    pcm = tone(freq)
    _, out = round_trip(pcm)
    lag = best_lag(pcm, out)
    assert ncc(pcm, out, lag) > 0.9
    assert dominant_hz(out[800:]) == pytest.approx(freq, abs=10)
    assert 20 * np.log10(rms(out[800:]) / rms(pcm[800:])) == pytest.approx(0, abs=1.5)


def test_n_frames_in_give_n_packets_and_n_frames_out():
    pcm = speech_like(1.0)
    encoder, decoder = OpusEncoder(), OpusDecoder()
    for frame in frames(pcm):
        packet = encoder.encode(frame)
        assert isinstance(packet, bytes)
        assert toc_ms(packet) == 20
        assert decoder.decode(packet).shape == (FRAME,)


@pytest.mark.parametrize("frame_ms", [10, 40, 60])
def test_other_packet_durations_decode_to_eight_samples_per_ms(frame_ms):
    pcm = speech_like(1.2)
    packets, out = round_trip(pcm, OpusEncoderConfig(frame_ms=frame_ms))
    assert {toc_ms(p) for p in packets} == {frame_ms}
    assert out.size == len(packets) * 8 * frame_ms
    assert ncc(pcm, out, best_lag(pcm, out)) > 0.8


def test_a_stereo_packet_decodes_to_mono():
    stereo = av.CodecContext.create("libopus", "w")
    stereo.sample_rate, stereo.layout, stereo.format = 48000, "stereo", "s16"
    stereo.open()
    left = tone(1000.0, 0.5, rate=48000)
    decoder, out = OpusDecoder(), []
    for i in range(0, left.size, 960):
        frame = av.AudioFrame.from_ndarray(
            np.repeat(left[i : i + 960], 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = 48000
        for packet in stereo.encode(frame):
            assert bytes(packet)[0] & 0x04  # the TOC's stereo flag
            out.append(decoder.decode(bytes(packet)))
    pcm = np.concatenate(out)
    assert pcm.size == len(out) * FRAME
    assert dominant_hz(pcm[800:]) == pytest.approx(1000, abs=10)


# -- the downsampler -----------------------------------------------------------------------


def through_downsampler(pcm48k, chunk: int = 960):
    downsampler = Downsampler()
    return np.concatenate(
        [downsampler.process(pcm48k[i : i + chunk]) for i in range(0, pcm48k.size, chunk)]
    )


@pytest.mark.parametrize("freq", [4400.0, 5000.0, 6000.0, 8000.0, 12000.0, 20000.0])
def test_downsampler_rejects_what_would_alias(freq):
    pcm = tone(freq, 0.5, rate=48000, amplitude=16000)
    out = through_downsampler(pcm)
    attenuation = 20 * np.log10(rms(pcm) / max(rms(out[100:]), 1e-3))
    assert attenuation >= 60  # designed for >= 75 dB (int16 rounding floor ~ 87 dB)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0, 3400.0])
def test_downsampler_passes_the_telephone_band(freq):
    pcm = tone(freq, 0.5, rate=48000, amplitude=16000)
    out = through_downsampler(pcm)
    assert out.size == pcm.size // 6
    assert 20 * np.log10(rms(out[100:]) / rms(pcm[600:])) == pytest.approx(0, abs=0.1)
    assert dominant_hz(out[100:]) == pytest.approx(freq, abs=20)


def test_downsampler_output_does_not_depend_on_the_chunking():
    rng = np.random.default_rng(1)
    pcm = rng.integers(-20000, 20000, 48000 * 2 // 10, dtype=np.int16)
    whole = through_downsampler(pcm, chunk=pcm.size)
    assert np.array_equal(through_downsampler(pcm, chunk=120), whole)
    assert np.array_equal(through_downsampler(pcm, chunk=960), whole)
    sizes, start, downsampler = [120, 5760, 240, 960, 2880], 0, Downsampler()
    pieces: list[npt.NDArray[np.int16]] = []
    while start < pcm.size:
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(downsampler.process(pcm[start : start + size]))
        start += size
    assert np.array_equal(np.concatenate(pieces), whole)


def test_downsampler_delay_and_full_scale():
    impulse = np.zeros(4800, np.int16)
    impulse[2400] = 30000
    out = through_downsampler(impulse)
    # peak where the filter centre lands: (2400 + delay) / 6, minus the block alignment
    assert int(np.argmax(out)) == pytest.approx((2400 + Downsampler.delay_48k) / 6, abs=1)
    square = np.where(np.arange(9600) % 96 < 48, 32767, -32768).astype(np.int16)
    clipped = through_downsampler(square)  # Gibbs overshoot must clip, not wrap
    assert clipped.max() == 32767
    assert clipped.min() == -32768


def test_downsampler_refuses_lengths_it_cannot_decimate():
    with pytest.raises(FrameSizeError):
        Downsampler().process(np.zeros(100, np.int16))
    with pytest.raises(ValueError):  # FrameSizeError is a ValueError too
        Downsampler().process(np.zeros((2, 960), np.int16))
    with pytest.raises(FrameSizeError):
        Downsampler().process(np.int16(5))  # type: ignore[arg-type]


# -- loss and garbage ----------------------------------------------------------------------


def test_conceal_continues_the_sound_then_fades():
    pcm = tone(1000.0, 0.5)
    encoder, decoder = OpusEncoder(), OpusDecoder()
    assert not decoder.conceal().any()  # nothing decoded yet: silence
    for frame in frames(pcm):
        decoder.decode(encoder.encode(frame))
    first = decoder.conceal()
    assert first.shape == (FRAME,)
    assert rms(first) > 0.3 * rms(pcm)
    assert dominant_hz(first) == pytest.approx(1000, abs=60)
    later = [decoder.conceal() for _ in range(15)]
    assert rms(later[-1]) < 0.1 * rms(first)
    assert decoder.decode(encoder.encode(pcm[:FRAME])).shape == (FRAME,)


@pytest.mark.parametrize("samples", [20, 40, 80, 160, 320, 480, 500, 960])
def test_conceal_lengths(samples):
    assert OpusDecoder().conceal(samples).shape == (samples,)


@pytest.mark.parametrize("samples", [0, 10, 170, 980, -160])
def test_conceal_refuses_lengths_opus_cannot_carry(samples):
    with pytest.raises(FrameSizeError):
        OpusDecoder().conceal(samples)


def test_an_empty_payload_is_refused_and_the_decoder_goes_on():
    encoder, decoder = OpusEncoder(), OpusDecoder()
    with pytest.raises(CorruptPayloadError):
        decoder.decode(b"")
    assert decoder.decode(encoder.encode(tone(1000.0)[:FRAME])).shape == (FRAME,)


_FUZZ_DECODER = OpusDecoder()
_GOOD_PACKET = OpusEncoder().encode(tone(440.0)[:FRAME])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(min_size=0, max_size=400))
def test_garbage_raises_corrupt_payload_or_decodes_to_whole_frames(payload):
    try:
        out = _FUZZ_DECODER.decode(payload)
    except CorruptPayloadError:
        pass
    else:
        assert out.dtype == np.int16
        assert out.ndim == 1
        assert 0 < out.size <= 960
        assert out.size % 20 == 0
    assert _FUZZ_DECODER.decode(_GOOD_PACKET).shape == (FRAME,)


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"\x0b\xff", b"\x03\x00", b"\x0b" + bytes(2000), bytes([0x0B, 0xBF]) + bytes(9)],
)
def test_known_malformed_packets_raise_corrupt_payload(payload):
    # code 3 with no count byte, a zero frame count, 2000 bytes, > 120 ms in one packet
    with pytest.raises(TranscodeError):
        OpusDecoder().decode(payload)


# -- the encoder's configuration -----------------------------------------------------------


@pytest.mark.parametrize("bitrate", [12000, 24000, 40000])
def test_constant_bitrate_packets_have_the_configured_size(bitrate):
    packets, _ = round_trip(speech_like(0.5), OpusEncoderConfig(bitrate=bitrate))
    assert {len(p) for p in packets} == {bitrate * 20 // 8000}


def test_variable_bitrate_follows_the_signal():
    pcm = np.concatenate([speech_like(0.5), np.zeros(RATE // 2, np.int16)])
    packets, _ = round_trip(pcm, OpusEncoderConfig(constant_bitrate=False))
    talk, silence = packets[:25], packets[-10:]
    assert max(map(len, silence)) < min(map(len, talk[5:]))


def test_complexity_and_fec_reach_the_encoder():
    pcm = speech_like(0.5)
    base = round_trip(pcm, OpusEncoderConfig(complexity=5))[0]
    assert round_trip(pcm, OpusEncoderConfig(complexity=5))[0] == base  # deterministic
    assert round_trip(pcm, OpusEncoderConfig(complexity=0))[0] != base
    assert round_trip(pcm, OpusEncoderConfig(complexity=10))[0] != base
    assert round_trip(pcm, OpusEncoderConfig(fec_loss_percent=20))[0] != base


@pytest.mark.parametrize(
    "field",
    [
        {"complexity": 11},
        {"complexity": -1},
        {"bitrate": 5999},
        {"bitrate": 510001},
        {"frame_ms": 30},
        {"fec_loss_percent": 101},
    ],
)
def test_config_refuses_out_of_range_values(field):
    (name,) = field
    with pytest.raises(ValueError, match=name):
        OpusEncoderConfig(**field)


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros(159, np.int16),
        np.zeros(320, np.int16),
        np.zeros(160, np.float32),
        np.zeros((1, 160), np.int16),
    ],
)
def test_encode_refuses_wrong_frames(frame):
    with pytest.raises(FrameSizeError):
        OpusEncoder().encode(frame)
