"""The parent's answer to a reminder (chatbot/chat/reminders.py sent it and left the
user's `pendingReminder`): the next message, on the web page or on WhatsApp, starts that
child's screening directly, or answers the referral's follow-up question; and the words
that stop and restart reminders."""

from __future__ import annotations

from typing import Any

from chatbot.screening import questionnaire
from chatbot.screening.conversation import YES_NO, Conversation, Message
from chatbot.screening.state import Step

# Where a reminder may take over the conversation: at its start and at the menu, never
# in the middle of a form or of another child's questionnaire.
TAKES_OVER_AT = (Step.MENU,)


def answer(c: Conversation, pending: dict[str, Any], m: Message | None) -> bool:
    """Act on the pending reminder; False if there is nothing to act on (the child was
    archived since), and the message goes its usual way."""
    child = c.store.get_child(c.user_id, pending.get("childId") or "")
    if child is None:
        c.set_user(pendingReminder=None)
        return False
    if pending.get("kind") == "referral_follow_up":
        said_yes = m is not None and c.words.means(m.word, "yes")
        if m is not None and (said_yes or c.words.means(m.word, "no")):
            c.set_user(pendingReminder=None)
            c.store.record_referral(c.user_id, child["id"], said_yes, c.now)
            c.say("referral_visited" if said_yes else "referral_not_visited", name=child["name"])
            c.goto(Step.MENU)
        else:  # the question first; the answer comes with the next message
            c.say("referral_follow_up_ask", YES_NO, name=child["name"])
        return True
    c.set_user(pendingReminder=None)
    c.say("reminder_due", name=child["name"])
    questionnaire.start_screening(c, child)
    return True


def reminders_off(c: Conversation, _: Any) -> None:
    """Opt out, with the time: the scheduler sends this parent nothing more."""
    c.set_user(remindersOptOutAt=c.now, pendingReminder=None)
    c.say("reminders_off")
    c.ask()


def reminders_on(c: Conversation, _: Any) -> None:
    c.set_user(remindersOptOutAt=None, remindersOptInAt=c.now)
    c.say("reminders_on")
    c.ask()
