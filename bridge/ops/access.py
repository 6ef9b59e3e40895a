"""Who may use the ops API, and how fast: the bearer token and the token-bucket rate limit.

Theory of operation: the API has one bearer token (``[ops] api_token``, or one generated
once with :mod:`secrets` into ``<var_dir>/ops-token``, mode 0600, by :func:`load_token`).
:class:`BearerCheck` compares a presented ``Authorization`` header with it in constant
time (:func:`hmac.compare_digest`) and says only *whether* it matched and why not
(``missing``, ``malformed``, ``wrong``): the presented value goes nowhere. :class:`RateLimiter`
keeps one token bucket per key (the valid token's key, or the source address of requests
without a valid token) in an LRU of bounded size, so a flood of made-up tokens or addresses
cannot grow memory. Sans-IO: time is the ``now`` argument.
"""

from __future__ import annotations

import hmac
import math
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "TOKEN_FILE",
    "BearerCheck",
    "Denial",
    "RateLimiter",
    "load_token",
    "retry_after",
]

TOKEN_FILE = "ops-token"  # noqa: S105 - a file name, not a secret
"""The generated token's file name under ``node.var_dir``."""
_TOKEN_BYTES = 32
_MAX_HEADER = 512


def load_token(var_dir: Path) -> tuple[str, Path]:
    """The generated bearer token: read from ``<var_dir>/ops-token``, or created there.

    A new file is created with mode 0600 (never replaced once it exists).

    Returns:
        the token and the file's path (print the path, never the token).

    Raises:
        OSError: the file cannot be read or created, or it holds no usable token.
    """
    path = var_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        var_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
        return token, path
    if len(token) < 16:
        raise OSError(f"{path} holds no token (at least 16 characters)")
    return token, path


class Denial(StrEnum):
    """Why a request's credentials were not accepted (for the log line; never the value)."""

    MISSING = "no bearer token"
    MALFORMED = "malformed Authorization header"
    WRONG = "wrong bearer token"


@dataclass(frozen=True, slots=True)
class BearerCheck:
    """Checks ``Authorization: Bearer <token>`` headers against the one token."""

    token: str

    def __repr__(self) -> str:
        return "BearerCheck(token=<hidden>)"

    def check(self, header: str | None) -> Denial | None:
        """None when ``header`` carries the token; otherwise why not."""
        if not header:
            return Denial.MISSING
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value or len(header) > _MAX_HEADER:
            return Denial.MALFORMED
        if not hmac.compare_digest(value.encode("utf-8", "replace"), self.token.encode()):
            return Denial.WRONG
        return None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by key, at most ``max_keys`` of them (least recently used go first).

    Args:
        rate: tokens added per second.
        burst: the bucket's size (requests allowed at once).
        max_keys: buckets kept; an evicted key starts again with a full bucket.
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = 4096) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate > 0, burst >= 1 and max_keys >= 1 are needed")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Spend one token of ``key``'s bucket.

        Returns:
            0.0 when the request may go ahead, otherwise the seconds until a token is
            there again (for ``Retry-After``).
        """
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), at=now)
        else:
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.at = now
        self._buckets[key] = bucket  # most recently used last
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after(wait: float) -> str:
    """The ``Retry-After`` value (whole seconds, at least 1) for a wait in seconds."""
    return str(max(1, math.ceil(wait)))
