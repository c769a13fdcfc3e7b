"""The versioned question bank: loading and validation.

A bank is a JSON file (see chatbot/data/kpsp_bank_v1.json). The same validation
runs on the shipped bank at start-up and on an operator's bank at import.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chatbot.errors import BankError

DOMAINS = ("gross_motor", "fine_motor", "language", "social")
BRACKETS = (3, 6, 9, 12, 15, 18, 21, 24, 30, 36, 42, 48, 54, 60, 66, 72)
LANGUAGES = ("id", "en")
SHIPPED_BANK = Path(__file__).resolve().parent.parent / "data" / "kpsp_bank_v1.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    id: str = Field(min_length=3)
    en: str = Field(min_length=3)

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.id


class Item(_Strict):
    number: int = Field(ge=1)
    domains: tuple[Literal["gross_motor", "fine_motor", "language", "social"], ...] = Field(
        min_length=1, max_length=2
    )
    type: Literal["ask", "task"]
    text: Text

    @field_validator("domains")
    @classmethod
    def _distinct(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("domains must not repeat")
        return v


class Bracket(_Strict):
    months: int
    items: tuple[Item, ...] = Field(min_length=9, max_length=10)

    @model_validator(mode="after")
    def _numbered(self) -> Bracket:
        numbers = [item.number for item in self.items]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"items of the {self.months}-month bracket must be numbered 1..n")
        return self


class Scoring(_Strict):
    # yes-count thresholds: >= appropriate_min_yes -> appropriate; >= doubtful_min_yes -> doubtful.
    appropriate_min_yes: int = Field(ge=1)
    doubtful_min_yes: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Scoring:
        if self.doubtful_min_yes >= self.appropriate_min_yes:
            raise ValueError("doubtful_min_yes must be below appropriate_min_yes")
        return self


class Bank(_Strict):
    instrument: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,30}$")
    version: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    description: str = ""
    scoring: Scoring
    brackets: tuple[Bracket, ...]

    @model_validator(mode="after")
    def _all_brackets(self) -> Bank:
        months = tuple(b.months for b in self.brackets)
        if months != BRACKETS:
            raise ValueError(
                f"brackets must be exactly {list(BRACKETS)} in order, got {list(months)}"
            )
        for bracket in self.brackets:
            if self.scoring.appropriate_min_yes > len(bracket.items):
                raise ValueError(
                    f"the {bracket.months}-month bracket has {len(bracket.items)} items, "
                    f"fewer than appropriate_min_yes={self.scoring.appropriate_min_yes}"
                )
        return self

    def bracket(self, months: int) -> Bracket:
        for bracket in self.brackets:
            if bracket.months == months:
                return bracket
        raise KeyError(months)


def parse_bank(data: object) -> Bank:
    """Validate parsed JSON as a bank; raise BankError listing every problem."""
    try:
        return Bank.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'bank'}: {e['msg']}" for e in exc.errors()
        )
        raise BankError(f"invalid question bank: {problems}") from None


def load_bank_file(path: Path) -> Bank:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BankError(f"cannot read question bank {path}: {exc}") from None
    return parse_bank(data)


@cache
def shipped_bank() -> Bank:
    """The bank shipped with the code, validated once per process."""
    return load_bank_file(SHIPPED_BANK)
