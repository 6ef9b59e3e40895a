"""The CDR spill file: call updates the database could not take, kept until it can.

Theory of operation: :class:`SpillFile` is an append-only file of JSON lines, one stored
update per line (:func:`bridge._cdr_rows.stored_line`), created with mode 0600 (and set to
0600 when it already exists). Appends are short synchronous writes made on the event loop,
so a line is always whole before anything else runs; a line cut off by a crash is ended
by :meth:`SpillFile.repair` at start-up and then skipped as unreadable by
:meth:`SpillFile.read`.

Replaying reads the lines up to an end offset taken before the first database write
(:meth:`SpillFile.size`); lines appended while the replay awaits the database lie after it.
:meth:`SpillFile.discard_through` then removes the replayed part in one synchronous step
and keeps whatever was appended meanwhile. Nothing here touches the database.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["SpillFile"]

log = logging.getLogger("bridge.store")

_MODE = 0o600


class SpillFile:
    """The JSON-lines spill file at ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unreadable = 0
        """Lines skipped by :meth:`read` because they were not a stored update."""

    def __repr__(self) -> str:
        return f"SpillFile({str(self.path)!r})"

    def size(self) -> int:
        """The file's length in bytes (0 when it does not exist)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, lines: list[str]) -> None:
        """Append whole lines (each ending with a newline).

        Raises:
            OSError: the file cannot be created or written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _MODE)
        try:
            os.fchmod(fd, _MODE)
            data = "".join(lines).encode()
            while data:
                written = os.write(fd, data)
                data = data[written:]
        finally:
            os.close(fd)

    def repair(self) -> None:
        """End a line a crash cut off, so the next append starts a line of its own.

        Raises:
            OSError: the file cannot be read or written.
        """
        size = self.size()
        if size == 0:
            return
        with self.path.open("rb") as spill:
            spill.seek(size - 1)
            last = spill.read(1)
        if last != b"\n":
            self.append(["\n"])

    def read(self, end: int, batch: int) -> Iterator[list[dict[str, Any]]]:
        """The stored updates of the first ``end`` bytes, ``batch`` at a time.

        Raises:
            OSError: the file cannot be read.
        """
        chunk: list[dict[str, Any]] = []
        with self.path.open("rb") as spill:
            while spill.tell() < end:
                line = spill.readline(max(1, end - spill.tell()))
                if not line:
                    break
                stored = _parse(line)
                if stored is None:
                    self.unreadable += bool(line.strip())
                    continue
                chunk.append(stored)
                if len(chunk) >= batch:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def discard_through(self, end: int) -> None:
        """Remove the first ``end`` bytes, keeping anything appended after them.

        Raises:
            OSError: the file cannot be rewritten.
        """
        with self.path.open("rb") as spill:
            spill.seek(end)
            tail = spill.read()
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, _MODE)
        try:
            os.fchmod(fd, _MODE)
            while tail:
                written = os.write(fd, tail)
                tail = tail[written:]
        finally:
            os.close(fd)


def _parse(line: bytes) -> dict[str, Any] | None:
    """A stored update from one line, or None for an empty or damaged line."""
    if not line.strip():
        return None
    try:
        stored = json.loads(line)
    except ValueError:
        log.warning("spill file: skipping a damaged line (%d bytes)", len(line))
        return None
    if not _is_update(stored):
        log.warning("spill file: skipping a line that is not a call update")
        return None
    return dict(stored)


def _is_update(stored: Any) -> bool:
    """Whether a parsed line has the shape of a stored update."""
    if not isinstance(stored, dict):
        return False
    record = stored.get("record")
    return (
        isinstance(stored.get("call_id"), str)
        and isinstance(stored.get("seq"), int)
        and isinstance(stored.get("at"), int | float)
        and isinstance(stored.get("event"), str)
        and isinstance(stored.get("detail", {}), dict)
        and isinstance(record, dict)
        and all(isinstance(leg, dict) for leg in record.get("legs") or ())
        and all(isinstance(item, dict) for item in record.get("policy_refusals") or ())
    )
