"""Screening a child: choosing the child, the age check, the items one at a time, the
result; continuing or restarting an unfinished questionnaire."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from chatbot.screening import children
from chatbot.screening.age import bracket_for, date_at_age, screening_age
from chatbot.screening.bank import BRACKETS
from chatbot.screening.conversation import Conversation, Message, Option, numbered
from chatbot.screening.scoring import Result, score
from chatbot.screening.state import Step


# --- "screen now?" after adding a child ----------------------------------------------------
def confirm_values(c: Conversation) -> dict[str, Any] | None:
    form = c.state.form
    if form is not None and form.name:
        return {"name": form.name}
    # A state stored before the form was kept here (version 1): read the child.
    child = c.store.get_child(c.user_id, c.state.child_id or "")
    return {"name": child["name"]} if child else None


def confirm_screen(c: Conversation, m: Message) -> None:
    if c.words.means(m.word, "yes"):
        child = c.store.get_child(c.user_id, c.state.child_id or "")
        if child is not None:
            start_screening(c, child)
            return
    c.goto(Step.MENU)


# --- choosing what to screen ----------------------------------------------------------------
def choose_screening(c: Conversation) -> None:
    """The menu's "screen": continue a questionnaire the parent left, else choose a child."""
    paused = c.state.paused
    c.state.paused = None
    if paused is not None:
        questionnaire = c.questionnaire(paused)
        if questionnaire is not None and within_window(c, questionnaire):
            c.goto(Step.RESUME, questionnaire_id=paused)
            return
    choose_child(c)


def choose_child(c: Conversation) -> None:
    found = c.children()
    if not found:
        c.say("no_children")
        children.start_form(c)
    elif len(found) == 1:
        start_screening(c, found[0])
    else:
        c.goto(Step.CHOOSE_CHILD, choices=[child["id"] for child in found])


def listed_children(c: Conversation) -> list[dict[str, Any]]:
    by_id = {child["id"]: child for child in c.children()}
    return [by_id[i] for i in c.state.choices if i in by_id]


def child_list_values(c: Conversation) -> dict[str, Any] | None:
    listed = listed_children(c)
    if not listed:
        return None
    return {"children": "\n".join(f"{n}. {child['name']}" for n, child in enumerate(listed, 1))}


def child_numbers(c: Conversation) -> tuple[Option, ...]:
    return numbered(len(listed_children(c)))


def choose_child_answer(c: Conversation, m: Message) -> None:
    choices = c.state.choices
    number = c.words.number(m.word)
    if number is not None and 1 <= number <= len(choices):
        child = c.store.get_child(c.user_id, choices[number - 1])
        if child is not None:
            start_screening(c, child)
            return
    c.say("choose_child_invalid")
    c.ask()


# --- starting -------------------------------------------------------------------------------
def start_screening(c: Conversation, child: dict[str, Any]) -> None:
    rules = c.config.rules
    age = screening_age(child["birthDate"], c.today, child.get("gestationalWeeks"), rules)
    used, chrono = age.used, age.chronological
    corrected = (
        c.text("corrected_note", months=used.months, days=used.days) if age.corrected else ""
    )
    # Every message about the age names the child and gives both ages.
    about = {"name": child["name"], "months": chrono.months, "days": chrono.days}
    bracket_months = bracket_for(age.used_months)
    if bracket_months is None:
        if age.used_months < BRACKETS[0]:
            first = date_at_age(age.reference_birth, BRACKETS[0], rules)
            when = when_text(c, child["name"], BRACKETS[0], corrected=age.corrected is not None)
            c.say("too_young", date=c.date(first), when=when, corrected=corrected, **about)
        else:
            c.say("too_old", **about)
        c.goto(Step.MENU)
        return

    # One questionnaire in progress per user: whatever was left unfinished is abandoned.
    c.store.abandon_in_progress(c.user_id)
    c.state.paused = None
    bank = c.banks.active()
    bracket = bank.bracket(bracket_months)
    questionnaire = c.store.start_questionnaire(
        {
            "childId": child["id"],
            # The result names the child without reading the child again.
            "childName": child["name"],
            # The posyandu's monthly export reads screenings by these two (db/questionnaires.py).
            "posyandu": child.get("posyandu"),
            "childSex": child.get("sex"),
            "userId": c.user_id,
            "instrument": bank.instrument,
            "bankVersion": bank.version,
            "bracket": bracket_months,
            "age": {
                "chronological": chrono.as_dict(),
                "corrected": age.corrected.as_dict() if age.corrected else None,
                "usedMonths": age.used_months,
            },
            "referenceBirthDate": age.reference_birth,
            "screeningDate": c.today,
            "answers": [],
            "itemCount": len(bracket.items),
            "startedAt": c.now,
        }
    )
    c.remember_questionnaire(questionnaire)
    c.say(
        "screening_intro",
        bracket=bracket_months,
        count=len(bracket.items),
        corrected=corrected,
        **about,
    )
    c.goto(Step.QUESTION, questionnaire_id=questionnaire["id"])


def when_text(c: Conversation, name: str, months: int, corrected: bool) -> str:
    """'when Budi is about 6 months old': dates are the first day the rounded age counts."""
    return c.text("when_corrected_age" if corrected else "when_age", name=name, months=months)


# --- the items --------------------------------------------------------------------------------
def item_values(c: Conversation) -> dict[str, Any] | None:
    """The question step's placeholders: the next unanswered item."""
    questionnaire = c.questionnaire()
    if questionnaire is None:
        return None
    bracket = c.bank_of(questionnaire).bracket(questionnaire["bracket"])
    item = bracket.items[len(questionnaire["answers"])]
    # Which answer the reply will be: lets a replayed message be recognised (`replayed`).
    c.state.asked = len(questionnaire["answers"])
    return {
        "number": item.number,
        "count": len(bracket.items),
        "task": c.text("task_marker") if item.type == "task" else "",
        "text": item.text.get(c.lang),
    }


def replayed(c: Conversation, questionnaire: dict[str, Any]) -> bool:
    """The stored answers moved on without this session state: the message is a retry
    whose first attempt saved its change but failed before the session was saved."""
    answered = len(questionnaire["answers"])
    return (c.state.asked if c.state.asked is not None else answered) != answered


def answer(c: Conversation, m: Message) -> None:
    questionnaire = c.questionnaire()
    if questionnaire is None:
        c.goto(Step.MENU)
        return
    if replayed(c, questionnaire):
        c.ask()  # record nothing twice; ask what is next
        return
    yes, no = c.words.means(m.word, "yes"), c.words.means(m.word, "no")
    if not yes and not no:
        c.say("answer_invalid")
        c.ask()
        return
    bank = c.bank_of(questionnaire)
    bracket = bank.bracket(questionnaire["bracket"])
    item = bracket.items[len(questionnaire["answers"])]
    answers = [
        *questionnaire["answers"],
        {"number": item.number, "domains": list(item.domains), "answer": yes},
    ]
    questionnaire["answers"] = answers
    if len(answers) < len(bracket.items):
        c.store.save_answers(questionnaire["id"], answers)
        c.ask()
    else:
        finish(c, questionnaire)


def back(c: Conversation) -> None:
    """'back' while screening: re-open the previous item."""
    questionnaire = c.questionnaire()
    if questionnaire is None:
        c.goto(Step.MENU)
        return
    if not replayed(c, questionnaire):
        if not questionnaire["answers"]:
            c.say("back_at_first")
        else:
            answers = questionnaire["answers"][:-1]
            c.store.save_answers(questionnaire["id"], answers)
            questionnaire["answers"] = answers
    c.ask()


# --- the result -------------------------------------------------------------------------------
def finish(c: Conversation, questionnaire: dict[str, Any]) -> None:
    bank = c.bank_of(questionnaire)
    bracket = bank.bracket(questionnaire["bracket"])
    previous = c.store.last_completed(questionnaire["childId"])
    result = score(
        bracket,
        {a["number"]: a["answer"] for a in questionnaire["answers"]},
        bank.scoring,
        questionnaire["screeningDate"],
        questionnaire["referenceBirthDate"],
        c.config.rules,
        previous_doubtful=bool(previous and previous.get("nextAction") == "rescreen_2_weeks"),
    )
    c.store.complete_questionnaire(
        questionnaire["id"],
        answers=questionnaire["answers"],
        yesCount=result.yes_count,
        itemCount=result.item_count,
        category=result.category,
        riskLevel=result.risk_level,
        noByDomain=result.no_by_domain,
        nextAction=result.next_action,
        nextDueAt=result.next_due,
        completedAt=c.now,
        completedMonth=c.today.strftime("%Y-%m"),
    )
    c.remember_questionnaire(None, questionnaire["id"])
    name = questionnaire.get("childName")
    if name is None:  # started before questionnaires carried the name
        child = c.store.get_child(c.user_id, questionnaire["childId"])
        name = child["name"] if child else "?"
    corrected = bool((questionnaire.get("age") or {}).get("corrected"))
    explain(c, name, result, corrected)
    c.goto(Step.MENU)


def explain(c: Conversation, name: str, result: Result, corrected: bool) -> None:
    c.say(f"result_{result.category}", name=name, yes=result.yes_count, count=result.item_count)
    if result.no_by_domain:
        parts = [
            f"{c.text(f'domain_{d}')} ({', '.join(map(str, numbers))})"
            for d, numbers in result.no_by_domain.items()
        ]
        c.say("result_domains", domains="; ".join(parts))
    if result.next_action == "routine":
        if result.next_bracket is None or result.next_due is None:
            c.say("next_routine_last")
        else:
            when = when_text(c, name, result.next_bracket, corrected)
            c.say("next_routine", date=c.date(result.next_due), when=when)
    elif result.next_action == "rescreen_2_weeks":
        assert result.next_due is not None
        c.say("next_rescreen", date=c.date(result.next_due))
    else:
        c.say(
            "next_refer",
            name=name,
            no=result.item_count - result.yes_count,
            domain_names=", ".join(c.text(f"domain_{d}") for d in result.no_by_domain),
        )
    c.say("disclaimer")


def action_text(c: Conversation, action: str, due: datetime | date | None) -> str:
    """A result's next step in a line of the history."""
    if action == "routine" and due is None:
        return c.text("action_routine_none")
    due_date = due.date() if isinstance(due, datetime) else due
    return c.text(f"action_{action}", date=c.date(due_date) if due_date else "")


# --- continuing an unfinished questionnaire ---------------------------------------------------
def within_window(c: Conversation, questionnaire: dict[str, Any]) -> bool:
    started: datetime = questionnaire["startedAt"]
    return c.now - started <= c.config.resume_window


def offer_resume(c: Conversation, questionnaire: dict[str, Any]) -> None:
    c.remember_questionnaire(questionnaire)
    c.goto(Step.RESUME, questionnaire_id=questionnaire["id"])


def resume_values(c: Conversation) -> dict[str, Any] | None:
    questionnaire = c.questionnaire()
    if questionnaire is None:
        return None
    name = questionnaire.get("childName")
    if name is None:  # started before questionnaires carried the name
        child = c.store.get_child(c.user_id, questionnaire["childId"])
        name = child["name"] if child else "?"
    return {
        "name": name,
        "answered": len(questionnaire["answers"]),
        "count": questionnaire["itemCount"],
    }


def resume_answer(c: Conversation, m: Message) -> None:
    questionnaire = c.questionnaire()
    if questionnaire is None:
        c.goto(Step.MENU)
        return
    number = c.words.number(m.word)
    if number == 1:
        c.goto(Step.QUESTION, questionnaire_id=questionnaire["id"])
    elif number == 2:
        child = c.store.get_child(c.user_id, questionnaire["childId"])
        c.store.abandon_questionnaire(questionnaire["id"])
        c.remember_questionnaire(None, questionnaire["id"])
        if child is None:
            c.goto(Step.MENU)
        else:
            start_screening(c, child)
    else:
        c.say("resume_invalid", numbered(2))
