"""The conversation engine: one message in, replies and the next state out.

The conversation is the table `STEPS` below: each step's question (a texts.json key,
its quick replies, what fills it), its handler, and where it may go. A message is
matched first against the global `COMMANDS` (help, menu, restart, a language's name,
back), unless the step opts out, then given to the step's handler.

    consent -> language -> child_name -> child_birth -> child_sex -> child_gestation
    -> confirm_screen -> (choose_child) -> question x n -> result -> menu
    resume: offered when a new session, or the menu's "screen", finds an unfinished one

The engine does no I/O of its own: persistence goes through a `Store`, the question
banks through a `BankSource` (chatbot/screening/store.py). Handlers live by concern:
onboarding.py (session start, consent, language, menu, commands), children.py (the
child form), questionnaire.py (screening, results, resuming).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatbot.screening import children, onboarding, posyandu, questionnaire, reminding
from chatbot.screening.children import SLOT_AT
from chatbot.screening.conversation import (
    YES_NO,
    YES_NO_BACK,
    Conversation,
    EngineConfig,
    Message,
    Prompt,
    Reply,
    StepSpec,
    Turn,
    numbered,
)
from chatbot.screening.state import ConversationState, Step
from chatbot.screening.store import BankSource, Store
from chatbot.screening.texts import TEXTS_FILE, Texts
from chatbot.screening.words import (
    CommandWord,
    Vocabulary,
    load_limits,
    load_vocabulary,
    normalise,
    parse_date,
)

__all__ = [
    "COMMANDS",
    "STEPS",
    "TEXTS_FILE",
    "BankSource",
    "Engine",
    "EngineConfig",
    "Reply",
    "Step",
    "Store",
    "Texts",
    "Turn",
    "normalise",
    "parse_date",
]

FORM = frozenset({"form"})


def _slot(step: Step, back: Step, goes_to: set[Step]) -> StepSpec:
    """A step of the child form: its question is the slot's (children.SLOTS)."""
    return StepSpec(SLOT_AT[step].prompt, children.fill, frozenset(goes_to), FORM, back=back)


STEPS: dict[Step, StepSpec] = {
    Step.CONSENT: StepSpec(
        Prompt("consent_ask", YES_NO),
        onboarding.consent,
        goes_to=frozenset({Step.LANGUAGE}),
        commands=False,  # nothing but yes or no before consent
    ),
    Step.LANGUAGE: StepSpec(
        Prompt("language_ask", onboarding.language_options, onboarding.language_values),
        onboarding.language,
        goes_to=frozenset({Step.MENU, Step.CHILD_NAME}),
        own_commands=frozenset({"language"}),  # "english" is this step's answer
    ),
    Step.MENU: StepSpec(
        Prompt("menu", numbered(len(onboarding.MENU_ORDER))),
        onboarding.menu,
        goes_to=frozenset(
            {
                Step.MENU,
                Step.LANGUAGE,
                Step.CHILD_NAME,
                Step.CHOOSE_CHILD,
                Step.RESUME,
                Step.QUESTION,
            }
        ),
    ),
    Step.CHILD_NAME: _slot(Step.CHILD_NAME, back=Step.MENU, goes_to={Step.CHILD_BIRTH}),
    Step.CHILD_BIRTH: _slot(Step.CHILD_BIRTH, back=Step.CHILD_NAME, goes_to={Step.CHILD_SEX}),
    Step.CHILD_SEX: _slot(Step.CHILD_SEX, back=Step.CHILD_BIRTH, goes_to={Step.CHILD_GESTATION}),
    Step.CHILD_GESTATION: _slot(
        Step.CHILD_GESTATION,
        back=Step.CHILD_SEX,
        goes_to={Step.CONFIRM_SCREEN, Step.CHILD_NAME},  # the name again if the form is damaged
    ),
    Step.CONFIRM_SCREEN: StepSpec(
        Prompt("screen_now_ask", YES_NO, questionnaire.confirm_values),
        questionnaire.confirm_screen,
        goes_to=frozenset({Step.QUESTION, Step.MENU}),
        context=frozenset({"form", "child_id"}),  # the form for the child's name
    ),
    Step.CHOOSE_CHILD: StepSpec(
        Prompt("choose_child", questionnaire.child_numbers, questionnaire.child_list_values),
        questionnaire.choose_child_answer,
        goes_to=frozenset({Step.QUESTION, Step.MENU}),
        context=frozenset({"choices"}),
        back=Step.MENU,
    ),
    Step.QUESTION: StepSpec(
        Prompt("question", YES_NO_BACK, questionnaire.item_values),
        questionnaire.answer,
        goes_to=frozenset({Step.MENU}),  # after the result
        context=frozenset({"questionnaire_id", "asked"}),
        back=questionnaire.back,  # re-opens the previous item
    ),
    Step.POSYANDU: StepSpec(
        Prompt("posyandu_ask"),
        posyandu.answer,
        goes_to=frozenset({Step.MENU}),
        back=Step.MENU,
        own_commands=frozenset({"posyandu"}),  # "posyandu 01" may be this step's answer
    ),
    Step.RESUME: StepSpec(
        Prompt("resume_ask", numbered(2), questionnaire.resume_values),
        questionnaire.resume_answer,
        goes_to=frozenset({Step.QUESTION, Step.MENU}),
        context=frozenset({"questionnaire_id"}),
    ),
}


@dataclass(frozen=True)
class Command:
    """A word understood at every step after consent; `match` returns its argument."""

    name: str
    match: Callable[[Vocabulary, str], Any]  # None: not this command
    run: Callable[[Conversation, Any], None]
    goes_to: frozenset[Step] = frozenset()  # beyond the current step's `back`


def _word(name: CommandWord) -> Callable[[Vocabulary, str], Any]:
    return lambda words, word: True if words.command(word, name) else None


COMMANDS = (
    Command("help", _word("help"), onboarding.show_help),
    Command("menu", _word("menu"), onboarding.to_menu, frozenset({Step.MENU})),
    Command("restart", _word("restart"), onboarding.restart, frozenset({Step.MENU})),
    Command("language", Vocabulary.language_named, onboarding.switch_language),
    Command("back", _word("back"), onboarding.go_back),
    Command("reminders_off", _word("reminders_off"), reminding.reminders_off),
    Command("reminders_on", _word("reminders_on"), reminding.reminders_on),
    Command("posyandu", posyandu.match, posyandu.command, frozenset({Step.POSYANDU, Step.MENU})),
)
OPT_COMMANDS = tuple(c for c in COMMANDS if c.name in ("reminders_off", "reminders_on"))


def dispatch(c: Conversation, m: Message) -> None:
    """Give one message to a global command, else to the current step's handler."""
    spec = c.spec
    if spec.commands:
        for command in COMMANDS:
            if command.name in spec.own_commands:
                continue
            argument = command.match(c.words, m.word)
            if argument is not None:
                command.run(c, argument)
                return
    if c.state.lost:  # stored by a release with other steps: start again from the menu
        c.goto(Step.MENU)
        return
    spec.handle(c, m)


class Engine:
    def __init__(self, store: Store, banks: BankSource, config: EngineConfig | None = None) -> None:
        self.store = store
        self.banks = banks
        self.config = config or EngineConfig()
        # Each read once per process and shared (an engine is built for every message).
        self.texts = Texts()
        self.words = load_vocabulary()
        self.limits = load_limits()

    def handle(
        self, user: dict[str, Any], state: dict[str, Any] | None, text: str, now: datetime
    ) -> Turn:
        """Process one inbound message. `state` is None for a new or expired session."""
        c = Conversation(
            steps=STEPS,
            store=self.store,
            banks=self.banks,
            config=self.config,
            texts=self.texts,
            words=self.words,
            limits=self.limits,
            user=dict(user),
            state=ConversationState.from_doc(state),
            now=now,
        )
        message = None if state is None else Message(word=normalise(text), raw=text.strip())
        if message is None and c.user.get("consentAt"):
            # A new session's first message is not read, except the reminders' opt-out and
            # opt-in: honoured wherever they are said (a "STOP" answering a WhatsApp
            # template comes days later, in a new session).
            for command in OPT_COMMANDS:
                if command.match(c.words, normalise(text)) is not None:
                    command.run(c, True)
                    return Turn(c.state.to_doc(), c.replies)
        if self._reminded(c, message):
            return Turn(c.state.to_doc(), c.replies)
        if message is None:
            onboarding.begin(c)
        else:
            dispatch(c, message)
        return Turn(c.state.to_doc(), c.replies)

    @staticmethod
    def _reminded(c: Conversation, message: Message | None) -> bool:
        """A reminder was sent (chatbot/chat/reminders.py): the parent's next message,
        at the start of a session or at the menu, answers it, unless it is a command."""
        pending = c.user.get("pendingReminder")
        if not pending or not c.user.get("consentAt"):
            return False
        if message is not None:
            if c.state.step not in reminding.TAKES_OVER_AT:
                return False
            if any(command.match(c.words, message.word) is not None for command in COMMANDS):
                return False
        return reminding.answer(c, pending, message)
