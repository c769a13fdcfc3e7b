"""What is due for a child, and when a reminder may be sent: pure rules, no I/O.

KPSP works as a schedule kept: the next routine screening at the next KPSP age (its date
is computed when a screening completes, from the corrected age for a preterm child under
24 months: scoring.py), a re-screen two weeks after a doubtful result, and after a
referral a follow-up question a week later ("did you visit the puskesmas?"). The child's
`lastScreening` summary holds the first two already (`nextAction`, `nextDueAt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chatbot.screening.age import AgeRules, date_at_age, next_bracket, screening_age

REFERRAL_FOLLOW_UP_AFTER = timedelta(days=7)
# What is due -> the WhatsApp template that reminds of it (chatbot/data/whatsapp_templates.json).
TEMPLATE = {
    "routine": "screening_due",
    "rescreen": "screening_due",
    "referral_follow_up": "referral_follow_up",
}
# What is due -> the text (chatbot/data/texts.json) that names it inside a reminder.
WHEN_TEXT = {
    "routine": "reminder_when_routine",
    "rescreen": "reminder_when_rescreen",
    "referral_follow_up": "reminder_when_referral_follow_up",
}


@dataclass(frozen=True)
class Due:
    kind: str  # routine | rescreen | referral_follow_up
    on: date

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "on": self.on.isoformat()}


def _date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else None


def due_of(last_screening: Mapping[str, Any] | None) -> Due | None:
    """What the child's last result makes due, or None (never screened, or past the last
    KPSP age). An archived child has nothing due: the caller passes None."""
    if not last_screening:
        return None
    action = last_screening.get("nextAction")
    due = _date(last_screening.get("nextDueAt"))
    if action == "routine" and due is not None:
        return Due("routine", due)
    if action == "rescreen_2_weeks" and due is not None:
        return Due("rescreen", due)
    completed = _date(last_screening.get("completedAt"))
    if action == "refer" and completed is not None:
        return Due("referral_follow_up", completed + REFERRAL_FOLLOW_UP_AFTER)
    return None


def corrected_next_due(
    last_screening: Mapping[str, Any] | None,
    birth: date,
    gestational_weeks: int | None,
    screened_on: date,
    rules: AgeRules,
) -> date | None:
    """The next routine screening's date once the birth date (or gestation) is corrected:
    the next KPSP age after the last bracket, from the corrected reference birth date as
    scoring computed it. None when the last result did not set a routine date (a re-screen
    stays two weeks after its screening, a referral's follow-up a week after it)."""
    if not last_screening or last_screening.get("nextAction") != "routine":
        return None
    following = next_bracket(int(last_screening["bracket"]))
    if following is None:
        return None
    reference = screening_age(birth, screened_on, gestational_weeks, rules).reference_birth
    return date_at_age(reference, following, rules)


@dataclass(frozen=True)
class QuietHours:
    """Reminders go out only between `start` and `end` o'clock in `tz`."""

    tz: ZoneInfo
    start: int = 8
    end: int = 20

    def first_moment(self, on: date) -> datetime:
        """The first moment a reminder for a date may go: that day at `start`, local."""
        return datetime.combine(on, time(self.start), self.tz)

    def allowed(self, moment: datetime) -> datetime:
        """`moment`, or the next moment after it within the hours."""
        local = moment.astimezone(self.tz)
        if local.hour < self.start:
            return datetime.combine(local.date(), time(self.start), self.tz)
        if local.hour >= self.end:
            return datetime.combine(local.date() + timedelta(days=1), time(self.start), self.tz)
        return moment
