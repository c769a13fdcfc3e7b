"""The start of a session, consent, the language, the menu and the global commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatbot.screening import children, questionnaire
from chatbot.screening.conversation import (
    YES_NO,
    Conversation,
    Message,
    Option,
    Reply,
    numbered,
)
from chatbot.screening.state import Step
from chatbot.screening.words import MenuChoice


def begin(c: Conversation) -> None:
    """A new (or expired) session: greet, then consent, an unfinished screening, or the menu."""
    c.say("greeting")
    if not c.user.get("consentAt"):
        c.goto(Step.CONSENT)
        return
    pending = c.store.in_progress(c.user_id)
    if pending is not None:
        if questionnaire.within_window(c, pending):
            questionnaire.offer_resume(c, pending)
            return
        c.store.abandon_questionnaire(pending["id"])
    c.goto(Step.MENU)


# --- consent and language -----------------------------------------------------------------
def consent(c: Conversation, m: Message) -> None:
    if c.words.means(m.word, "yes") or c.words.means(m.word, "agree"):
        c.set_user(consentAt=c.now)
        c.goto(Step.LANGUAGE)
    elif c.words.means(m.word, "no"):
        c.say("consent_declined", YES_NO)
    else:
        c.say("consent_needed", YES_NO)


def language_values(c: Conversation) -> dict[str, Any]:
    listing = "  ".join(
        f"{n}. {c.words.names[code]}" for n, code in enumerate(c.words.languages, 1)
    )
    return {"languages": listing}


def language_options(c: Conversation) -> tuple[Option, ...]:
    return numbered(len(c.words.languages))


def language(c: Conversation, m: Message) -> None:
    choice = c.words.language_chosen(m.word)
    if choice is None:
        c.ask()
        return
    set_language(c, choice)
    if c.children():
        c.goto(Step.MENU)
    else:
        children.start_form(c)


def set_language(c: Conversation, code: str) -> None:
    c.set_user(language=code)
    c.say("language_set")


# --- the menu -------------------------------------------------------------------------------
def show_history(c: Conversation) -> None:
    found = c.children()
    if not found:
        c.say("history_empty")
    else:
        lines = []
        for child in found:
            last = child.get("lastScreening")
            if not last:
                lines.append(c.text("history_none_line", name=child["name"]))
                continue
            lines.append(
                c.text(
                    "history_line",
                    name=child["name"],
                    category=c.text(f"category_{last['category']}"),
                    date=c.date(last["completedAt"].astimezone(c.tz).date()),
                    yes=last["yesCount"],
                    count=last["itemCount"],
                    action=questionnaire.action_text(c, last["nextAction"], last.get("nextDueAt")),
                )
            )
        c.replies.append(Reply("\n".join(lines)))
    c.goto(Step.MENU)


# What each numbered menu choice does (texts.json "menu" lists them in this order).
MENU_ACTIONS: dict[MenuChoice, Callable[[Conversation], None]] = {
    "screen": questionnaire.choose_screening,
    "add_child": children.start_form,
    "history": show_history,
    "language": lambda c: c.goto(Step.LANGUAGE),
}
MENU_ORDER: tuple[MenuChoice, ...] = tuple(MENU_ACTIONS)


def menu(c: Conversation, m: Message) -> None:
    number = c.words.number(m.word)
    if number is not None:
        choice = MENU_ORDER[number - 1] if 1 <= number <= len(MENU_ORDER) else None
    else:
        choice = c.words.menu_choices.get(m.word)
    if choice is None:
        c.say("menu_invalid", numbered(len(MENU_ORDER)))
        return
    MENU_ACTIONS[choice](c)


# --- global commands (chatbot/screening/engine.py COMMANDS) ------------------------------------
def show_help(c: Conversation, _: Any) -> None:
    c.say("help")
    c.ask()


def to_menu(c: Conversation, _: Any) -> None:
    """Leave the current step for the menu. A questionnaire being answered stays in
    progress: choosing to screen again offers to continue it."""
    if c.state.step in (Step.QUESTION, Step.RESUME) and c.state.questionnaire_id:
        c.state.paused = c.state.questionnaire_id
    c.goto(Step.MENU)


def restart(c: Conversation, _: Any) -> None:
    """Start over: the questionnaire in progress is abandoned."""
    c.store.abandon_in_progress(c.user_id)
    c.state.paused = None
    c.say("restarted")
    c.goto(Step.MENU)


def switch_language(c: Conversation, code: str) -> None:
    set_language(c, code)
    c.ask()


def go_back(c: Conversation, _: Any) -> None:
    """The current step's way back: a previous step, its own action, or its question again."""
    target = c.spec.back
    if target is None:
        c.ask()
    elif isinstance(target, Step):
        c.goto(target)
    else:
        target(c)
