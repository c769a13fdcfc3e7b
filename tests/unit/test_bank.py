"""The question bank is validated at load and at import."""

import copy
import json

import pytest

from chatbot.screening.bank import BRACKETS, SHIPPED_BANK, BankError, parse_bank, shipped_bank


def test_shipped_bank_has_every_bracket_in_both_languages():
    bank = shipped_bank()
    assert tuple(b.months for b in bank.brackets) == BRACKETS
    for bracket in bank.brackets:
        assert 9 <= len(bracket.items) <= 10
        for item in bracket.items:
            assert item.text.id and item.text.en and item.text.id != item.text.en
            assert item.domains
    assert {len(b.items) for b in bank.brackets} == {9, 10}


@pytest.fixture
def raw():
    return json.loads(SHIPPED_BANK.read_text(encoding="utf-8"))


def broken(raw, change):
    data = copy.deepcopy(raw)
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d["brackets"].pop(3), "brackets must be exactly"),
        (lambda d: d["brackets"][0]["items"][0].update(domains=["walking"]), "domains"),
        (lambda d: d["brackets"][0]["items"][0].update(domains=[]), "domains"),
        (lambda d: d["brackets"][0].update(items=d["brackets"][0]["items"][:8]), "items"),
        (lambda d: d["brackets"][1]["items"][2].update(number=7), "numbered 1..n"),
        (lambda d: d["brackets"][0]["items"][0]["text"].pop("en"), "text.en"),
        (lambda d: d["brackets"][0]["items"][0].update(type="quiz"), "type"),
        (lambda d: d["scoring"].update(doubtful_min_yes=9), "below appropriate"),
        (lambda d: d.update(version="has spaces"), "version"),
    ],
)
def test_invalid_banks_are_refused_with_the_reason(raw, change, fragment):
    with pytest.raises(BankError, match="invalid question bank") as info:
        parse_bank(broken(raw, change))
    assert fragment in str(info.value)
