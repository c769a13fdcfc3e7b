"""The vocabulary and limits are data: validated at load, merged across languages."""

import json

import pytest
from pydantic import ValidationError

from chatbot.screening.words import (
    LIMITS_FILE,
    VOCABULARY_FILE,
    load_limits,
    load_vocabulary,
    normalise,
    parse_name,
)

SHIPPED = json.loads(VOCABULARY_FILE.read_text(encoding="utf-8"))


def write(tmp_path, data, name="vocabulary.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_the_shipped_files_load():
    words = load_vocabulary()
    assert words.languages == ("id", "en")
    assert load_limits(LIMITS_FILE).gestation_weeks.min == 22


@pytest.mark.parametrize(
    ("word", "meaning"),
    [("ya", "yes"), ("yes", "yes"), ("1", "yes"), ("tdk", "no"), ("0", "no"), ("?", "help")],
)
def test_every_languages_words_are_understood(word, meaning):
    assert load_vocabulary().means(word, meaning)


def test_numbers_months_and_languages():
    words = load_vocabulary()
    assert words.number("3") == 3 and words.number("dua") == 2 and words.number("four") == 4
    assert words.months["desember"] == words.months["dec"] == 12
    assert words.language_chosen("2") == "en" and words.language_chosen("id") == "id"
    assert words.language_chosen("bahasa inggris") == "en"
    assert words.language_chosen("3") is None
    # Digits int() cannot read are no number (they were a 500 at the menu; found by fuzzing).
    assert words.number("²") is None and words.language_chosen("³") is None
    assert words.weeks_pattern.fullmatch("38 minggu") and words.weeks_pattern.fullmatch("38w")


def test_a_third_language_is_only_data(tmp_path):
    data = json.loads(json.dumps(SHIPPED))
    data["languages"]["jv"] = {
        **data["languages"]["id"],
        "name": "Basa Jawa",
        "switch": ["jawa", "basa jawa"],
        "yes": ["nggih", "iya"],
        "no": ["mboten"],
        "help": ["pitulung"],
        "restart": ["wiwit maneh"],
        "back": ["bali"],
        "menu_choices": {
            "screen": ["priksa"],
            "add_child": ["tambah bocah"],
            "history": ["riwayat"],
            "language": ["basa"],
        },
    }
    words = load_vocabulary(write(tmp_path, data))
    assert words.languages == ("id", "en", "jv")
    assert words.language_chosen("3") == "jv" and words.language_named("jawa") == "jv"
    assert words.means("nggih", "yes") and words.command("bali", "back")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["languages"]["en"]["no"].append("ya"), "both yes and no"),
        (lambda d: d["languages"]["en"]["yes"].append("Yes"), "not written as the engine"),
        (lambda d: d["languages"]["en"]["back"].append("menu"), "two commands"),
        (lambda d: d["languages"]["en"]["help"].append("ya"), "a command and an answer"),
        (lambda d: d["languages"]["id"]["months"].pop(), "at least 12"),
        (lambda d: d["languages"]["id"]["menu_choices"].pop("history"), "history"),
        (lambda d: d["languages"]["en"].pop("male"), None),  # optional list: allowed
    ],
)
def test_an_ambiguous_or_malformed_vocabulary_is_refused(tmp_path, change, problem):
    data = json.loads(json.dumps(SHIPPED))
    change(data)
    path = write(tmp_path, data)
    if problem is None:
        load_vocabulary(path)
        return
    with pytest.raises(ValidationError, match=problem):
        load_vocabulary(path)


def test_limits_are_validated(tmp_path):
    data = json.loads(LIMITS_FILE.read_text(encoding="utf-8"))
    data["gestation_weeks"]["max"] = 400
    with pytest.raises(ValidationError):
        load_limits(write(tmp_path, data, "limits.json"))


def test_normalise_reads_typographic_apostrophes():
    assert normalise(" Don\u2019t know! ") == "don't know"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("  Muh.  Rizki ", "Muh. Rizki"),
        ("A.Rahman", "A.Rahman"),
        ("Nyoman\u2019s", "Nyoman's"),
        ("Zoe\u0301", "Zo\u00e9"),  # a combining accent is composed, then accepted
    ],
)
def test_names_are_tidied(raw, name):
    assert parse_name(raw, 50) == name


def test_a_name_may_be_as_long_as_the_limit():
    assert parse_name("a" * 50, 50) == "a" * 50
    assert parse_name("a" * 51, 50) is None
