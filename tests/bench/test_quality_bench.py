"""The quality benchmark's own logic: the choice rule on made-up rows, and one real
PESQ measurement through the carrier -> browser path (bounded: one voice, tiny timing)."""

from __future__ import annotations

from argparse import Namespace

import pytest

from bridge.media.transcode import OpusEncoder, OpusEncoderConfig
from tests.bench.opus_direct import DirectOpusEncoder, load_libopus
from tests.bench.quality_bench import Row, _ints, carrier_to_browser, choose, corpus, pcmu_only
from tests.webrtc_audio import speech_8k


def _row(complexity: int, bitrate: int, cpu: float, **mos: float) -> Row:
    voices = mos or {"a": 4.0}
    mean = sum(voices.values()) / len(voices)
    label = f"c={complexity} {bitrate}"
    return Row("carrier->browser", label, mean, voices, complexity, bitrate, True, cpu, 0.0)


def test_cheapest_within_the_margin_of_complexity_10_wins() -> None:
    rows = [
        _row(10, 32000, 160, a=4.09),
        _row(5, 32000, 140, a=4.08),
        _row(0, 32000, 55, a=4.07),
        _row(10, 24000, 158, a=4.08),
        _row(0, 24000, 50, a=3.90),  # cheaper but 0.18 below complexity 10
    ]
    assert (choose(rows).complexity, choose(rows).bitrate) == (0, 32000)


def test_every_voice_must_stay_within_the_margin() -> None:
    rows = [
        _row(10, 24000, 160, a=4.30, b=3.96),
        _row(0, 24000, 50, a=4.26, b=3.84),  # the average passes, voice b does not
        _row(4, 24000, 140, a=4.30, b=3.95),
    ]
    assert choose(rows).complexity == 4


def test_cpu_ties_go_to_the_lowest_complexity() -> None:
    rows = [_row(10, 32000, 160), _row(1, 32000, 50), _row(0, 32000, 54)]
    assert choose(rows).complexity == 0


def test_the_lowest_passing_bit_rate_wins_at_the_chosen_complexity() -> None:
    rows = [_row(10, 32000, 160, a=4.09), _row(10, 24000, 158, a=4.08)]
    rows += [_row(0, 32000, 60, a=4.07), _row(0, 24000, 52, a=4.05)]
    assert (choose(rows).complexity, choose(rows).bitrate) == (0, 24000)


def test_lists_and_ranges_parse() -> None:
    assert _ints("0-3,10") == [0, 1, 2, 3, 10]
    assert _ints("32000") == [32000]


@pytest.mark.timeout(60)
def test_pesq_ranks_a_starved_encoder_below_the_default() -> None:
    voices = corpus()[:1]
    args = Namespace(seconds=0.005, repeat=1)
    ceiling = pcmu_only(voices).mos
    default = carrier_to_browser(voices, OpusEncoderConfig(), args)
    starved = carrier_to_browser(voices, OpusEncoderConfig(bitrate=8000), args)
    assert 3.5 < default.mos <= ceiling + 0.1
    assert starved.mos < default.mos - 0.3
    assert default.bytes_per_packet == 80.0


def test_libopus_called_directly_gives_the_encoders_bytes() -> None:
    lib = load_libopus()
    if lib is None:
        pytest.skip("no libopus to load")
    pcm = speech_8k(1.0)
    for config in (OpusEncoderConfig(), OpusEncoderConfig(complexity=5, constant_bitrate=False)):
        direct, ours = DirectOpusEncoder(lib, config), OpusEncoder(config)
        frames = [pcm[i : i + 160] for i in range(0, pcm.size, 160)]
        assert [direct.encode(f) for f in frames] == [ours.encode(f) for f in frames]
        direct.close()
