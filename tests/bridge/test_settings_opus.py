"""The [webrtc] Opus options: defaults chosen by tests/bench/quality_bench.py, the mapping
to the encoder's configuration, and errors that name the option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bridge.app import _opus_encoder_config
from bridge.media.transcode import OpusEncoder, OpusEncoderConfig
from bridge.settings import SettingsError, load_settings
from tests.webrtc_audio import speech_8k


def test_defaults_are_the_measured_choice_and_agree_with_the_encoder() -> None:
    config = _opus_encoder_config(load_settings(None).webrtc)
    assert config == OpusEncoderConfig()
    assert (config.complexity, config.bitrate, config.constant_bitrate) == (0, 32000, True)


def test_file_options_reach_the_encoder(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        "[webrtc]\nopus_complexity = 7\nopus_bitrate = 16000\nopus_constant_bitrate = false\n"
    )
    config = _opus_encoder_config(load_settings(path).webrtc)
    assert (config.complexity, config.bitrate, config.constant_bitrate) == (7, 16000, False)


def test_environment_turns_vbr_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSTN_BRIDGE_WEBRTC__OPUS_CONSTANT_BITRATE", "false")
    config = _opus_encoder_config(load_settings(None).webrtc)
    assert config.constant_bitrate is False


@pytest.mark.parametrize("cbr", [True, False])
def test_packet_sizes_follow_the_bit_rate_mode(cbr: bool) -> None:
    encoder = OpusEncoder(OpusEncoderConfig(bitrate=32000, constant_bitrate=cbr))
    pcm = np.concatenate([speech_8k(1.0), np.zeros(1600, np.int16)])
    sizes = {len(encoder.encode(pcm[i : i + 160])) for i in range(0, pcm.size, 160)}
    if cbr:  # 32 kbit/s * 20 ms: 80 bytes for speech and silence alike (RFC 6562)
        assert sizes == {80}
    else:
        assert len(sizes) > 3


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[webrtc]\nopus_complexity = 11\n", "option webrtc.opus_complexity"),
        ("[webrtc]\nopus_bitrate = 5000\n", "option webrtc.opus_bitrate"),
        ('[webrtc]\nopus_constant_bitrate = "sometimes"\n', "option webrtc.opus_constant_bitrate"),
        ('[webrtc]\nopus_bandwidth = "wideband"\n', "option webrtc.opus_bandwidth: unknown option"),
    ],
)
def test_invalid_opus_options_name_the_option(tmp_path: Path, toml: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert needle in str(info.value)
