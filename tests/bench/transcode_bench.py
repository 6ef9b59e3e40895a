"""Transcoding benchmark: what one call's Opus <-> 8 kHz work costs per 20 ms frame.

Run: ``python -m tests.bench.transcode_bench [--seconds N] [--repeat N] [--json]``.
Not a test: the figures are printed, never asserted. Method: ``harness.measure``
(median of repetitions, wall and process CPU per frame).

(a) browser -> gateway: ``OpusDecoder.decode`` of browser-like packets (48 kHz speech,
    libopus ``voip`` at 32 kbit/s, Chrome's default) = libopus decode + the 48k -> 8k
    FIR; the two parts are also timed alone, as is ``conceal`` (a lost packet);
(b) gateway -> browser: ``OpusEncoder.encode`` of 160-sample 8 kHz frames at
    complexity 0, 5 and 10, CBR and VBR (libopus takes 8 kHz input: no upsampler);
(c) the alternatives the module's docstring rejects, for the record: soxr 48k -> 8k
    in ``HQ``/``VHQ`` streaming and in variable-rate mode (samples emitted per 20 ms
    call and the output held back), and "upsample with soxr + encode at 48 kHz".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from itertools import cycle
from typing import TypeVar

import av
import numpy as np
import numpy.typing as npt
import soxr

from bridge.media.transcode import Downsampler, OpusDecoder, OpusEncoder, OpusEncoderConfig

from .harness import Sample, machine_info, measure

COMPLEXITIES = (0, 5, 10)
T = TypeVar("T")


def speech_like(rate: int, seconds: float = 2.0) -> npt.NDArray[np.int16]:
    """Voiced syllables (gliding pitch, formant-weighted harmonics, 4 Hz envelope)."""
    t = np.arange(round(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(150 + 40 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voiced = sum(
        (1.0 / k**0.5) * np.exp(-(((k * 150 - 1500) / 1200) ** 2)) * np.sin(k * phase)
        for k in range(1, min(60, rate // 300))
    )
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    signal = envelope * voiced / np.max(np.abs(voiced))
    pcm: npt.NDArray[np.int16] = (8000 * signal).astype(np.int16)
    return pcm


def _encode_48k(pcm: npt.NDArray[np.int16], *, bitrate: int, complexity: int) -> list[bytes]:
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format = 48000, "mono", "s16"
    context.bit_rate = bitrate
    context.options = {"application": "voip", "compression_level": str(complexity)}
    context.open()
    packets = []
    for i in range(0, pcm.size - 959, 960):
        frame = av.AudioFrame.from_ndarray(pcm[i : i + 960].reshape(1, -1), layout="mono")
        frame.sample_rate = 48000
        packets += [bytes(p) for p in context.encode(frame)]
    return packets


def _cycling(items: Sequence[T], step: Callable[[T], object]) -> Callable[[int], None]:
    source = cycle(items)

    def run(n: int) -> None:
        for _ in range(n):
            step(next(source))

    return run


def browser_to_gateway(seconds: float, repeat: int) -> dict[str, Sample]:
    """(a): decode, its two parts, and concealment."""
    packets = list(_encode_48k(speech_like(48000), bitrate=32000, complexity=5))
    decoder = OpusDecoder()
    results = {"decode+downsample": _cycling(packets, decoder.decode)}
    raw = av.CodecContext.create("libopus", "r")
    raw.sample_rate, raw.layout, raw.format = 48000, "mono", "s16"
    raw.open()
    results["libopus decode alone"] = _cycling(packets, lambda p: raw.decode(av.Packet(p)))
    blocks = [speech_like(48000, 0.2)[i : i + 960] for i in range(0, 9600, 960)]
    results["downsample alone"] = _cycling(blocks, Downsampler().process)
    concealer = OpusDecoder()
    concealer.decode(packets[0])
    results["conceal (PLC)"] = _cycling([160], concealer.conceal)
    return {
        name: measure(run, batch=50, seconds=seconds, repeat=repeat)
        for name, run in results.items()
    }


def gateway_to_browser(seconds: float, repeat: int) -> dict[str, Sample]:
    """(b): encode at each complexity, CBR (the default) and VBR."""
    pcm = speech_like(8000)
    frames = [pcm[i : i + 160] for i in range(0, pcm.size, 160)]
    out = {}
    for cbr in (True, False):
        for complexity in COMPLEXITIES:
            config = OpusEncoderConfig(complexity=complexity, constant_bitrate=cbr)
            run = _cycling(frames, OpusEncoder(config).encode)
            name = f"encode c={complexity} {'CBR' if cbr else 'VBR'}"
            out[name] = measure(run, batch=50, seconds=seconds, repeat=repeat)
    return out


def soxr_streaming() -> dict[str, dict[str, object]]:
    """(c): how soxr streams 48k -> 8k in 20 ms calls: samples out per call, and the
    most output it holds back once running (what a FIFO in front of the 20 ms clock
    would have to cover)."""
    block = np.zeros(960, np.int16)
    facts = {}
    for label, quality, vr in (("HQ", "HQ", False), ("VHQ", "VHQ", False), ("VR", "HQ", True)):
        stream = soxr.ResampleStream(48000, 8000, 1, dtype="int16", quality=quality, vr=vr)
        emitted = [len(stream.resample_chunk(block)) for _ in range(50)]
        held = max(160 * (k + 1) - sum(emitted[: k + 1]) for k in range(10, 50))
        facts[f"soxr {label}"] = {"per_call": emitted[:12], "held_back_ms": held / 8}
    return facts


def alternatives(seconds: float, repeat: int) -> dict[str, Sample]:
    """(c): soxr's costs, and upsample + encode at 48 kHz."""
    out = {}
    down = soxr.ResampleStream(48000, 8000, 1, dtype="int16", vr=True)
    run = _cycling([np.zeros(960, np.int16)], down.resample_chunk)
    out["soxr VR 48k->8k"] = measure(run, batch=50, seconds=seconds, repeat=repeat)
    pcm = speech_like(8000)
    frames = [pcm[i : i + 160] for i in range(0, pcm.size, 160)]
    for complexity in COMPLEXITIES:
        up = soxr.ResampleStream(8000, 48000, 1, dtype="int16", vr=True)
        context = av.CodecContext.create("libopus", "w")
        context.sample_rate, context.layout, context.format = 48000, "mono", "s16"
        context.bit_rate = 24000
        context.options = {"application": "voip", "compression_level": str(complexity)}
        context.open()
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.sample_rate = 48000
        buffer = np.frombuffer(memoryview(frame.planes[0]), np.int16, 960)

        def step(
            pcm8k: npt.NDArray[np.int16], up=up, context=context, frame=frame, buffer=buffer
        ) -> None:
            pcm48k = up.resample_chunk(pcm8k)
            if pcm48k.size == 960:
                buffer[:] = pcm48k
                context.encode(frame)

        run = _cycling(frames, step)
        out[f"soxr VR up + encode 48k c={complexity} VBR"] = measure(
            run, batch=50, seconds=seconds, repeat=repeat
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Print (or ``--json``) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per repetition")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sections = {
        "browser -> gateway (per 20 ms packet)": browser_to_gateway(args.seconds, args.repeat),
        "gateway -> browser (per 20 ms frame)": gateway_to_browser(args.seconds, args.repeat),
        "alternatives (not used)": alternatives(args.seconds, args.repeat),
    }
    streaming = soxr_streaming()
    if args.json:
        report = {k: {n: s.as_dict() for n, s in v.items()} for k, v in sections.items()}
        json.dump({"machine": machine_info(), **report, "soxr_streaming": streaming}, sys.stdout)
        print()
        return 0
    for title, samples in sections.items():
        print(title)
        for name, sample in samples.items():
            print(f"  {name:<36} {sample.wall_us:8.1f} us wall {sample.cpu_us:8.1f} us cpu")
    print("soxr 48k -> 8k fed 960 samples per call (samples out per call)")
    for name, fact in streaming.items():
        print(f"  {name:<8} {fact['per_call']} ... holds back up to {fact['held_back_ms']} ms")
    decode = sections["browser -> gateway (per 20 ms packet)"]["decode+downsample"].cpu_us
    for name, encode in sections["gateway -> browser (per 20 ms frame)"].items():
        per_second = (decode + encode.cpu_us) * 50 / 1000
        print(f"codec CPU per call-second, decode + {name}: {per_second:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
