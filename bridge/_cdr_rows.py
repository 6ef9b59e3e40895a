"""Call updates as CDR rows: the stored form of an update and the rows it writes.

Theory of operation: the store keeps an update in one *stored form*, a JSON-ready dict
(``call_id``, ``seq``, ``at``, ``event``, ``detail``, ``final`` and the ``record``
snapshot), which is also what a spill-file line holds. :func:`stored_form` builds it from
a :class:`~bridge.call.journal.CallUpdate` and scrubs every string on the way: records and
details carry no key material by construction, but a detail is free text (a cause, a
message), so anything shaped like a secret is replaced before it can reach a row, a line
or a log: SDES ``inline:`` keys, PEM private keys and digest ``response=`` values.

:func:`batch_rows` turns a batch of stored updates into the rows of each table: every
update gives its ``call_events`` row; only the latest update of each call in the batch
(highest ``seq``) gives the ``calls``, ``legs`` and ``policy_refusals`` rows, since its
record holds everything earlier ones did. Strings are cut to their column's length so that
no update is refused by a database that checks lengths. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, Table

from ._store_schema import CALLS, EVENTS, LEGS, REFUSALS

if TYPE_CHECKING:
    from .call.journal import CallUpdate

__all__ = ["BatchRows", "batch_rows", "redact", "stored_form", "stored_line"]

_SECRETS = (
    (re.compile(r"inline:[A-Za-z0-9+/=]+(?:\|[^\s\"'|;,]*)*"), "[sdes key removed]"),
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        "[private key removed]",
    ),
    (re.compile(r"(?i)\bresponse\s*=\s*\"?[0-9a-f]{16,}\"?"), "response=[removed]"),
)


def redact(text: str) -> str:
    """``text`` with anything shaped like a secret replaced (see the module docstring)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(key): _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def stored_form(update: CallUpdate) -> dict[str, Any]:
    """The update with its record as one JSON-ready dict, scrubbed of secrets."""
    stored = update.as_dict()
    stored["record"] = update.record
    scrubbed: dict[str, Any] = _scrub(stored)
    return scrubbed


def stored_line(stored: Mapping[str, Any]) -> str:
    """One spill-file line (JSON, newline-terminated) of a stored update."""
    return json.dumps(stored, separators=(",", ":"), ensure_ascii=True) + "\n"


@dataclass(slots=True)
class BatchRows:
    """The rows one batch of updates writes, per table."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    legs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)


def batch_rows(updates: Iterable[Mapping[str, Any]]) -> BatchRows:
    """The rows of a batch of stored updates (see the module docstring)."""
    rows = BatchRows()
    latest: dict[str, Mapping[str, Any]] = {}
    seen: set[tuple[str, int]] = set()
    for update in updates:
        key = (str(update["call_id"]), int(update["seq"]))
        if key in seen:
            continue
        seen.add(key)
        rows.events.append(_event_row(update))
        newest = latest.get(key[0])
        if newest is None or int(newest["seq"]) < key[1]:
            latest[key[0]] = update
    for update in latest.values():
        rows.calls.append(_call_row(update))
        record = update["record"]
        rows.legs.extend(_leg_row(update, leg) for leg in record.get("legs") or ())
        rows.refusals.extend(
            _refusal_row(update["call_id"], index, refusal)
            for index, refusal in enumerate(record.get("policy_refusals") or ())
        )
    return rows


def _event_row(update: Mapping[str, Any]) -> dict[str, Any]:
    return _fit(
        EVENTS,
        {
            "call_id": update["call_id"],
            "seq": int(update["seq"]),
            "at": float(update["at"]),
            "event": update["event"],
            "detail": dict(update.get("detail") or {}),
            "final": bool(update.get("final")),
        },
    )


def _call_row(update: Mapping[str, Any]) -> dict[str, Any]:
    record = update["record"]
    started = _time(record.get("started_at"))
    answered = _time(record.get("answered_at"))
    ended = _time(record.get("ended_at"))
    legs = {leg.get("leg"): leg for leg in record.get("legs") or ()}
    talk: float | None = None
    if ended is not None:
        talk = _seconds(answered, ended) if answered is not None else 0.0
    return _fit(
        CALLS,
        {
            "call_id": update["call_id"],
            "direction": _text(record.get("direction")),
            "user_name": _text(record.get("user")),
            "from_party": _text(record.get("from")),
            "to_party": _text(record.get("to")),
            "trunk": _text(record.get("trunk")),
            "started_at": started,
            "answered_at": answered,
            "ended_at": ended,
            "end_reason": _text(record.get("end_reason")),
            "sip_status": _int(record.get("sip_status")),
            "setup_seconds": _seconds(started, answered if answered is not None else ended),
            "talk_seconds": talk,
            "webrtc_codec": _text(_media(legs.get("webrtc")).get("codec")),
            "gateway_codec": _text(_media(legs.get("gateway")).get("codec")),
            "end_to_end_encrypted": _bool(record.get("end_to_end_encrypted")),
            "policy_refusals": len(record.get("policy_refusals") or ()),
            "last_seq": int(update["seq"]),
            "record": json.dumps(record, separators=(",", ":")),
            "updated_at": datetime.fromtimestamp(float(update["at"]), UTC),
        },
    )


def _leg_row(update: Mapping[str, Any], leg: Mapping[str, Any]) -> dict[str, Any]:
    signaling: Mapping[str, Any] = leg.get("signaling") or {}
    media = _media(leg)
    return _fit(
        LEGS,
        {
            "call_id": update["call_id"],
            "leg": _text(leg.get("leg")) or "?",
            "seq": int(update["seq"]),
            "encrypted": _bool(leg.get("encrypted")),
            "signaling_transport": _text(signaling.get("transport")),
            "tls_version": _text(signaling.get("tls_version")),
            "tls_cipher": _text(signaling.get("cipher")),
            "peer_certificate_verified": _bool(signaling.get("peer_certificate_verified")),
            "peer_certificate_subject": _text(signaling.get("peer_certificate_subject")),
            "mutual_tls": _bool(signaling.get("mutual_tls")),
            "media_protocol": _text(media.get("protocol")),
            "keying": _text(media.get("keying")),
            "dtls_version": _text(media.get("dtls_version")),
            "dtls_cipher": _text(media.get("dtls_cipher")),
            "dtls_role": _text(media.get("dtls_role")),
            "srtp_profile": _text(media.get("srtp_profile")),
            "crypto_suite": _text(media.get("crypto_suite")),
            "keys_fresh": _bool(media.get("keys_fresh")),
            "remote_fingerprint": _text(media.get("remote_fingerprint")),
            "fingerprint_matches_signaling": _bool(media.get("fingerprint_matches_signaling")),
            "codec": _text(media.get("codec")),
            "peer": _text(leg.get("peer")),
            "status": _text(leg.get("status")),
        },
    )


def _refusal_row(call_id: str, index: int, refusal: Mapping[str, Any]) -> dict[str, Any]:
    return _fit(
        REFUSALS,
        {
            "call_id": call_id,
            "idx": index,
            "reason": _text(refusal.get("reason")) or "unknown",
            "detail": _text(refusal.get("detail")),
            "at": _time(refusal.get("at")),
        },
    )


def _media(leg: Mapping[str, Any] | None) -> Mapping[str, Any]:
    media = (leg or {}).get("media")
    return media if isinstance(media, Mapping) else {}


def _fit(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """Cut strings to their column's length (a database may refuse longer ones)."""
    for name, value in row.items():
        column_type = table.c[name].type
        if isinstance(value, str) and isinstance(column_type, String) and column_type.length:
            row[name] = value[: column_type.length]
    return row


def _time(value: Any) -> datetime | None:
    """A record time (``2026-01-01T12:00:00.000Z``) as an aware UTC datetime."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
