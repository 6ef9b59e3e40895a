"""The CDR store's queries: records, events, legs and refusal counts from the tables.

Theory of operation: each function runs one query on a connection the store opened (the
store turns database errors into its own). Records come back as the JSON text the writer
stored (DESIGN section 4), events in the ``CallUpdate.as_dict()`` form, legs as their
column values. Times given as arguments are compared in UTC, as they are stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ._store_schema import CALLS, EVENTS, LEGS, REFUSALS

__all__ = ["call_events", "call_legs", "get_call", "list_calls", "refusal_counts"]

_LEG_ORDER = {"webrtc": 0, "gateway": 1, "pstn": 2}
_EVENT_COLUMNS = ("call_id", "seq", "at", "event", "detail", "final")


async def list_calls(
    conn: AsyncConnection, *, active: bool | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Records, newest start first (see :meth:`bridge.store.CallStore.list_calls`)."""
    query = select(CALLS.c.record).order_by(CALLS.c.started_at.desc(), CALLS.c.call_id.desc())
    if active is not None:
        ended = CALLS.c.ended_at
        query = query.where(ended.is_(None) if active else ended.is_not(None))
    if since is not None:
        utc = since.astimezone(UTC) if since.tzinfo is not None else since.replace(tzinfo=UTC)
        query = query.where(CALLS.c.started_at >= utc)
    rows = (await conn.execute(query.limit(limit))).scalars().all()
    return [json.loads(text) for text in rows]


async def get_call(conn: AsyncConnection, call_id: str) -> dict[str, Any] | None:
    """The latest record of ``call_id``, or None."""
    text = await conn.scalar(select(CALLS.c.record).where(CALLS.c.call_id == call_id))
    return None if text is None else dict(json.loads(text))


async def call_events(conn: AsyncConnection, call_id: str) -> list[dict[str, Any]]:
    """The call's updates in ``seq`` order."""
    columns = [EVENTS.c[name] for name in _EVENT_COLUMNS]
    query = select(*columns).where(EVENTS.c.call_id == call_id).order_by(EVENTS.c.seq)
    rows = (await conn.execute(query)).mappings().all()
    return [{**row, "at": float(row["at"]), "final": bool(row["final"])} for row in rows]


async def call_legs(conn: AsyncConnection, call_id: str) -> list[dict[str, Any]]:
    """The call's ``legs`` rows: webrtc, gateway, pstn."""
    rows = (await conn.execute(select(LEGS).where(LEGS.c.call_id == call_id))).mappings()
    legs = [dict(row) for row in rows.all()]
    return sorted(legs, key=lambda leg: _LEG_ORDER.get(leg["leg"], len(_LEG_ORDER)))


async def refusal_counts(conn: AsyncConnection) -> dict[str, int]:
    """Policy refusals by reason."""
    reason = REFUSALS.c.reason
    query = select(reason, func.count()).group_by(reason).order_by(reason)
    return {name: int(count) for name, count in await conn.execute(query)}
