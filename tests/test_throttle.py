"""The throttle that keeps a repeating log line (a refused client, a bad request) to one an interval, on a
clock the test turns: no sleeps."""

from __future__ import annotations

import logging

import pytest

from chromatica_watch.core.throttle import Throttle


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_event_an_interval_goes_through_and_the_next_tells_how_many_were_held_back() -> None:
    clock = _Clock()
    throttle = Throttle(10.0, clock)
    assert throttle.allow() == 0  # the first goes at once
    assert [throttle.allow() for _ in range(40)] == [None] * 40
    clock.now += 9.9
    assert throttle.allow() is None
    clock.now += 0.1
    assert throttle.allow() == 41  # the interval is over: this one goes, and tells of the 41 before it
    clock.now += 60
    assert throttle.allow() == 0  # a quiet spell: nothing held back


def test_throttled_log_lines_count_those_left_out(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    throttle = Throttle(10.0, clock)
    log = logging.getLogger("tests.throttle")
    with caplog.at_level(logging.WARNING, logger="tests.throttle"):
        written = []
        for _ in range(25 * 32):  # 32 refusals a second for 25 s (issue 24 saw 40)
            written.append(throttle.log(log, logging.WARNING, "refusing a request: %s", "busy"))
            clock.now += 1 / 32
    assert sum(written) == 3 and written[0]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refusing a request: busy",
                     "refusing a request: busy (319 more like it since the last such line, not logged)",
                     "refusing a request: busy (319 more like it since the last such line, not logged)"]
