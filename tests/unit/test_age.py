"""Age at the screening date, rounding, corrected age and bracket choice."""

from datetime import date

import pytest

from chatbot.screening.age import (
    AgeRules,
    add_months,
    age_between,
    bracket_for,
    date_at_age,
    next_bracket,
    screening_age,
)

RULES = AgeRules()


def test_months_and_days_at_the_screening_date():
    assert age_between(date(2025, 1, 10), date(2025, 4, 25)).as_dict() == {"months": 3, "days": 15}


@pytest.mark.parametrize(
    ("on", "rounded"),
    [(date(2025, 4, 25), 3), (date(2025, 4, 26), 4)],  # 3m15d -> 3, 3m16d -> 4
)
def test_sixteen_days_or_more_round_up(on, rounded):
    assert age_between(date(2025, 1, 10), on).rounded(RULES) == rounded


def test_month_ends_are_clamped():
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert age_between(date(2025, 1, 31), date(2025, 2, 28)).as_dict() == {"months": 1, "days": 0}


def test_screening_before_birth_is_refused():
    with pytest.raises(ValueError, match="before the birth"):
        age_between(date(2025, 5, 1), date(2025, 4, 1))


def test_preterm_child_under_24_months_uses_corrected_age():
    # Born at 32 weeks: 8 weeks early. Chronological 7m0d -> corrected 5m6d -> rounds to 5.
    age = screening_age(date(2026, 1, 1), date(2026, 8, 1), 32, RULES)
    assert age.chronological.as_dict() == {"months": 7, "days": 0}
    assert age.corrected is not None
    assert age.corrected.as_dict() == {"months": 5, "days": 6}
    assert age.used_months == 5
    assert bracket_for(age.used_months) == 3


def test_term_child_is_not_corrected():
    age = screening_age(date(2026, 1, 1), date(2026, 8, 1), 38, RULES)
    assert age.corrected is None
    assert age.used_months == 7


def test_no_correction_from_24_months():
    age = screening_age(date(2023, 1, 1), date(2025, 2, 1), 30, RULES)
    assert age.corrected is None
    assert age.used_months == 25


def test_cut_offs_are_configurable():
    rules = AgeRules(preterm_below_weeks=35)
    assert screening_age(date(2026, 1, 1), date(2026, 8, 1), 36, rules).corrected is None


@pytest.mark.parametrize(
    ("months", "bracket"),
    [(2, None), (3, 3), (7, 6), (23, 21), (24, 24), (29, 24), (71, 66), (72, 72), (73, None)],
)
def test_nearest_younger_bracket(months, bracket):
    assert bracket_for(months) == bracket


def test_next_bracket_and_its_date():
    assert next_bracket(21) == 24
    assert next_bracket(72) is None
    # The 6-month form applies from 5 months 16 days.
    assert date_at_age(date(2026, 1, 1), 6, RULES) == date(2026, 6, 17)
