"""What a parent may type: the vocabulary and limits from data files, and the parsers.

Words live in chatbot/data/vocabulary.json (per language, validated at load) and
limits in chatbot/data/limits.json, so adding a language or moving a limit is a
change of data. Every word of every language is understood whatever language the
parent chose: people switch languages mid-sentence.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DATA = Path(__file__).resolve().parent.parent / "data"
VOCABULARY_FILE = DATA / "vocabulary.json"
LIMITS_FILE = DATA / "limits.json"

# The menu's choices, in the order the menu numbers them (texts.json "menu").
MenuChoice = Literal["screen", "add_child", "history", "language"]
MENU_CHOICES: tuple[MenuChoice, ...] = ("screen", "add_child", "history", "language")
# The global commands a word can name (the language switch is named by `switch`).
CommandWord = Literal[
    "help", "menu", "restart", "back", "reminders_off", "reminders_on", "posyandu"
]


def normalise(text: str) -> str:
    """Lower-case, trim, collapse spaces and drop trailing punctuation: ' Ya! ' -> 'ya'."""
    text = unicodedata.normalize("NFC", text).replace("\u2019", "'")  # a typographic apostrophe
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .!,;")


# --- the data files ---------------------------------------------------------------------
def _words(values: list[str]) -> list[str]:
    for word in values:
        if not word or normalise(word) != word:
            raise ValueError(f"{word!r} is not written as the engine sees it ({normalise(word)!r})")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WordLists(_Strict):
    """The words of one language (or of every language: `common`)."""

    yes: list[str] = []
    no: list[str] = []
    agree: list[str] = []
    help: list[str] = []
    menu: list[str] = []
    restart: list[str] = []
    back: list[str] = []
    reminders_off: list[str] = []  # opt out of reminders ("berhenti", "stop")
    reminders_on: list[str] = []  # and back in ("mulai", "start")
    posyandu: list[str] = []  # link the children to a posyandu (screening/posyandu.py)
    male: list[str] = []
    female: list[str] = []
    unknown_weeks: list[str] = []
    weeks: list[str] = []

    @field_validator(
        "yes", "no", "agree", "help", "menu", "restart", "back", "reminders_off",
        "reminders_on", "posyandu", "male", "female", "unknown_weeks", "weeks",
    )  # fmt: skip
    @classmethod
    def _written(cls, v: list[str]) -> list[str]:
        return _words(v)


class LanguageWords(WordLists):
    name: str = Field(min_length=2)  # as the language menu shows it
    switch: list[str] = Field(min_length=1)  # names that switch to this language anywhere
    menu_choices: dict[MenuChoice, list[str]]
    numbers: list[str] = Field(min_length=4)  # one, two, ...: for numbered choices
    months: list[list[str]] = Field(min_length=12, max_length=12)

    @field_validator("switch", "numbers")
    @classmethod
    def _names_written(cls, v: list[str]) -> list[str]:
        return _words(v)

    @field_validator("menu_choices")
    @classmethod
    def _every_choice(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for choice in MENU_CHOICES:
            if not v.get(choice):
                raise ValueError(f"no words for the menu choice {choice!r}")
            _words(v[choice])
        return v

    @field_validator("months")
    @classmethod
    def _month_names(cls, v: list[list[str]]) -> list[list[str]]:
        for names in v:
            if not names:
                raise ValueError("every month needs a name")
            _words(names)
        return v


class VocabularyFile(_Strict):
    comment: str = ""
    common: WordLists = WordLists()
    languages: dict[str, LanguageWords] = Field(min_length=1)

    @model_validator(mode="after")
    def _unambiguous(self) -> VocabularyFile:
        """A word means one thing where it could be read: no yes that is also a no."""
        every = [self.common, *self.languages.values()]

        def union(name: str) -> set[str]:
            return {w for lists in every for w in getattr(lists, name)}

        def clash(*groups: set[str]) -> set[str]:
            seen: set[str] = set()
            both: set[str] = set()
            for group in groups:
                both |= seen & group
                seen |= group
            return both

        switch = {w for lang in self.languages.values() for w in lang.switch}
        commands = [
            union(c) for c in ("help", "menu", "restart", "back", "reminders_off", "reminders_on")
        ] + [switch]
        choices = [
            {w for lang in self.languages.values() for w in lang.menu_choices[c]}
            for c in MENU_CHOICES
        ]
        answers = union("yes") | union("no") | union("agree") | union("male")
        answers |= union("female") | union("unknown_weeks") | set().union(*choices)
        problems = {
            "both yes and no": clash(union("yes"), union("no")),
            "both boy and girl": clash(union("male"), union("female")),
            "two commands": clash(*commands),
            "two menu choices": clash(*choices),
            "a command and an answer": set().union(*commands) & answers,
            "two languages' names": clash(*(set(lang.switch) for lang in self.languages.values())),
        }
        found = {what: sorted(words) for what, words in problems.items() if words}
        if found:
            raise ValueError(f"ambiguous words: {found}")
        return self


class GestationLimits(_Strict):
    min: int = Field(ge=1)
    max: int = Field(le=99)


class Limits(_Strict):
    comment: str = ""
    child_name_max_chars: int = Field(ge=1, le=200)
    child_max_age_years: int = Field(ge=1)
    gestation_weeks: GestationLimits


# --- the vocabulary as the engine uses it -----------------------------------------------
@dataclass(frozen=True)
class Vocabulary:
    """Every language's words merged for matching, plus what each language shows."""

    languages: tuple[str, ...]  # codes, in the language menu's order
    names: dict[str, str]  # code -> name shown in the language menu
    switch: dict[str, str]  # word -> language code
    words: dict[str, frozenset[str]]  # list name (yes, no, help, ...) -> words of every language
    menu_choices: dict[str, MenuChoice]  # word -> menu choice
    numbers: dict[str, int]  # number word -> its value
    months: dict[str, int]  # month name -> 1..12
    weeks_pattern: re.Pattern[str]  # "38", "38 minggu", "38w"

    def means(self, word: str, what: str) -> bool:
        """Whether `word` is one of the `what` words (yes, no, help, ...) of any language."""
        return word in self.words[what]

    def command(self, word: str, name: CommandWord) -> bool:
        return word in self.words[name]

    def number(self, word: str) -> int | None:
        """A numbered choice: '2', 'dua' or 'two' -> 2."""
        if word.isdecimal():  # not isdigit(): "²" is a digit that int() refuses
            return int(word)
        return self.numbers.get(word)

    def language_named(self, word: str) -> str | None:
        """The language a switch word names ('english' -> 'en'), anywhere in the chat."""
        return self.switch.get(word)

    def language_chosen(self, word: str) -> str | None:
        """An answer to the language question: its number, its code or its name."""
        number = self.number(word)
        if number is not None:
            return self.languages[number - 1] if 1 <= number <= len(self.languages) else None
        if word in self.languages:
            return word
        return self.language_named(word)


@cache
def load_vocabulary(path: Path = VOCABULARY_FILE) -> Vocabulary:
    """Read and validate the vocabulary once per process."""
    data = VocabularyFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    every = [data.common, *data.languages.values()]
    words = {
        name: frozenset(w for lists in every for w in getattr(lists, name))
        for name in WordLists.model_fields
    }
    units = sorted(words["weeks"], key=len, reverse=True)  # longest first: "weeks" before "w"
    weeks = "|".join(re.escape(u) for u in units)
    return Vocabulary(
        languages=tuple(data.languages),
        names={code: lang.name for code, lang in data.languages.items()},
        switch={w: code for code, lang in data.languages.items() for w in lang.switch},
        words=words,
        menu_choices={
            w: choice
            for lang in data.languages.values()
            for choice, ws in lang.menu_choices.items()
            for w in ws
        },
        numbers={
            w: n for lang in data.languages.values() for n, w in enumerate(lang.numbers, start=1)
        },
        months={
            name: month
            for lang in data.languages.values()
            for month, names in enumerate(lang.months, start=1)
            for name in names
        },
        weeks_pattern=re.compile(rf"(\d{{1,2}})(?: ?(?:{weeks}))?"),
    )


@cache
def load_limits(path: Path = LIMITS_FILE) -> Limits:
    """Read and validate the limits once per process."""
    return Limits.model_validate(json.loads(path.read_text(encoding="utf-8")))


# --- parsers: text -> value, or None when it cannot be read ------------------------------
def parse_date(text: str, months: dict[str, int] | None = None) -> date | None:
    """Read 25-12-2024, 25/12/2024, 25.12.2024, 2024-12-25 or 25 Desember 2024 / 25 Dec 2024."""
    months = load_vocabulary().months if months is None else months
    named = re.fullmatch(r"(\d{1,2}) ([a-z]+) (\d{4})", text)
    if named and named.group(2) in months:
        try:
            return date(int(named.group(3)), months[named.group(2)], int(named.group(1)))
        except ValueError:
            return None
    for pattern, order in (
        (r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$", "dmy"),
        (r"^(\d{4})-(\d{1,2})-(\d{1,2})$", "ymd"),
    ):
        m = re.match(pattern, text)
        if m:
            a, b, c = (int(x) for x in m.groups())
            day, month, year = (a, b, c) if order == "dmy" else (c, b, a)
            try:
                return date(year, month, day)
            except ValueError:
                return None
    return None


# Letters, with single separators between them: a space, or a dot, apostrophe or hyphen
# (each may be followed by a space): "Muh. Rizki", "A. Rahman", "I Gede Putu", "O'Neil",
# "Siti-Nur", "Ni Luh Ayu.". No digits, no markup characters.
NAME = re.compile(r"[^\W\d_]+(?:(?:[.'\-] ?| )[^\W\d_]+)*\.?")


def parse_name(raw: str, max_chars: int) -> str | None:
    """A child's name as typed (spaces collapsed), or None when it is not a name."""
    name = re.sub(r"\s+", " ", unicodedata.normalize("NFC", raw)).strip().replace("\u2019", "'")
    if not 1 <= len(name) <= max_chars or not NAME.fullmatch(name):
        return None
    return name
