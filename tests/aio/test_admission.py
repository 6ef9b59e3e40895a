"""Connection caps and the quiet refusal log (sans-IO, a fake clock)."""

from __future__ import annotations

import logging

import pytest

from sip_gateway.aio.admission import ConnectionLimits, ConnectionLimitsConfig, QuietLog

LOG = logging.getLogger("tests.admission")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_caps_per_source_then_total_and_release_gives_slots_back() -> None:
    limits = ConnectionLimits(
        ConnectionLimitsConfig(max_connections=3, max_per_source=2),
        "SIP-TLS",
        QuietLog(LOG, Clock()),
    )
    assert [limits.admit("10.0.0.1") for _ in range(3)] == [None, None, "per-source"]
    assert limits.admit("10.0.0.2") is None
    assert limits.admit("10.0.0.3") == "total"
    assert (limits.total, limits.held("10.0.0.1")) == (3, 2)
    limits.release("10.0.0.1")
    assert limits.admit("10.0.0.3") is None
    for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        limits.release(source)
    assert (limits.total, limits.held("10.0.0.1"), limits.held("10.0.0.3")) == (0, 0, 0)


def test_refusals_are_counted_every_time_but_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limits = ConnectionLimits(
        ConnectionLimitsConfig(max_connections=1, max_per_source=1),
        "WSS",
        QuietLog(LOG, clock, interval=10.0),
    )
    caplog.set_level(logging.WARNING, LOG.name)
    for _ in range(1000):
        limits.refused("192.0.2.7", "per-source")
    clock.now = 10.0
    limits.refused("192.0.2.7", "per-source")
    limits.refused("192.0.2.8", "total")
    assert limits.refusals == {"per-source": 1001, "total": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "WSS connection from 192.0.2.7 refused: per-source connection limit (1) reached",
        "WSS connection from 192.0.2.7 refused: per-source connection limit (1) reached"
        " (999 more like it not logged)",
        "WSS connection from 192.0.2.8 refused: total connection limit (1) reached",
    ]


def test_quiet_log_remembers_a_bounded_number_of_keys(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = QuietLog(LOG, clock, interval=5.0, max_keys=10)
    caplog.set_level(logging.WARNING, LOG.name)
    written = sum(log.report(f"k{i}", "line %d", i) for i in range(100))
    assert written == 10  # a flood from many sources writes at most max_keys lines
    clock.now = 5.0
    assert log.report("k50", "line %d", 50)  # old keys expire, new ones are logged again
