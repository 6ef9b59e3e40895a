"""The call journal: numbering, the final update, and sinks that fail."""

from __future__ import annotations

import logging

import pytest

from bridge.call.journal import CallUpdate, Journal
from bridge.security import PSTN_CAVEAT, SecurityRecord


class Collect:
    def __init__(self) -> None:
        self.updates: list[CallUpdate] = []

    def call_update(self, update: CallUpdate) -> None:
        self.updates.append(update)


class Broken:
    def call_update(self, update: CallUpdate) -> None:
        raise RuntimeError("sink is down")


def _record(call_id: str) -> SecurityRecord:
    return SecurityRecord(call_id=call_id, direction="outbound", from_party="a", to_party="+1")


def test_updates_are_numbered_per_call_and_the_frozen_one_is_final() -> None:
    sink = Collect()
    journal = Journal(clock=lambda: 100.0)
    journal.add_sink(sink)
    first, second = _record("c-1"), _record("c-2")
    journal.report(first, "started")
    journal.report(second, "started")
    journal.report(first, "ringing", {"cause": "trunk 180"})
    first.freeze("caller-hangup", None)
    journal.report(first, "ended", {"reason": "caller-hangup"})
    assert [(u.call_id, u.seq, u.event, u.final) for u in sink.updates] == [
        ("c-1", 1, "started", False),
        ("c-2", 1, "started", False),
        ("c-1", 2, "ringing", False),
        ("c-1", 3, "ended", True),
    ]
    assert journal.open_calls == 1
    final = sink.updates[-1]
    assert final.record["end_reason"] == "caller-hangup"
    assert final.record["caveats"] == [PSTN_CAVEAT]
    assert final.as_dict() == {
        "call_id": "c-1",
        "seq": 3,
        "at": 100.0,
        "event": "ended",
        "detail": {"reason": "caller-hangup"},
        "final": True,
    }


def test_the_snapshot_does_not_change_with_the_record() -> None:
    sink = Collect()
    journal = Journal(sinks=[sink])
    record = _record("c-3")
    journal.report(record, "started")
    record.refuse("no-fingerprint", "offer without a=fingerprint")
    journal.report(record, "refused", {"reason": "no-fingerprint"})
    assert sink.updates[0].record["policy_refusals"] == []
    assert sink.updates[1].record["policy_refusals"][0]["reason"] == "no-fingerprint"


def test_a_failing_sink_neither_stops_the_others_nor_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = Collect()
    journal = Journal(sinks=[Broken(), good])
    with caplog.at_level(logging.ERROR, logger="bridge.call"):
        update = journal.report(_record("c-4"), "started")
    assert good.updates == [update]
    assert "a sink failed to take the started update" in caplog.text
