"""The suite-wide secret scan: no secret used in the run reaches what the bridge writes out.

Theory of operation: while the whole test session runs, taps record every secret the
code under test handles, at the one place each kind passes through:

* SDES master keys and salts: every :class:`~sip_gateway.sdp.crypto.KeyParams` made (ours
  when we offer or answer, the peer's when we parse its ``a=crypto``; baresip's and SIPp's
  keys included, since the bridge parses them);
* digest passwords, HA1s and responses: every call of ``compute_ha1`` and
  ``compute_response`` (the server computes the expected response too, so the responses of
  JsSIP in Chromium are caught);
* private keys, the digest nonce secret and the ops token: read from the files under the
  session's temporary directory at the end.

Other taps record what the bridge lets out: every log record at INFO and above (the
production level; the root logger is set to INFO for the session), every
:class:`~bridge.call.journal.CallUpdate` (what the store, MQTT, the metrics and the ops
API are fed), and the body of every HTTP response a test client reads (the ops API). At
the end, :func:`scan` looks for every secret (as text, base64 and hex) in those captures
and in every file under the session's temporary directory (SQLite databases, spill files,
PostgreSQL's data directory, broker state, logs), except the files that are the secret's
own home (private key files, ``digest.secret``, ``ops-token``); databases (SQLite files,
PostgreSQL data directories: the user store keeps HA1s there by design) are scanned for
every other secret.

A third-party peer's working directory (SIPp's message log and scenarios, baresip's
log: they print their own keys and digest exchanges by design) is not the bridge's
output: its fixture marks it with :func:`mark_peer_dir` and the scan skips it.

Matching is by token: captures are split into runs of base64/hex/URL-safe characters and
each run (and each window of a secret's length inside a longer run) is looked up in a set;
secrets that are not token-shaped are searched for directly. Secrets shorter than
:data:`MIN_SECRET` characters, or with fewer than :data:`MIN_DISTINCT` distinct characters,
are not searched (too many false positives) and are counted.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_SECRET = 12
MIN_DISTINCT = 5
"""A value made of fewer distinct characters ("000000000000", "abababababab": what
Hypothesis generates as passwords) cannot be told from ordinary data: counted, not searched."""
MAX_FILE = 64 * 1024 * 1024
_TOKEN = re.compile(rb"[A-Za-z0-9+/=_-]{12,}")
_PEM_KEY = re.compile(
    rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+(.+?)-----END [A-Z ]*PRIVATE KEY-----", re.S
)
_SQLITE = b"SQLite format 3\x00"


def _database_file(path: Path, data: bytes) -> bool:
    """An SQLite database or a file of a PostgreSQL data directory (user stores hold HA1s)."""
    if data.startswith(_SQLITE) or path.name.endswith(("-journal", "-wal")):
        return True
    return any((parent / "PG_VERSION").is_file() for parent in path.parents)


PEER_MARKER = ".third-party-peer"


def mark_peer_dir(path: Path) -> Path:
    """Mark ``path`` as a third-party peer's own working directory (not scanned)."""
    (path / PEER_MARKER).write_text("written by a peer, not by the bridge\n")
    return path


@dataclass(slots=True)
class Secrets:
    """The secrets seen in the run, by kind, as the byte strings to look for."""

    by_kind: dict[str, set[bytes]] = field(default_factory=dict)
    too_short: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_text(self, kind: str, text: str) -> None:
        """Remember a text secret (password, digest response, token)."""
        self._add(kind, text.encode("utf-8", "replace"))

    def add_bytes(self, kind: str, raw: bytes) -> None:
        """Remember a binary secret by its base64, URL-safe base64 and hex forms."""
        if len(raw) < MIN_SECRET // 2:
            with self.lock:
                self.too_short += 1
            return
        self._add(kind, base64.b64encode(raw).rstrip(b"="))
        self._add(kind, base64.urlsafe_b64encode(raw).rstrip(b"="))
        self._add(kind, raw.hex().encode())
        self._add(kind, raw.hex().upper().encode())

    def _add(self, kind: str, value: bytes) -> None:
        with self.lock:
            if len(value) < MIN_SECRET or len(set(value)) < MIN_DISTINCT:
                self.too_short += 1
                return
            self.by_kind.setdefault(kind, set()).add(value)

    def count(self) -> dict[str, int]:
        """How many byte strings of each kind are searched for."""
        return {kind: len(values) for kind, values in sorted(self.by_kind.items())}


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret found where it must not be."""

    kind: str
    where: str

    def __str__(self) -> str:
        return f"a {self.kind} in {self.where}"


def find(
    secrets: Secrets, data: bytes, where: str, allowed: frozenset[str] = frozenset()
) -> list[Finding]:
    """Every secret of ``secrets`` (but ``allowed`` kinds) in ``data``, one finding per kind."""
    index: dict[bytes, str] = {}
    odd: list[tuple[bytes, str]] = []
    for kind, values in secrets.by_kind.items():
        if kind in allowed:
            continue
        for value in values:
            if _TOKEN.fullmatch(value):
                index[value] = kind
            else:
                odd.append((value, kind))
    lengths = sorted({len(v) for v in index})
    found: dict[str, Finding] = {}
    for match in _TOKEN.finditer(data):
        token = match.group()
        kind = index.get(token)
        if kind is None:
            kind = _window(token, index, lengths)
        if kind is not None and kind not in found:
            found[kind] = Finding(kind, where)
    for value, kind in odd:
        if kind not in found and value in data:
            found[kind] = Finding(kind, where)
    return list(found.values())


def _window(token: bytes, index: dict[bytes, str], lengths: list[int]) -> str | None:
    for length in lengths:
        if length >= len(token):
            break
        for start in range(len(token) - length + 1):
            kind = index.get(token[start : start + length])
            if kind is not None:
                return kind
    return None


def private_keys(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every PEM private key under ``root`` (the body's base64 lines, joined)."""
    for path in _files(root):
        if path.suffix not in (".key", ".pem") or path.stat().st_size > 1_000_000:
            continue
        data = path.read_bytes()
        for match in _PEM_KEY.finditer(data):
            body = b"".join(
                line.strip() for line in match.group(1).splitlines() if b":" not in line
            )
            yield path, body


def register_files(secrets: Secrets, root: Path) -> set[Path]:
    """Register the secrets kept in files under ``root``; returns those files."""
    homes: set[Path] = set()
    for path, body in private_keys(root):
        homes.add(path)
        for start in range(0, max(len(body) - 64, 1), 64):  # every 64-char PEM line
            secrets._add("private key", body[start : start + 64])
    for path in _files(root):
        if path.name == "digest.secret":
            secrets.add_bytes("digest nonce secret", path.read_bytes())
            homes.add(path)
        elif path.name == "ops-token":
            secrets.add_text("ops token", path.read_text(errors="replace").strip())
            homes.add(path)
    return homes


def scan_files(secrets: Secrets, root: Path, skip: set[Path]) -> list[Finding]:
    """Look for every secret in every file under ``root`` except ``skip``."""
    findings: list[Finding] = []
    for path in _files(root):
        if path in skip or path.stat().st_size > MAX_FILE:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        allowed = frozenset({"digest HA1"}) if _database_file(path, data) else frozenset()
        findings += find(secrets, data, str(path), allowed)
    return findings


def _files(root: Path) -> Iterator[Path]:
    for directory, dirs, names in os.walk(root):
        if PEER_MARKER in names:
            dirs.clear()
            continue
        for name in names:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path


class CaptureLog(logging.Handler):
    """Writes every record (message and traceback) to a file."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        self._out = path.open("a", encoding="utf-8", errors="replace")
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = f"{record.name}: unformattable record {record.msg!r}"
        with self.lock or threading.Lock():
            self._out.write(text + "\n")

    def close(self) -> None:
        self._out.close()
        super().close()


def wrap(function: Callable[..., Any], tap: Callable[..., None]) -> Callable[..., Any]:
    """``function`` with ``tap(result, *args, **kwargs)`` called after each call."""

    def tapped(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        try:
            tap(result, *args, **kwargs)
        except Exception:
            logging.getLogger("tests.leakscan").exception("a tap failed")
        return result

    tapped.__wrapped__ = function  # type: ignore[attr-defined]
    return tapped


def dump_json_lines(path: Path, items: Iterable[Any]) -> None:
    """Append JSON lines (the taps' captures of events)."""
    with path.open("a", encoding="utf-8") as out:
        for item in items:
            out.write(json.dumps(item, default=str) + "\n")
