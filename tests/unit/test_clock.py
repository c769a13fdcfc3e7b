"""The clock the services are given: the wall clock, and a frozen one for tests."""

from datetime import UTC, datetime, timedelta

import pytest

from chatbot.clock import Clock, FrozenClock


def test_wall_clock_answers_aware_utc():
    before = datetime.now(UTC)
    now = Clock().now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
    assert Clock().utcnow().tzinfo is UTC


def test_frozen_clock_stands_still_until_advanced():
    start = datetime(2024, 1, 31, 23, 59, tzinfo=UTC)
    clock = FrozenClock(start)
    assert clock.now() == clock.utcnow() == start
    assert clock.advance(minutes=2) == start + timedelta(minutes=2)
    assert clock.now() == datetime(2024, 2, 1, 0, 1, tzinfo=UTC)


def test_frozen_clock_refuses_a_naive_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        FrozenClock(datetime(2024, 1, 1))
