"""What is due for a child, and the quiet hours."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from chatbot.screening.schedule import Due, QuietHours, due_of

JAKARTA = ZoneInfo("Asia/Jakarta")


def test_each_result_makes_its_own_thing_due():
    completed = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    routine = {
        "nextAction": "routine",
        "nextDueAt": datetime(2026, 6, 16),
        "completedAt": completed,
    }
    assert due_of(routine) == Due("routine", date(2026, 6, 16))
    again = {"nextAction": "rescreen_2_weeks", "nextDueAt": datetime(2026, 3, 16),
             "completedAt": completed}  # fmt: skip
    assert due_of(again) == Due("rescreen", date(2026, 3, 16))
    refer = {"nextAction": "refer", "nextDueAt": completed, "completedAt": completed}
    assert due_of(refer) == Due("referral_follow_up", date(2026, 3, 9))


def test_nothing_is_due_without_a_result_or_past_the_last_age():
    assert due_of(None) is None
    assert (
        due_of({"nextAction": "routine", "nextDueAt": None, "completedAt": datetime.now(UTC)})
        is None
    )


def test_quiet_hours_move_a_reminder_to_the_next_morning_in_the_parents_zone():
    hours = QuietHours(JAKARTA, 8, 20)
    assert hours.first_moment(date(2026, 6, 16)) == datetime(2026, 6, 16, 8, tzinfo=JAKARTA)
    early = datetime(2026, 6, 16, 6, 30, tzinfo=JAKARTA)
    assert hours.allowed(early) == datetime(2026, 6, 16, 8, tzinfo=JAKARTA)
    day = datetime(2026, 6, 16, 12, 0, tzinfo=JAKARTA)
    assert hours.allowed(day) == day
    late = datetime(2026, 6, 16, 13, 30, tzinfo=UTC)  # 20:30 in Jakarta
    assert hours.allowed(late) == datetime(2026, 6, 17, 8, tzinfo=JAKARTA)
