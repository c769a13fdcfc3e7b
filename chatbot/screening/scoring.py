"""Scoring a completed questionnaire and choosing the next step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from chatbot.screening.age import AgeRules, date_at_age, next_bracket
from chatbot.screening.bank import DOMAINS, Bracket, Scoring

# category -> riskLevel (the project's mapping of the guideline's S/M/P)
RISK = {"appropriate": "low", "doubtful": "medium", "possible_deviation": "high"}
RESCREEN_AFTER = timedelta(days=14)


@dataclass(frozen=True)
class Result:
    yes_count: int
    item_count: int
    category: str  # appropriate | doubtful | possible_deviation
    risk_level: str  # low | medium | high
    no_by_domain: dict[str, list[int]]  # domain -> item numbers answered "no"
    next_action: str  # routine | rescreen_2_weeks | refer
    next_due: date | None
    next_bracket: int | None


def score(
    bracket: Bracket,
    answers: dict[int, bool],
    scoring: Scoring,
    screened_on: date,
    reference_birth: date,
    rules: AgeRules,
    previous_doubtful: bool = False,
) -> Result:
    """Score the answers of one bracket. `previous_doubtful`: the last result was doubtful
    and asked for this re-screen, so a second doubtful result is referred."""
    if set(answers) != {item.number for item in bracket.items}:
        raise ValueError("every item must be answered before scoring")
    yes = sum(1 for v in answers.values() if v)
    if yes >= scoring.appropriate_min_yes:
        category = "appropriate"
    elif yes >= scoring.doubtful_min_yes:
        category = "doubtful"
    else:
        category = "possible_deviation"

    no_by_domain: dict[str, list[int]] = {d: [] for d in DOMAINS}
    for item in bracket.items:
        if not answers[item.number]:
            for domain in item.domains:
                no_by_domain[domain].append(item.number)
    no_by_domain = {d: nums for d, nums in no_by_domain.items() if nums}

    following = next_bracket(bracket.months)
    if category == "appropriate":
        action = "routine"
        due = date_at_age(reference_birth, following, rules) if following else None
    elif category == "doubtful" and not previous_doubtful:
        action, due = "rescreen_2_weeks", screened_on + RESCREEN_AFTER
    else:
        # Possible deviation, or doubtful twice in a row: refer now.
        action, due = "refer", screened_on
    return Result(
        yes_count=yes,
        item_count=len(bracket.items),
        category=category,
        risk_level=RISK[category],
        no_by_domain=no_by_domain,
        next_action=action,
        next_due=due,
        next_bracket=following,
    )
