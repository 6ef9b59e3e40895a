"""Connection admission: per-source and total caps on a listener, with quiet refusal logs.

Theory of operation
-------------------
A listener asks its :class:`ConnectionLimits` before it spends anything on a new
connection (a TLS handshake, a WebSocket session): :meth:`ConnectionLimits.admit` returns
None and counts the connection against its source address and the total, or returns the
name of the limit that refuses it (``"per-source"`` or ``"total"``). The listener then drops
the connection (SIP-TLS: abort the TCP connection before the handshake; WSS: answer 503
before the upgrade) and :meth:`ConnectionLimits.refused` counts it by limit and logs it.
:meth:`ConnectionLimits.release` gives the slot back when the connection ends.

A flood of refused connections must not flood the log either: :class:`QuietLog` writes at
most one line per (limit, source) per ``interval`` seconds and says how many it held back
in between. The state is plain counters (sans-IO): time comes from the caller.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ConnectionLimits", "ConnectionLimitsConfig", "QuietLog"]


@dataclass(frozen=True)
class ConnectionLimitsConfig:
    """Caps of one listener."""

    max_connections: int = 2048
    """Connections (or sessions) held at once from all sources."""
    max_per_source: int = 64
    """Connections held at once from one source address."""


class QuietLog:
    """Rate-limited warnings: at most one line per key per ``interval`` seconds.

    Args:
        logger: where the lines go.
        clock: the current time in seconds (``loop.time``).
        interval: seconds between two lines for the same key.
        max_keys: keys remembered at once (a flood from many sources stays bounded).
    """

    def __init__(
        self,
        logger: logging.Logger,
        clock: Callable[[], float],
        *,
        interval: float = 10.0,
        max_keys: int = 4096,
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._interval = interval
        self._max_keys = max_keys
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def report(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged less than ``interval`` ago.

        Returns:
            True when the line was written.
        """
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] += 1
            return False
        if last is None and len(self._last) >= self._max_keys:
            self._prune(now)
            if len(self._last) >= self._max_keys:
                self._held[key] += 1
                return False
        held = self._held.pop(key, 0)
        suffix = f" ({held} more like it not logged)" if held else ""
        self._logger.warning(message + "%s", *args, suffix)
        self._last[key] = now
        return True

    def _prune(self, now: float) -> None:
        for key, last in list(self._last.items()):
            if now - last >= self._interval:
                del self._last[key]


class ConnectionLimits:
    """Per-source and total connection caps of one listener.

    Args:
        config: the caps.
        name: the listener's name in log lines (``"SIP-TLS"``, ``"WSS"``).
        log: the quiet log that reports refusals.
    """

    def __init__(self, config: ConnectionLimitsConfig, name: str, log: QuietLog) -> None:
        self.config = config
        self.name = name
        self._log = log
        self._by_source: Counter[str] = Counter()
        self.total = 0
        """Connections held now."""
        self.refusals: Counter[str] = Counter()
        """Connections refused, by limit (``"per-source"``, ``"total"``)."""

    def held(self, source: str) -> int:
        """Connections held now from ``source``."""
        return self._by_source.get(source, 0)

    def admit(self, source: str) -> str | None:
        """Take a slot for a connection from ``source``; None, or the limit that refuses."""
        if self.total >= self.config.max_connections:
            return "total"
        if self._by_source[source] >= self.config.max_per_source:
            return "per-source"
        self._by_source[source] += 1
        self.total += 1
        return None

    def release(self, source: str) -> None:
        """Give back the slot of a connection admitted from ``source``."""
        left = self._by_source[source] - 1
        if left > 0:
            self._by_source[source] = left
        else:
            self._by_source.pop(source, None)
        self.total = max(0, self.total - 1)

    def refused(self, source: str, limit: str) -> None:
        """Count a refusal by ``limit`` and log it (rate-limited per source)."""
        self.refusals[limit] += 1
        cap = self.config.max_connections if limit == "total" else self.config.max_per_source
        self._log.report(
            f"{self.name} {limit} {source}",
            "%s connection from %s refused: %s connection limit (%d) reached",
            self.name,
            source,
            limit,
            cap,
        )
