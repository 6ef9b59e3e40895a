"""The shared driver of the coverage-guided fuzz targets (atheris, libFuzzer).

Theory of operation: each target module in this package defines ``one_input(data)`` (the
property: hostile bytes either parse or raise the parser's documented protocol error,
and what parses survives its own serializer) and ``seeds()`` (valid inputs to start
from: RFC 4475 messages, real SDPs, packets from our own packetizer and SRTP code). Run
as ``python -m tests.fuzz.<target> [libFuzzer flags] [corpus dir]``, a module calls
:func:`main`, which

* writes the seeds to ``var/fuzz/<target>/seeds`` (``$PSTN_FUZZ_WORK/<target>/seeds``
  when set) and passes that directory, the stored
  corpus ``tests/fuzz/corpus/<target>`` and the regression inputs
  ``tests/fuzz/regressions/<target>`` to libFuzzer after the working corpus (the first
  directory on the command line, ``var/fuzz/<target>/corpus`` when none is given: new
  inputs are written there, never into the repository);
* sends crashes to ``var/fuzz/<target>/crashes/`` unless ``-artifact_prefix=`` is given;
* names a small launcher script as libFuzzer's program, so that ``-merge=1``, ``-fork``
  and ``-jobs`` (which start the program again) work for a module run with ``-m``.

A target module imports the code under test inside :func:`instrumented` so that, when it
runs as a fuzzer, atheris instruments that code for coverage; imported by pytest (the
smoke test replays corpora in-process) nothing is instrumented and atheris need not
load. ``-atheris_runs=N`` and every libFuzzer flag (``-max_total_time``, ``-jobs`` ...)
pass straight through.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FUZZ_DIR = Path(__file__).resolve().parent
CORPUS = FUZZ_DIR / "corpus"
REGRESSIONS = FUZZ_DIR / "regressions"
WORK = Path(os.environ.get("PSTN_FUZZ_WORK") or ROOT / "var" / "fuzz")
"""Working corpora, seeds, crashes and logs (``PSTN_FUZZ_WORK`` overrides it)."""
RFC4475 = ROOT.parent / "shared" / "testdata" / "rfc4475"
SDP_DATA = ROOT / "tests" / "sdp" / "data"

Seeds = Callable[[], Iterable[bytes]]


def instrumented(module_name: str, *packages: str) -> contextlib.AbstractContextManager[Any]:
    """Instrument ``packages`` imported in the block when ``module_name`` is ``__main__``."""
    if module_name != "__main__":
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=list(packages or ("sip_gateway",)))


def rfc4475_messages() -> Iterator[bytes]:
    """The RFC 4475 torture messages (the project's shared test data), whole."""
    for path in sorted(RFC4475.glob("*.dat")):
        yield path.read_bytes()


def sdp_captures() -> Iterator[bytes]:
    """The real SDPs of ``tests/sdp/data`` and the SDP bodies of the RFC 4475 messages."""
    for path in sorted(SDP_DATA.glob("*.sdp")):
        yield path.read_bytes()
    for message in rfc4475_messages():
        _, _, body = message.partition(b"\r\n\r\n")
        if body.startswith(b"v=0"):
            yield body


def stored_inputs(target: str) -> Iterator[tuple[Path, bytes]]:
    """The stored corpus and the regression inputs of ``target``, path and bytes."""
    for folder in (CORPUS / target, REGRESSIONS / target):
        for path in sorted(folder.glob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield path, path.read_bytes()


def write_seeds(target: str, seeds: Seeds, folder: Path) -> Path:
    """Write ``seeds()`` into ``folder`` (file names are content hashes); return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for data in seeds():
        name = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        (folder / name).write_bytes(data)
    return folder


def launcher(target: str) -> Path:
    """An executable that starts this target again (libFuzzer re-runs ``argv[0]`` for
    ``-merge``, ``-fork`` and ``-jobs``; a module run with ``-m`` has no such file)."""
    path = WORK / target / "run-target"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!/bin/sh\ncd {shlex.quote(str(ROOT))} && "
        f'exec {shlex.quote(sys.executable)} -m tests.fuzz.{target} "$@"\n'
    )
    path.chmod(0o755)
    return path


def fuzz_arguments(target: str, argv: list[str], seed_dir: Path) -> list[str]:
    """libFuzzer's command line: ours first, then the working corpus and seed dirs."""
    program = str(launcher(target))
    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    paths = [str(Path(arg).resolve()) for arg in argv[1:] if not arg.startswith("-")]
    work = WORK / target
    if not any(flag.startswith("-artifact_prefix=") for flag in flags):
        (work / "crashes").mkdir(parents=True, exist_ok=True)
        flags.append(f"-artifact_prefix={work / 'crashes'}/")
    if paths and all(Path(p).is_file() for p in paths):
        return [program, *flags, *paths]  # replaying crash files: no corpus
    if not paths:
        paths = [str(work / "corpus")]
    Path(paths[0]).mkdir(parents=True, exist_ok=True)
    extra = [str(seed_dir)]
    extra += [str(d / target) for d in (CORPUS, REGRESSIONS) if (d / target).is_dir()]
    return [program, *flags, *paths, *extra]


def main(target: str, one_input: Callable[[bytes], None], seeds: Seeds) -> None:
    """Run ``one_input`` under atheris with the seeds and stored inputs of ``target``."""
    import atheris

    seed_dir = write_seeds(target, seeds, WORK / target / "seeds")
    atheris.Setup(fuzz_arguments(target, sys.argv, seed_dir), one_input)
    atheris.Fuzz()
