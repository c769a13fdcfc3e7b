"""Adding a child: a form of four slots, each with its question, parser and quick replies.

One generic handler (`fill`) serves every slot: read the answer with the slot's parser,
keep it in the form, go to the next slot; after the last one the child is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from chatbot.screening import posyandu
from chatbot.screening.age import add_months
from chatbot.screening.conversation import Conversation, Message, Option, Prompt, numbered
from chatbot.screening.state import ChildForm, Step
from chatbot.screening.words import parse_date, parse_name

INVALID = object()  # a parser's "cannot read this" (None is a valid gestation: unknown)
SEXES = ("male", "female")  # in the order of the question's numbers


def parse_child_name(c: Conversation, m: Message) -> Any:
    name = parse_name(m.raw, c.limits.child_name_max_chars)
    return INVALID if name is None else name


def parse_birth_date(c: Conversation, m: Message) -> Any:
    born = parse_date(m.word, c.words.months)
    # add_months, not date.replace: on 29 February replace(year=...) raises.
    earliest = add_months(c.today, -12 * c.limits.child_max_age_years)
    if born is None or born > c.today or born < earliest:
        return INVALID
    return born


def parse_sex(c: Conversation, m: Message) -> Any:
    number = c.words.number(m.word)
    if number is not None:
        return SEXES[number - 1] if 1 <= number <= len(SEXES) else INVALID
    for sex in SEXES:
        if c.words.means(m.word, sex):
            return sex
    return INVALID


def parse_gestation(c: Conversation, m: Message) -> Any:
    if c.words.means(m.word, "unknown_weeks"):
        return None
    weeks = c.words.weeks_pattern.fullmatch(m.word)
    limits = c.limits.gestation_weeks
    if weeks and limits.min <= int(weeks.group(1)) <= limits.max:
        return int(weeks.group(1))
    return INVALID


def named_child(c: Conversation) -> dict[str, Any] | None:
    """The placeholders of a question about the child being added."""
    form = c.state.form
    return {"name": form.name} if form is not None and form.name else None


@dataclass(frozen=True)
class Slot:
    step: Step
    field: str  # the ChildForm attribute it fills
    prompt: Prompt
    parse: Callable[[Conversation, Message], Any]  # the value, or INVALID
    invalid: str  # texts.json key said when the answer cannot be read


SLOTS = (
    Slot(Step.CHILD_NAME, "name", Prompt("child_name_ask"), parse_child_name,
         "child_name_invalid"),
    Slot(Step.CHILD_BIRTH, "birth_date", Prompt("child_birth_ask", values=named_child),
         parse_birth_date, "child_birth_invalid"),
    Slot(Step.CHILD_SEX, "sex", Prompt("child_sex_ask", numbered(2), named_child), parse_sex,
         "child_sex_invalid"),
    Slot(Step.CHILD_GESTATION, "gestational_weeks",
         Prompt("child_gestation_ask",
                (Option(value_key="unknown_weeks_word", label_key="unknown_weeks_label"),),
                named_child),
         parse_gestation, "child_gestation_invalid"),
)  # fmt: skip
SLOT_AT = {slot.step: slot for slot in SLOTS}
NEXT_SLOT = {a.step: b.step for a, b in pairwise(SLOTS)}


def limit_values(c: Conversation) -> dict[str, int]:
    """The limits the invalid-answer texts name."""
    return {
        "max_chars": c.limits.child_name_max_chars,
        "max_years": c.limits.child_max_age_years,
        "min_weeks": c.limits.gestation_weeks.min,
        "max_weeks": c.limits.gestation_weeks.max,
    }


def start_form(c: Conversation) -> None:
    c.goto(Step.CHILD_NAME, form=ChildForm())


def fill(c: Conversation, m: Message) -> None:
    """The handler of every slot."""
    slot = SLOT_AT[c.state.step]
    value = slot.parse(c, m)
    if value is INVALID:
        options = slot.prompt.options if isinstance(slot.prompt.options, tuple) else ()
        c.say(slot.invalid, options, **limit_values(c))
        return
    form = c.state.form if c.state.form is not None else ChildForm()
    setattr(form, slot.field, value)
    c.state.form = form
    if slot.step in NEXT_SLOT:
        c.goto(NEXT_SLOT[slot.step])
    else:
        save_child(c, form)


def save_child(c: Conversation, form: ChildForm) -> None:
    if form.name is None or form.birth_date is None or form.sex is None:
        start_form(c)  # a damaged stored form: ask again rather than save half a child
        return
    # A retry whose first attempt saved the child but not the session finds it here.
    same = [
        child
        for child in c.children()
        if (child["name"], child["birthDate"], child["sex"])
        == (form.name, form.birth_date, form.sex)
    ]
    child = (
        same[0]
        if same
        else c.add_child(
            name=form.name,
            birthDate=form.birth_date,
            sex=form.sex,
            gestationalWeeks=form.gestational_weeks,
        )
    )
    c.say("child_added", name=child["name"])
    posyandu.offer(c)
    c.goto(Step.CONFIRM_SCREEN, child_id=child["id"])
