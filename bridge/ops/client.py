"""``pstn-bridge calls`` and ``pstn-bridge call ID``: read the ops API, print a table or JSON.

Theory of operation: :func:`fetch_json` makes one HTTPS GET with the bearer token, on a
client context from :func:`sip_gateway.tls.client_context` (the certificate chain and host
name are verified: the configured CA, or the development CA the bridge generated), and
turns every failure into an :class:`OpsClientError` whose message says what to do and whose
``exit_status`` the command returns. :func:`render_calls` prints one line per call: id,
direction, parties, state or end reason, duration, a lock column per leg (``locked`` when
the leg's encryption was observed, ``OPEN`` when it was observed absent, ``unknown`` when
not observed, as the record's ``encrypted`` true/false/null) and a footnote with the PSTN
caveat of the calls that reach the phone network. :func:`render_call` adds each leg's
facts. The token is sent, never printed.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sip_gateway.tls import TlsClientConfig, TlsPolicyError, client_context

__all__ = [
    "EXIT_DENIED",
    "EXIT_NOT_FOUND",
    "EXIT_UNREACHABLE",
    "OpsClientConfig",
    "OpsClientError",
    "fetch_json",
    "render_call",
    "render_calls",
]

EXIT_NOT_FOUND = 1
EXIT_UNREACHABLE = 3
EXIT_DENIED = 4
_LEGS = ("webrtc", "gateway", "pstn")
PSTN_CAVEAT = "pstn-leg-carrier-dependent"
"""The record's caveat name (``bridge.security.PSTN_CAVEAT``; not imported: the command
stays light)."""
_LOCKS = {True: "locked", False: "OPEN", None: "unknown"}


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsClientConfig:
    """Where the ops API is and how to reach it.

    Attributes:
        url: the bridge's base URL (``https://127.0.0.1:8443``).
        token: the bearer token (never shown).
        ca_file: the CA that anchors the bridge's certificate (None: the system store).
        timeout: seconds for the whole request.
    """

    url: str
    token: str = field(repr=False)
    ca_file: Path | None = None
    timeout: float = 10.0


class OpsClientError(Exception):
    """The API could not be read; the message says why, ``exit_status`` what to return."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def fetch_json(config: OpsClientConfig, path: str) -> Any:
    """GET ``path`` (with its query) from the API and decode the JSON body.

    Raises:
        OpsClientError: unreachable, TLS refused, 401/429, 404 or another error status.
    """
    url = config.url.rstrip("/") + path
    if urllib.parse.urlsplit(url).scheme != "https":
        raise OpsClientError(f"{config.url}: the ops API is only served over https", 2)
    try:
        ctx = client_context(TlsClientConfig(ca_file=config.ca_file))
    except TlsPolicyError as exc:
        raise OpsClientError(f"TLS: {exc}", 2) from None
    request = urllib.request.Request(  # noqa: S310 - https only, checked above
        url, headers={"Authorization": f"Bearer {config.token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=config.timeout, context=ctx) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, config.url) from None
    except urllib.error.URLError as exc:
        raise _unreachable(exc.reason, config.url) from None
    except (OSError, ValueError) as exc:
        raise _unreachable(exc, config.url) from None


def _http_error(exc: urllib.error.HTTPError, url: str) -> OpsClientError:
    try:
        message = str(json.loads(exc.read()).get("error", exc.reason))
    except (ValueError, AttributeError, OSError):
        message = str(exc.reason)
    if exc.code == 401:
        return OpsClientError(
            f"the bridge at {url} refused the token (401): check --token-file or "
            "PSTN_BRIDGE_OPS__API_TOKEN",
            EXIT_DENIED,
        )
    if exc.code == 429:
        wait = exc.headers.get("Retry-After", "a few")
        return OpsClientError(f"rate limited (429): retry in {wait} s", EXIT_DENIED)
    if exc.code == 404:
        return OpsClientError(message, EXIT_NOT_FOUND)
    return OpsClientError(f"the bridge answered {exc.code}: {message}", EXIT_DENIED)


def _unreachable(reason: object, url: str) -> OpsClientError:
    if isinstance(reason, ssl.SSLCertVerificationError):
        detail = f"its certificate is not trusted ({reason.verify_message}); pass --ca-file"
    elif isinstance(reason, ConnectionRefusedError):
        detail = "nothing listens there (is the bridge running?)"
    elif isinstance(reason, TimeoutError):
        detail = "no answer in time"
    else:
        detail = str(reason)
    return OpsClientError(f"cannot reach the bridge at {url}: {detail}", EXIT_UNREACHABLE)


# -- rendering ----------------------------------------------------------------------------


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _duration(record: Mapping[str, Any], now: datetime) -> str:
    answered = _time(record.get("answered_at"))
    if answered is None:
        return "-"
    ended = _time(record.get("ended_at")) or now
    seconds = max(0, int((ended - answered).total_seconds()))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _state(record: Mapping[str, Any]) -> str:
    if record.get("ended_at") is not None or record.get("end_reason") is not None:
        return str(record.get("end_reason") or "ended")
    return "answered" if record.get("answered_at") else "setting-up"


def _locks(record: Mapping[str, Any]) -> list[str]:
    legs = {leg.get("leg"): leg for leg in record.get("legs") or ()}
    cells = []
    for name in _LEGS:
        leg = legs.get(name)
        cells.append("-" if leg is None else _LOCKS.get(leg.get("encrypted"), "unknown"))
    return cells


def _line(record: Mapping[str, Any], now: datetime) -> list[str]:
    pstn = PSTN_CAVEAT in (record.get("caveats") or ())
    locks = _locks(record)
    if pstn:
        locks[2] += " *"
    return [
        str(record.get("call_id", "?")),
        str(record.get("direction", "?")),
        str(record.get("from") or "-"),
        str(record.get("to") or "-"),
        _state(record),
        _duration(record, now),
        *locks,
    ]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


_HEADER = ("ID", "DIR", "FROM", "TO", "STATE", "DURATION", "WEBRTC", "GATEWAY", "PSTN")


def render_calls(records: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """The calls as a table, with the PSTN caveat as a footnote."""
    if not records:
        return "no calls"
    now = now or datetime.now(UTC)
    lines = [_table([_HEADER, *(_line(record, now) for record in records)])]
    caveats = [
        str(leg.get("caveat"))
        for record in records
        if PSTN_CAVEAT in (record.get("caveats") or ())
        for leg in record.get("legs") or ()
        if leg.get("leg") == "pstn" and leg.get("caveat")
    ]
    if caveats:
        lines.append(f"* {PSTN_CAVEAT}: {caveats[0]}")
    return "\n".join(lines)


def render_call(record: Mapping[str, Any], now: datetime | None = None) -> str:
    """One call: its table line, then each leg's facts, refusals and caveats."""
    lines = [render_calls([record], now), ""]
    for leg in record.get("legs") or ():
        name = leg.get("leg", "?")
        lock = _LOCKS.get(leg.get("encrypted"), "unknown")
        lines.append(f"{name}: {lock}" + (f" ({leg['status']})" if leg.get("status") else ""))
        for part in ("signaling", "media"):
            facts = leg.get(part) or {}
            shown = ", ".join(f"{k}={'-' if v is None else v}" for k, v in facts.items())
            if shown:
                lines.append(f"  {part}: {shown}")
        if leg.get("peer"):
            lines.append(f"  peer: {leg['peer']}")
    lines.append(f"end-to-end encrypted: {str(record.get('end_to_end_encrypted')).lower()}")
    for refusal in record.get("policy_refusals") or ():
        lines.append(f"policy refusal: {refusal.get('reason')}: {refusal.get('detail')}")
    return "\n".join(lines)
