"""One turn of the conversation, and the shapes of the step table (chatbot/screening/engine.py).

A step handler gets the turn's `Conversation` and the parent's `Message`; it reads and
changes `c.state`, talks through `c.say`, and moves with `c.goto(step)`, which asks
that step's question from the table: going to a step and asking its question are
one act, so a step's question is written once, in the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chatbot.screening.age import AgeRules
from chatbot.screening.bank import Bank
from chatbot.screening.state import ConversationState, Step
from chatbot.screening.store import BankSource, Store
from chatbot.screening.texts import Texts
from chatbot.screening.words import Limits, Vocabulary


@dataclass(frozen=True)
class EngineConfig:
    rules: AgeRules = field(default_factory=AgeRules)
    timezone: str = "Asia/Jakarta"
    resume_window: timedelta = timedelta(hours=24)


@dataclass
class Reply:
    text: str
    quick_replies: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "quickReplies": self.quick_replies}


@dataclass
class Turn:
    state: dict[str, Any]  # the state document to store (ConversationState.to_doc)
    replies: list[Reply]


@dataclass(frozen=True)
class Message:
    """What the parent sent: `word` normalised for matching, `raw` as typed (trimmed)."""

    word: str
    raw: str


# --- the shapes of the step table ------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """A quick-reply button: the `value` it sends and the label it shows. `label_key` and
    `value_key` name texts.json entries when they depend on the parent's language."""

    value: str = ""
    label_key: str | None = None
    value_key: str | None = None


def numbered(count: int) -> tuple[Option, ...]:
    return tuple(Option(str(n)) for n in range(1, count + 1))


YES_NO = (Option("ya", label_key="yes"), Option("tidak", label_key="no"))
YES_NO_BACK = (*YES_NO, Option("kembali", label_key="back"))

Handler = Callable[["Conversation", Message], None]
Options = tuple[Option, ...] | Callable[["Conversation"], tuple[Option, ...]]


@dataclass(frozen=True)
class Prompt:
    """A step's question: a texts.json key, its quick replies, and what fills its
    placeholders. `values` returning None means the question's subject is gone
    (e.g. the questionnaire was finished elsewhere): the menu is shown instead."""

    key: str
    options: Options = ()
    values: Callable[[Conversation], dict[str, Any] | None] | None = None


@dataclass(frozen=True)
class StepSpec:
    """One row of the table: the step's question, its handler, where it may go."""

    prompt: Prompt
    handle: Handler
    goes_to: frozenset[Step]  # every step the handler may move to (a test checks this)
    context: frozenset[str] = frozenset()  # state fields kept while at this step
    back: Step | Callable[[Conversation], None] | None = None  # None: ask again
    commands: bool = True  # global commands apply (consent opts out)
    own_commands: frozenset[str] = frozenset()  # commands whose words answer this step


# --- the turn ---------------------------------------------------------------------------
class Conversation:
    """One message being handled: the user, the state being built, the replies."""

    def __init__(
        self,
        *,
        steps: Mapping[Step, StepSpec],
        store: Store,
        banks: BankSource,
        config: EngineConfig,
        texts: Texts,
        words: Vocabulary,
        limits: Limits,
        user: dict[str, Any],
        state: ConversationState,
        now: datetime,
    ) -> None:
        self.steps = steps
        self.store = store
        self.banks = banks
        self.config = config
        self.texts = texts
        self.words = words
        self.limits = limits
        self.tz = ZoneInfo(config.timezone)
        self.user = user
        self.state = state
        self.now = now
        self.today = now.astimezone(self.tz).date()
        self.replies: list[Reply] = []
        # Read at most once per turn, and kept up to date by the turn's own writes.
        self._questionnaires: dict[str, dict[str, Any] | None] = {}
        self._children: list[dict[str, Any]] | None = None

    @property
    def lang(self) -> str:
        return self.user.get("language") or self.words.languages[0]

    @property
    def user_id(self) -> str:
        user_id: str = self.user["id"]
        return user_id

    # --- talking ------------------------------------------------------------------------
    def text(self, key: str, **values: Any) -> str:
        return self.texts(key, self.lang, **values)

    def say(self, key: str, options: tuple[Option, ...] = (), **values: Any) -> None:
        self.replies.append(Reply(self.text(key, **values), self.buttons(options)))

    def buttons(self, options: tuple[Option, ...]) -> list[dict[str, str]]:
        out = []
        for option in options:
            value = self.text(option.value_key) if option.value_key else option.value
            label = self.text(option.label_key) if option.label_key else value
            out.append({"label": label, "value": value})
        return out

    def date(self, d: date) -> str:
        return d.strftime("%d-%m-%Y")

    # --- moving -------------------------------------------------------------------------
    @property
    def spec(self) -> StepSpec:
        return self.steps[self.state.step]

    def goto(self, step: Step, **context: Any) -> None:
        """Move to `step` and ask its question. The step keeps the context fields it
        declares (e.g. the child form across the form's slots); `context` sets others."""
        self.state = self.state.moved_to(step, self.steps[step].context, **context)
        self.ask()

    def ask(self) -> None:
        """Ask the current step's question (again)."""
        prompt = self.spec.prompt
        values = prompt.values(self) if prompt.values else {}
        if values is None:
            self.goto(Step.MENU)
            return
        options = prompt.options(self) if callable(prompt.options) else prompt.options
        self.say(prompt.key, options, **values)

    # --- what the turn reads ------------------------------------------------------------
    def questionnaire(self, questionnaire_id: str | None = None) -> dict[str, Any] | None:
        """The questionnaire (default: the state's) if still in progress, else None."""
        qid = questionnaire_id or self.state.questionnaire_id or ""
        if qid not in self._questionnaires:
            self._questionnaires[qid] = self.store.get_questionnaire(qid)
        found = self._questionnaires[qid]
        return found if found is not None and found["status"] == "in_progress" else None

    def remember_questionnaire(self, questionnaire: dict[str, Any] | None, qid: str = "") -> None:
        """What this turn knows of a questionnaire (just started, changed or finished)."""
        self._questionnaires[questionnaire["id"] if questionnaire else qid] = questionnaire

    def bank_of(self, questionnaire: dict[str, Any]) -> Bank:
        return self.banks.get(questionnaire["bankVersion"])

    def children(self) -> list[dict[str, Any]]:
        if self._children is None:
            self._children = self.store.list_children(self.user_id)
        return self._children

    def add_child(self, **fields: Any) -> dict[str, Any]:
        # A new child joins the posyandu the parent linked (chatbot/screening/posyandu.py).
        child = self.store.add_child(self.user_id, posyandu=self.user.get("posyandu"), **fields)
        self._children = None
        return child

    def set_user(self, **fields: Any) -> None:
        self.user.update(fields)
        self.store.set_user(self.user_id, **fields)
