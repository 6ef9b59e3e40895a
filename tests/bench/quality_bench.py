"""Opus settings for narrowband PSTN audio, chosen by PESQ next to the encoder's CPU.

Run: ``python -m tests.bench.quality_bench [--bitrates 12,16,24,32] [--complexities 0-10]
[--seconds S] [--repeat N] [--json FILE]``. Not a test: the figures are printed and written
to ``var/bench/quality_bench.json`` and ``.md``, never asserted.

Theory of operation
-------------------
Speech: a few voices of about 13 s each, levelled to -26 dBov of active speech (ITU-T P.56
style, 20 ms frames above -30 dB of the loudest): two espeak-ng voices (male and female,
six Harvard sentences) and, when ``alsa-utils`` is installed, a recorded female voice
(``/usr/share/sounds/alsa``: "front left", "rear right", ...). Each exists at 48 kHz
(the master) and as an 8 kHz reference made from it offline with soxr VHQ.

Every score is PESQ (ITU-T P.862, the PyPI ``pesq`` package) in narrowband mode: the
8 kHz reference against what came out, MOS-LQO, averaged over the voices. Both directions
run the bridge's own classes (``bridge.media.transcode``) as the call's pipeline does:

(a) carrier -> browser, for every encoder setting: ``reference 8 kHz -> PCMU encode and
    decode -> OpusEncoder(config) one 160-sample frame at a time -> libopus decode at
    48 kHz (as a browser does) -> soxr VHQ to 8 kHz``. Next to the score: the encoder's
    process CPU per 20 ms frame (``harness.measure``: the median of repetitions of a loop
    over the same speech frames) and the bytes per packet. "PCMU only" is the ceiling.
(b) browser -> carrier: ``48 kHz speech -> libopus as a browser sends it (voip,
    complexity 10, VBR; 32 kbit/s is Chrome's mono default) -> OpusDecoder.decode (libopus
    + the 48k -> 8k FIR) -> PCMU encode and decode``, next to the bridge's decoder CPU per
    packet. Our encoder settings play no part; "FIR + PCMU only" is the ceiling. The
    "max narrowband" rows are a browser told ``maxplaybackrate=8000`` (RFC 7587), which
    caps its encoder at narrowband (FFmpeg ``cutoff`` 4000 here); libwebrtc then also
    lowers its default bit rate to 12 kbit/s unless ``maxaveragebitrate`` says otherwise.
(c) other bandwidths: ``OpusEncoder`` feeds libopus 8 kHz, which caps Opus at narrowband.
    Mediumband or wider needs a higher input rate, so (c) upsamples the PCMU-decoded
    8 kHz to 48 kHz (soxr, offline, not counted) and encodes it with FFmpeg's ``cutoff``
    (libopus ``OPUS_SET_MAX_BANDWIDTH``) at 4000 / 6000 / 8000 / 20000 Hz.
(d) the chosen setting with libopus called directly (``opus_direct``, the same libopus
    PyAV ships): the packets must be identical, so the CPU difference is the FFmpeg/PyAV
    layer per frame (frame and packet objects, PyAV's frame-size filter graph).

The choice: among the CBR settings (CBR stays: VBR packet sizes leak speech through SRTP,
RFC 6562), those whose MOS-LQO is within 0.1 of complexity 10 at the same bitrate for every
voice (not only on average), and whose average is within 0.1 of the best complexity-10
average over all bitrates (so a lower bitrate cannot buy CPU with quality). The bit rate
hardly changes the encoder's CPU, so a complexity's cost is the median over its bit rates;
costs within 10% of the cheapest are a tie (timing noise on a shared machine), won by the
lowest complexity; at that complexity the lowest passing bit rate wins.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soxr
from pesq import pesq  # type: ignore[import-untyped]

from bridge.media.transcode import Downsampler, OpusDecoder, OpusEncoder, OpusEncoderConfig
from sip_gateway.media.g711 import ulaw_decode, ulaw_encode

from .harness import machine_info, measure
from .opus_direct import DirectOpusEncoder, load_libopus

Pcm = npt.NDArray[np.int16]

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch."
)
ESPEAK_VOICES = (("espeak male", "en-us"), ("espeak female", "en-us+f3"))
ALSA_DIR = Path("/usr/share/sounds/alsa")
ALSA_CLIPS = (
    "Front_Center Front_Left Front_Right Rear_Center Rear_Left Rear_Right Side_Left Side_Right"
)
ACTIVE_DBOV = -26.0
OLD_DEFAULT = OpusEncoderConfig(complexity=5, bitrate=24000)
"""The defaults before this benchmark chose (settings.py had complexity 5, 24 kbit/s)."""
MARGIN = 0.1
CPU_TIE = 0.1
"""Complexity costs this close to the cheapest are a tie (timing noise): the lowest wins."""
BROWSER_BITRATES = (12000, 16000, 24000, 32000)
CUTOFFS = ((4000, "narrowband"), (6000, "mediumband"), (8000, "wideband"), (20000, "fullband"))


@dataclass(frozen=True, slots=True)
class Voice:
    """One speech sample: the 48 kHz master and its 8 kHz reference."""

    name: str
    pcm48k: Pcm = field(repr=False)
    pcm8k: Pcm = field(repr=False)


@dataclass(slots=True)
class Row:
    """One measured setting of one direction."""

    path: str
    label: str
    mos: float
    mos_per_voice: dict[str, float]
    complexity: int | None = None
    bitrate: int | None = None
    cbr: bool | None = None
    cpu_us: float | None = None
    bytes_per_packet: float | None = None


# -- speech ---------------------------------------------------------------------------------


def _read_wav(path: Path) -> tuple[int, Pcm]:
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"{path}: need mono 16-bit")
        return wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), np.int16)


def _espeak(voice: str) -> tuple[int, Pcm]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("quality_bench needs espeak-ng (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(
            [exe, "-v", voice, "-w", str(path), SENTENCES], check=True, capture_output=True
        )
        return _read_wav(path)


def _alsa() -> tuple[int, Pcm] | None:
    """The ALSA channel-test clips (a recorded voice), 200 ms apart, or None."""
    paths = [ALSA_DIR / f"{name}.wav" for name in ALSA_CLIPS.split()]
    if not all(path.exists() for path in paths):
        return None
    clips = [_read_wav(path) for path in paths]
    rate = clips[0][0]
    gap = np.zeros(rate // 5, np.int16)
    return rate, np.concatenate([part for _, pcm in clips for part in (pcm, gap)])


def _levelled(pcm: npt.NDArray[np.float64]) -> Pcm:
    """Scale so the active 20 ms frames (above -30 dB of the loudest) sit at -26 dBov."""
    frames = pcm[: pcm.size // 960 * 960].reshape(-1, 960)
    rms = np.sqrt((frames**2).mean(axis=1))
    active = rms[rms > rms.max() / 10 ** (30 / 20)]
    gain = 32768 * 10 ** (ACTIVE_DBOV / 20) / np.sqrt((active**2).mean())
    out: Pcm = np.clip(np.rint(pcm * gain), -32768, 32767).astype(np.int16)
    return out


def _voice(name: str, rate: int, pcm: Pcm) -> Voice:
    master = soxr.resample(pcm.astype(np.float64), rate, 48000, quality="VHQ")
    pcm48k = _levelled(master)
    down = soxr.resample(pcm48k.astype(np.float64), 48000, 8000, quality="VHQ")
    pcm8k: Pcm = np.clip(np.rint(down), -32768, 32767).astype(np.int16)
    cut = pcm8k.size // 160 * 160
    return Voice(name, pcm48k[: cut * 6], pcm8k[:cut])


def corpus() -> list[Voice]:
    """The voices described in the module docstring."""
    voices = [_voice(name, *_espeak(voice)) for name, voice in ESPEAK_VOICES]
    recorded = _alsa()
    if recorded is not None:
        voices.append(_voice("recorded female", *recorded))
    return voices


# -- the paths ------------------------------------------------------------------------------


def _pcmu(pcm: Pcm) -> Pcm:
    decoded: Pcm = ulaw_decode(ulaw_encode(pcm))
    return decoded


def _frames(pcm: Pcm, size: int) -> list[Pcm]:
    return [pcm[i : i + size] for i in range(0, pcm.size - size + 1, size)]


def _browser_decode(packets: Sequence[bytes]) -> Pcm:
    """What a browser plays (libopus at 48 kHz), brought to 8 kHz offline (soxr VHQ)."""
    context = av.CodecContext.create("libopus", "r")
    context.sample_rate, context.layout, context.format = 48000, "mono", "s16"
    context.open()
    blocks = [
        frame.to_ndarray().reshape(-1)
        for packet in packets
        for frame in context.decode(av.Packet(packet))
    ]
    down = soxr.resample(np.concatenate(blocks).astype(np.float64), 48000, 8000, quality="VHQ")
    out: Pcm = np.clip(np.rint(down), -32768, 32767).astype(np.int16)
    return out


def _mos(reference: Pcm, degraded: Pcm) -> float:
    """PESQ narrowband MOS-LQO; the degraded signal cut or padded to the reference."""
    fitted = np.zeros_like(reference)
    fitted[: min(reference.size, degraded.size)] = degraded[: reference.size]
    return float(pesq(8000, reference, fitted, "nb"))


def _score(voices: Sequence[Voice], outputs: Sequence[Pcm]) -> tuple[float, dict[str, float]]:
    per_voice = {
        v.name: round(_mos(v.pcm8k, out), 3) for v, out in zip(voices, outputs, strict=True)
    }
    return round(statistics.fmean(per_voice.values()), 3), per_voice


class Pyav48kEncoder:
    """libopus at 48 kHz input through PyAV: a browser's encoder, and the (c) variants."""

    def __init__(self, *, bitrate: int, complexity: int, vbr: bool, cutoff: int = 0) -> None:
        context = av.CodecContext.create("libopus", "w")
        context.sample_rate, context.layout, context.format = 48000, "mono", "s16"
        context.bit_rate = bitrate
        options = {"application": "voip", "compression_level": str(complexity)}
        options["vbr"] = "on" if vbr else "off"
        if cutoff:
            options["cutoff"] = str(cutoff)
        context.options = options
        context.open()
        self._context = context
        self._frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        self._frame.sample_rate = 48000
        self._pcm = np.frombuffer(memoryview(self._frame.planes[0]), np.int16, 960)

    def encode(self, pcm48k: Pcm) -> bytes:
        """One 20 ms frame -> one packet."""
        self._pcm[:] = pcm48k
        (packet,) = self._context.encode(self._frame)
        return bytes(packet)


def _cpu_us(step: Callable[[Any], object], items: Sequence[Any], args: Any) -> float:
    source = cycle(items)

    def run(n: int) -> None:
        for _ in range(n):
            step(next(source))

    return round(measure(run, batch=50, seconds=args.seconds, repeat=args.repeat).cpu_us, 2)


def carrier_to_browser(voices: Sequence[Voice], config: OpusEncoderConfig, args: Any) -> Row:
    """(a) for one encoder setting."""
    outputs, sizes, all_frames = [], [], []
    for voice in voices:
        frames = _frames(_pcmu(voice.pcm8k), 160)
        all_frames += frames
        encoder = OpusEncoder(config)
        packets = [encoder.encode(frame) for frame in frames]
        sizes += [len(p) for p in packets]
        outputs.append(_browser_decode(packets))
    mos, per_voice = _score(voices, outputs)
    mode = "CBR" if config.constant_bitrate else "VBR"
    return Row(
        path="carrier->browser",
        label=f"c={config.complexity} {config.bitrate // 1000}k {mode}",
        mos=mos,
        mos_per_voice=per_voice,
        complexity=config.complexity,
        bitrate=config.bitrate,
        cbr=config.constant_bitrate,
        cpu_us=_cpu_us(OpusEncoder(config).encode, all_frames, args),
        bytes_per_packet=round(statistics.fmean(sizes), 1),
    )


def direct_libopus(voices: Sequence[Voice], config: OpusEncoderConfig, args: Any) -> Row | None:
    """The chosen setting with libopus called directly (``opus_direct``): its packets must
    equal ``OpusEncoder``'s, so the CPU difference is what FFmpeg and PyAV add per frame."""
    lib = load_libopus()
    if lib is None:
        return None
    frames = [f for v in voices for f in _frames(_pcmu(v.pcm8k), 160)]
    direct, ours = DirectOpusEncoder(lib, config), OpusEncoder(config)
    same = all(direct.encode(f) == ours.encode(f) for f in frames)
    reference = carrier_to_browser(voices, config, args)
    label = f"{reference.label}, libopus {direct.version.split()[-1]} direct"
    row = Row("carrier->browser", f"{label} ({'same' if same else 'OTHER'} bytes)", 0.0, {})
    row.mos, row.mos_per_voice = reference.mos, reference.mos_per_voice
    row.complexity, row.bitrate, row.cbr = config.complexity, config.bitrate, True
    row.cpu_us = _cpu_us(DirectOpusEncoder(lib, config).encode, frames, args)
    row.bytes_per_packet = reference.bytes_per_packet
    return row


def pcmu_only(voices: Sequence[Voice]) -> Row:
    """(a)'s ceiling: the reference through PCMU alone."""
    mos, per_voice = _score(voices, [_pcmu(v.pcm8k) for v in voices])
    return Row(
        path="carrier->browser", label="PCMU only (ceiling)", mos=mos, mos_per_voice=per_voice
    )


def bandwidths(voices: Sequence[Voice], complexity: int, bitrate: int, args: Any) -> list[Row]:
    """(c): 48 kHz input (upsampled offline) with libopus's max bandwidth set, CBR."""
    inputs = []
    for voice in voices:
        up = soxr.resample(_pcmu(voice.pcm8k).astype(np.float64), 8000, 48000, quality="VHQ")
        inputs.append(np.clip(np.rint(up), -32768, 32767).astype(np.int16))
    rows = []
    for cutoff, name in CUTOFFS:
        outputs, sizes, all_frames = [], [], []
        for pcm in inputs:
            frames = _frames(pcm, 960)
            all_frames += frames
            encoder = Pyav48kEncoder(
                bitrate=bitrate, complexity=complexity, vbr=False, cutoff=cutoff
            )
            packets = [encoder.encode(frame) for frame in frames]
            sizes += [len(p) for p in packets]
            outputs.append(_browser_decode(packets))
        mos, per_voice = _score(voices, outputs)
        encoder = Pyav48kEncoder(bitrate=bitrate, complexity=complexity, vbr=False, cutoff=cutoff)
        rows.append(
            Row(
                path="carrier->browser 48k input",
                label=f"{name} c={complexity} {bitrate // 1000}k CBR",
                mos=mos,
                mos_per_voice=per_voice,
                complexity=complexity,
                bitrate=bitrate,
                cbr=True,
                cpu_us=_cpu_us(encoder.encode, all_frames, args),
                bytes_per_packet=round(statistics.fmean(sizes), 1),
            )
        )
    return rows


def browser_to_carrier(voices: Sequence[Voice], args: Any) -> list[Row]:
    """(b): browser-encoded Opus through the bridge's decoder, filter and PCMU; the CPU
    figure is the bridge's ``OpusDecoder.decode`` per packet."""
    rows = []
    for cutoff, bitrate in itertools.product((0, 4000), BROWSER_BITRATES):
        outputs, packets = [], []
        for voice in voices:
            browser = Pyav48kEncoder(bitrate=bitrate, complexity=10, vbr=True, cutoff=cutoff)
            encoded = [browser.encode(f) for f in _frames(voice.pcm48k, 960)]
            decoder = OpusDecoder()
            outputs.append(_pcmu(np.concatenate([decoder.decode(p) for p in encoded])))
            packets += encoded
        mos, per_voice = _score(voices, outputs)
        band = " max narrowband" if cutoff else ""
        row = Row("browser->carrier", f"browser c=10 {bitrate // 1000}k VBR{band}", mos, per_voice)
        row.complexity, row.bitrate, row.cbr = 10, bitrate, False
        row.cpu_us = _cpu_us(OpusDecoder().decode, packets, args)
        row.bytes_per_packet = round(statistics.fmean(map(len, packets)), 1)
        rows.append(row)
    return rows


def fir_pcmu_only(voices: Sequence[Voice]) -> Row:
    """(b)'s ceiling: the 48 kHz master through the bridge's FIR and PCMU, no Opus."""
    outputs = [_pcmu(np.concatenate([Downsampler().process(v.pcm48k)])) for v in voices]
    mos, per_voice = _score(voices, outputs)
    return Row(
        path="browser->carrier", label="FIR + PCMU only (ceiling)", mos=mos, mos_per_voice=per_voice
    )


# -- the choice and the report --------------------------------------------------------------


def choose(rows: Sequence[Row]) -> Row:
    """The cheapest CBR setting within ``MARGIN`` of complexity 10 (module docstring)."""
    cbr = [r for r in rows if r.cbr and r.cpu_us is not None and r.complexity is not None]
    top = {r.bitrate: r for r in cbr if r.complexity == 10}
    if not top:
        raise SystemExit("the choice needs complexity 10 among --complexities")
    best = max(r.mos for r in top.values())

    def close(row: Row) -> bool:
        ref = top.get(row.bitrate)
        return (
            ref is not None
            and row.mos >= best - MARGIN
            and all(row.mos_per_voice[v] >= m - MARGIN for v, m in ref.mos_per_voice.items())
        )

    cost = {
        c: statistics.median(r.cpu_us or 0.0 for r in cbr if r.complexity == c)
        for c in {r.complexity for r in cbr}
    }
    fit = [r for r in cbr if close(r)]
    cheapest = min(cost[r.complexity or 0] for r in fit)
    complexity = min(
        r.complexity or 0 for r in fit if cost[r.complexity or 0] <= cheapest * (1 + CPU_TIE)
    )
    return min((r for r in fit if r.complexity == complexity), key=lambda r: r.bitrate or 0)


def _grid(rows: Sequence[Row], cbr: bool, bitrates: Sequence[int]) -> list[str]:
    cells = {(r.complexity, r.bitrate): r for r in rows if r.cbr is cbr and r.cpu_us}
    head = "| complexity | " + " | ".join(f"{b // 1000} kbit/s" for b in bitrates) + " |"
    lines = [head, "|---:|" + "---:|" * len(bitrates)]
    for complexity in sorted({c for c, _ in cells if c is not None}):
        row = [cells.get((complexity, b)) for b in bitrates]
        text = [f"{r.mos:.2f} / {r.cpu_us:.0f} us" if r and r.cpu_us else "" for r in row]
        lines.append(f"| {complexity} | " + " | ".join(text) + " |")
    return lines


def _list(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| path | setting | MOS-LQO | CPU / frame | bytes / packet |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        cpu = f"{r.cpu_us:.0f} us" if r.cpu_us is not None else ""
        size = f"{r.bytes_per_packet:.1f}" if r.bytes_per_packet is not None else ""
        lines.append(f"| {r.path} | {r.label} | {r.mos:.2f} | {cpu} | {size} |")
    return lines


def markdown(report: dict[str, Any], rows: Sequence[Row], extra: Sequence[Row]) -> str:
    """The short report: both grids, the other rows, the choice."""
    bitrates = sorted({r.bitrate for r in rows if r.bitrate})
    choice, old = report["choice"], report["old_default"]
    out = [
        "# Opus quality benchmark (PESQ P.862 narrowband MOS-LQO / encoder CPU per 20 ms frame)",
        "",
        f"Voices: {', '.join(report['voices'])}. Machine: {report['machine']['cpu']}, "
        f"{report['machine']['nproc']} cores.",
        "",
        "carrier -> browser, CBR (PCMU -> OpusEncoder at 8 kHz -> browser decode):",
        "",
        *_grid(rows, True, bitrates),
        "",
        "carrier -> browser, VBR:",
        "",
        *_grid(rows, False, bitrates),
        "",
        *_list(extra),
        "",
        "CPU / frame: the encoder's; in the browser->carrier rows the bridge's OpusDecoder.",
        "",
        f"Chosen: complexity {choice['complexity']}, {choice['bitrate']} bit/s CBR: MOS-LQO "
        f"{choice['mos']:.2f} (complexity 10: {choice['mos_c10']:.2f}), {choice['cpu_us']:.0f} us "
        f"per frame; old default complexity {old['complexity']}, {old['bitrate']} bit/s: "
        f"{old['mos']:.2f}, {old['cpu_us']:.0f} us ({report['cpu_saving_percent']:.0f}% less CPU).",
    ]
    return "\n".join(out) + "\n"


def _ints(text: str) -> list[int]:
    values: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        values += range(int(low), int(high or low) + 1)
    return values


def _find(rows: Sequence[Row], config: OpusEncoderConfig) -> Row | None:
    key = (config.complexity, config.bitrate, config.constant_bitrate)
    return next((r for r in rows if (r.complexity, r.bitrate, r.cbr) == key), None)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Row], list[Row]]:
    """Measure everything; returns the JSON report, the grid rows and the other rows."""
    voices = corpus()
    print(f"voices: {', '.join(f'{v.name} ({v.pcm8k.size / 8000:.1f} s)' for v in voices)}")
    rows = []
    for cbr in (True, False):
        for bitrate in args.bitrates:
            for complexity in args.complexities:
                config = OpusEncoderConfig(
                    complexity=complexity, bitrate=bitrate, constant_bitrate=cbr
                )
                row = carrier_to_browser(voices, config, args)
                print(f"  {row.label:<18} MOS-LQO {row.mos:.2f} {row.cpu_us:7.1f} us", flush=True)
                rows.append(row)
    choice = choose(rows)
    old = _find(rows, OLD_DEFAULT) or carrier_to_browser(voices, OLD_DEFAULT, args)
    chosen = OpusEncoderConfig(complexity=choice.complexity or 0, bitrate=choice.bitrate or 0)
    direct = direct_libopus(voices, chosen, args)
    extra = [pcmu_only(voices), old, choice, *([direct] if direct else [])]
    for complexity in sorted({chosen.complexity, 10}):
        extra += bandwidths(voices, complexity, chosen.bitrate, args)
    extra += [fir_pcmu_only(voices), *browser_to_carrier(voices, args)]
    c10 = next(r for r in rows if r.cbr and r.bitrate == choice.bitrate and r.complexity == 10)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "voices": [f"{v.name} {v.pcm8k.size / 8000:.1f} s" for v in voices],
        "method": __doc__,
        "choice": {**asdict(choice), "mos_c10": c10.mos},
        "old_default": asdict(old),
        "cpu_saving_percent": round(100 * (1 - (choice.cpu_us or 0) / (old.cpu_us or 1)), 1),
        "carrier_to_browser": [asdict(r) for r in rows],
        "other": [asdict(r) for r in extra],
    }
    return report, rows, extra


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the Markdown report and write both files."""
    parser = argparse.ArgumentParser(prog="quality_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--bitrates", type=_ints, default=[12000, 16000, 24000, 32000])
    parser.add_argument("--complexities", type=_ints, default=list(range(11)))
    parser.add_argument("--seconds", type=float, default=0.25, help="per CPU repetition")
    parser.add_argument("--repeat", type=int, default=3, help="CPU repetitions (median)")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench" / "quality_bench.json")
    args = parser.parse_args(argv)
    report, rows, extra = run(args)
    text = markdown(report, rows, extra)
    print("\n" + text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    args.json.with_suffix(".md").write_text(text)
    print(f"JSON: {args.json}\nMarkdown: {args.json.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
