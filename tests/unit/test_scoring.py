"""Scoring thresholds, per-domain explanations and the next step."""

from datetime import date

import pytest

from chatbot.screening.age import AgeRules
from chatbot.screening.bank import shipped_bank
from chatbot.screening.scoring import score

BANK = shipped_bank()
RULES = AgeRules()
BIRTH = date(2024, 1, 1)
TODAY = date(2025, 10, 5)


def answers(bracket, no=()):
    return {item.number: item.number not in no for item in bracket.items}


def run(months, no=(), previous_doubtful=False):
    bracket = BANK.bracket(months)
    return score(
        bracket, answers(bracket, no), BANK.scoring, TODAY, BIRTH, RULES, previous_doubtful
    )


def test_nine_or_ten_yes_is_appropriate_with_routine_rescreen_at_next_bracket():
    result = run(21, no=(3,))
    assert (result.yes_count, result.item_count) == (9, 10)
    assert (result.category, result.risk_level, result.next_action) == (
        "appropriate",
        "low",
        "routine",
    )
    assert result.next_bracket == 24
    assert result.next_due == date(2025, 12, 17)  # 23 months 16 days after birth


def test_seven_or_eight_yes_is_doubtful_with_rescreen_in_two_weeks():
    for no in ((1, 2), (1, 2, 3)):
        result = run(21, no=no)
        assert (result.category, result.risk_level) == ("doubtful", "medium")
        assert result.next_action == "rescreen_2_weeks"
        assert result.next_due == date(2025, 10, 19)


def test_six_or_fewer_yes_is_possible_deviation_and_referred():
    result = run(21, no=(1, 2, 3, 4))
    assert (result.yes_count, result.category, result.risk_level) == (
        6,
        "possible_deviation",
        "high",
    )
    assert result.next_action == "refer"
    assert result.next_due == TODAY


def test_doubtful_again_after_a_rescreen_is_referred():
    result = run(21, no=(1, 2), previous_doubtful=True)
    assert result.category == "doubtful"
    assert result.next_action == "refer"


def test_no_answers_are_explained_per_domain_including_shared_items():
    bracket = BANK.bracket(21)
    shared = next(item for item in bracket.items if len(item.domains) == 2)
    result = run(21, no=(1, shared.number))
    assert result.no_by_domain[bracket.items[0].domains[0]] == [1]
    for domain in shared.domains:
        assert shared.number in result.no_by_domain[domain]
    assert all(nums for nums in result.no_by_domain.values())


def test_nine_item_bracket_uses_its_own_item_count():
    assert len(BANK.bracket(30).items) == 9
    all_yes = run(30)
    assert (all_yes.yes_count, all_yes.item_count, all_yes.category) == (9, 9, "appropriate")
    assert run(30, no=(1,)).category == "doubtful"


def test_last_bracket_has_no_further_routine_screening():
    result = run(72)
    assert result.next_action == "routine"
    assert result.next_bracket is None
    assert result.next_due is None


def test_scoring_needs_every_answer():
    bracket = BANK.bracket(3)
    partial = dict(list(answers(bracket).items())[:5])
    with pytest.raises(ValueError, match="every item"):
        score(bracket, partial, BANK.scoring, TODAY, BIRTH, RULES)
