"""The current time, as one object the services are given (a frozen one in tests).

Every timestamp the app stores or compares is timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """The wall clock."""

    def now(self) -> datetime:
        """The current time in UTC, timezone-aware."""
        return datetime.now(UTC)

    def utcnow(self) -> datetime:
        """The same as `now`: spelled out where the UTC matters to the reader."""
        return self.now()


class FrozenClock(Clock):
    """A clock that stands still until told to move (for tests)."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a frozen clock needs a timezone-aware time")
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward by timedelta(**delta); answer the new time."""
        self.at += timedelta(**delta)
        return self.at
