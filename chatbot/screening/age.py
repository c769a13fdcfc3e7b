"""Age at the screening date, corrected age for preterm children, and bracket choice."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

from chatbot.screening.bank import BRACKETS


@dataclass(frozen=True)
class AgeRules:
    """Cut-offs from the guideline, configurable (settings)."""

    round_up_days: int = 16  # 16 days or more count as a whole month
    preterm_below_weeks: int = 37  # born before this many weeks is preterm
    term_weeks: int = 40  # corrected age subtracts (term - gestational) weeks
    correct_until_months: int = 24  # corrected age only while younger than this


@dataclass(frozen=True)
class Age:
    months: int
    days: int

    def rounded(self, rules: AgeRules) -> int:
        return self.months + (1 if self.days >= rules.round_up_days else 0)

    def as_dict(self) -> dict[str, int]:
        return {"months": self.months, "days": self.days}


def add_months(d: date, months: int) -> date:
    """`d` plus whole months, clamped to the end of a shorter month (Jan 31 + 1 -> Feb 28)."""
    month_index = d.month - 1 + months
    year, month = d.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def age_between(birth: date, on: date) -> Age:
    """Whole months and remaining days from `birth` to `on` (on >= birth)."""
    if on < birth:
        raise ValueError("the screening date is before the birth date")
    months = (on.year - birth.year) * 12 + (on.month - birth.month)
    if add_months(birth, months) > on:
        months -= 1
    return Age(months, (on - add_months(birth, months)).days)


@dataclass(frozen=True)
class ScreeningAge:
    chronological: Age
    corrected: Age | None  # None when no correction applies
    used_months: int  # the rounded age in months the bracket is chosen by
    reference_birth: date  # birth date, shifted forward for corrected age

    @property
    def used(self) -> Age:
        return self.corrected or self.chronological


def screening_age(
    birth: date, on: date, gestational_weeks: int | None, rules: AgeRules
) -> ScreeningAge:
    chronological = age_between(birth, on)
    preterm = gestational_weeks is not None and gestational_weeks < rules.preterm_below_weeks
    if preterm and chronological.rounded(rules) < rules.correct_until_months:
        assert gestational_weeks is not None
        shifted = birth + timedelta(weeks=rules.term_weeks - gestational_weeks)
        corrected = age_between(shifted, on) if on >= shifted else Age(0, 0)
        return ScreeningAge(chronological, corrected, corrected.rounded(rules), shifted)
    return ScreeningAge(chronological, None, chronological.rounded(rules), birth)


def bracket_for(months: int) -> int | None:
    """The nearest younger bracket, or None when out of range (under 3 or over 72 months)."""
    if months < BRACKETS[0] or months > BRACKETS[-1]:
        return None
    return max(b for b in BRACKETS if b <= months)


def next_bracket(months: int) -> int | None:
    """The first bracket strictly after `months`, or None past the last one."""
    later = [b for b in BRACKETS if b > months]
    return later[0] if later else None


def date_at_age(reference_birth: date, months: int, rules: AgeRules) -> date:
    """The first date on which the (rounded) age reaches `months`."""
    # Age rounds up from (months - 1) months + round_up_days days.
    return add_months(reference_birth, months - 1) + timedelta(days=rules.round_up_days)
