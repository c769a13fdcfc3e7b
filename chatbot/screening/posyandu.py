"""Linking the parent's children to their posyandu, with the short code the cadre gives.

The word "posyandu" at any step (after consent) asks for the code; "posyandu MAWAR01" in
one message links at once. It is also offered after a child is added and after a result
while the parent has none (the optional step), never forced: a parent without a
posyandu screens as before, and only admins see such a child on the staff pages.
"""

from __future__ import annotations

import re
from typing import Any

from chatbot.screening.conversation import Conversation, Message
from chatbot.screening.state import Step
from chatbot.screening.words import Vocabulary

_WITH_CODE = re.compile(r"posyandu\s+(.+)")


def match(words: Vocabulary, word: str) -> Any:
    """'posyandu' -> True (ask for the code); 'posyandu mawar01' -> 'mawar01'; else None."""
    if words.command(word, "posyandu"):
        return True
    found = _WITH_CODE.fullmatch(word)
    return found.group(1) if found else None


def command(c: Conversation, argument: Any) -> None:
    if isinstance(argument, str):
        link(c, argument)
    else:
        c.goto(Step.POSYANDU)


def answer(c: Conversation, m: Message) -> None:
    """The code, at the step that asked for it ("posyandu MAWAR01" too)."""
    argument = match(c.words, m.word)
    if argument is True:
        c.ask()
    else:
        link(c, argument if isinstance(argument, str) else m.raw)


def link(c: Conversation, code: str) -> None:
    found = c.store.link_posyandu(c.user_id, code)
    if found is None:
        c.say("posyandu_unknown", code=code.strip()[:30])
        if c.state.step is not Step.POSYANDU:
            c.goto(Step.POSYANDU)
        return
    c.user["posyandu"] = found["code"]
    c.say("posyandu_linked", name=found["name"])
    c.goto(Step.MENU)


def offer(c: Conversation) -> None:
    """The optional step: a hint, while the parent has linked no posyandu."""
    if not c.user.get("posyandu"):
        c.say("posyandu_offer")
