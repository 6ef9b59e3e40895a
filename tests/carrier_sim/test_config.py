"""CarrierSimConfig validation, the trunks it implies, and the simulator's audio pieces."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from sip_gateway.carrier_sim import (
    ANY_PEER,
    CarrierSimConfig,
    EchoBuffer,
    PlaySource,
    SimMode,
    ToneSource,
    WavFormatError,
    WavRecorder,
    load_wav,
)
from sip_gateway.carrier_sim.audio import AnnouncedEcho, chime
from tests.interop.media_proof import dominant_hz, rms
from tests.interop.peers import write_tone_wav

CERT = {"certificate": Path("server.crt"), "private_key": Path("server.key")}


def test_defaults_and_derived_trunks():
    config = CarrierSimConfig(**CERT)
    assert (config.listen_host, config.listen_port, config.mode) == ("127.0.0.1", 5062, "echo")
    assert config.media_address == "127.0.0.1"
    inbound = config.inbound_trunk()
    assert inbound.name == ANY_PEER and inbound.accepts_inbound
    assert inbound.source_allowed("198.51.100.7") and inbound.source_allowed("2001:db8::1")
    assert inbound.options_interval is None
    out = config.outbound_trunk("t", "127.0.0.1", 5061, server_name="localhost", ca_file=None)
    assert (out.host, out.port, out.tls_server_name) == ("127.0.0.1", 5061, "localhost")
    assert out.media_profile().crypto_suites == config.crypto_suites


def test_mode_from_string_and_media_address():
    config = CarrierSimConfig(**CERT, mode="no-answer", listen_host="0.0.0.0")
    assert config.mode is SimMode.NO_ANSWER and not config.mode.answers
    assert config.media_address == "127.0.0.1"
    assert CarrierSimConfig(**CERT, listen_host="::1").media_address == "::1"
    assert CarrierSimConfig(**CERT, media_host="192.0.2.1").media_address == "192.0.2.1"
    assert "ssl_context" not in repr(CarrierSimConfig(**CERT))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"certificate": None}, "certificate and private_key"),
        ({"mode": "play"}, "play_file"),
        ({"mode": "ring"}, "ring"),
        ({"listen_port": 70000}, "listen_port"),
        ({"media_host": "localhost"}, "media_host"),
        ({"tone_hz": 5000}, "tone_hz"),
        ({"tone_level": 0}, "tone_level"),
        ({"tone_on": 0}, "tone_on"),
        ({"dtmf_to_send": "12x"}, "'x'"),
        ({"dtmf_duration_ms": 10}, "dtmf_duration_ms"),
        ({"codecs": ("G729",)}, "codecs"),
        ({"crypto_suites": ("NULL",)}, "crypto_suites"),
        ({"ring_time": -1}, "ring_time"),
        ({"no_answer_timeout": 0}, "no_answer_timeout"),
        ({"hangup_after": 0}, "hangup_after"),
        ({"media_port_range": (40000, 40000)}, "media_port_range"),
    ],
)
def test_invalid_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CarrierSimConfig(**(CERT | kwargs))


def test_tone_source_beeps_at_its_frequency():
    source = ToneSource(425.0, on=0.2, off=0.2, level=0.5)
    samples = np.concatenate([source() for _ in range(50)])  # 1 s
    assert all(len(f) == 160 for f in (source(), source()))
    assert abs(dominant_hz(samples) - 425) < 5
    beep, pause = samples[400:1200], samples[2000:3000]
    assert rms(beep) > 0.3 and rms(pause) == 0
    steady = np.concatenate([ToneSource(1000.0, off=0)() for _ in range(5)])
    assert rms(steady) > 0.3


def test_play_source_plays_once():
    samples = np.arange(400, dtype=np.int16)
    source = PlaySource(samples)
    frames = [source(), source(), source()]
    assert [len(f) for f in frames] == [160, 160, 80] and source.finished
    assert source() is None
    assert np.array_equal(np.concatenate(frames), samples)


def test_echo_buffer_is_bounded_fifo():
    echo = EchoBuffer(max_frames=2)
    assert echo() is None
    for value in (1, 2, 3):
        echo.push(np.full(160, value, np.int16))
    assert [echo()[0], echo()[0], echo()] == [2, 3, None]


def test_announced_echo_plays_the_chime_then_echoes_only_later_audio():
    announcement = chime()
    assert len(announcement) == 2 * (2800 + 800)  # two 0.35 s tones, each with 0.1 s pause
    assert 640 < dominant_hz(announcement[: 8000 // 4], 8000) < 680  # the first tone
    echo = AnnouncedEcho(announcement)
    played = []
    while len(played) * 160 < len(announcement):
        echo.push(np.full(160, 7, np.int16))  # the caller talks over the announcement
        played.append(echo())
    assert np.array_equal(np.concatenate(played)[: len(announcement)], announcement)
    assert echo() is None  # nothing said during the announcement is echoed
    echo.push(np.full(160, 9, np.int16))
    assert echo()[0] == 9


def test_wav_round_trip_and_refusals(tmp_path):
    recorder = WavRecorder(tmp_path / "sub" / "rec.wav")
    recorder.write(np.full(160, 1000, np.int16))
    recorder.write(np.full(160, -1000, np.int16))
    recorder.close()
    recorder.close()
    recorder.write(np.zeros(160, np.int16))  # ignored once closed
    assert recorder.seconds == 0.04
    assert list(load_wav(recorder.path)[[0, 159, 160]]) == [1000, 1000, -1000]
    assert len(load_wav(write_tone_wav(tmp_path / "ok.wav", 440, 0.5))) == 4000

    for name, channels, width, rate in (
        ("st", 2, 2, 8000),
        ("hi", 1, 2, 16000),
        ("b8", 1, 1, 8000),
    ):
        path = tmp_path / f"{name}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(width)
            w.setframerate(rate)
            w.writeframes(bytes(64))
        with pytest.raises(WavFormatError, match="8 kHz mono 16-bit PCM only"):
            load_wav(path)
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really")
    with pytest.raises(WavFormatError, match="not a readable WAV"):
        load_wav(tmp_path / "junk.wav")
    with pytest.raises(WavFormatError, match="not a readable WAV"):
        load_wav(tmp_path / "missing.wav")
