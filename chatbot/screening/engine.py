"""The conversation engine: an explicit state machine, one message in, replies out.

greeting/consent -> language -> add a child (name, birth date, sex, gestation)
-> choose a child -> age check -> items one at a time -> score -> result -> menu.
`menu`, `help`, `restart` and a language switch work in every step after consent.

The engine holds no I/O of its own: persistence goes through a `Store`, the
question banks through a `BankSource`, so it is unit-tested with in-memory fakes
and driven in production by repositories (chatbot/chat/service.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from chatbot.screening.age import AgeRules, add_months, bracket_for, date_at_age, screening_age
from chatbot.screening.bank import BRACKETS, Bank
from chatbot.screening.scoring import score

TEXTS_FILE = Path(__file__).resolve().parent.parent / "data" / "texts.json"

YES = {"ya", "y", "iya", "yes", "1"}
NO = {"tidak", "t", "no", "0", "tdk", "n"}
BACK = {"back", "kembali", "balik"}
MENU = {"menu"}
HELP = {"help", "bantuan", "?"}
RESTART = {"restart", "mulai ulang", "reset"}
SWITCH_LANGUAGE = {
    "english": "en",
    "bahasa inggris": "en",
    "indonesia": "id",
    "bahasa indonesia": "id",
}
UNKNOWN_GESTATION = {"tidak tahu", "tdk tahu", "don't know", "dont know", "unknown", "skip", "-"}
SEX = {
    **dict.fromkeys(("1", "laki-laki", "laki", "l", "boy", "male"), "male"),
    **dict.fromkeys(("2", "perempuan", "p", "girl", "female"), "female"),
}
AGREE = {"setuju", "agree", "ok", "oke"}
# Words for the menu's numbered choices.
MENU_WORDS = {
    **dict.fromkeys(("skrining", "screen", "screening", "periksa"), "1"),
    **dict.fromkeys(("tambah", "tambah anak", "add", "add child", "add a child"), "2"),
    **dict.fromkeys(("riwayat", "history"), "3"),
    **dict.fromkeys(("bahasa", "language", "ganti bahasa", "change language"), "4"),
}
MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "januari", "january"), ("feb", "februari", "february"),
            ("mar", "maret", "march"), ("apr", "april"), ("mei", "may"),
            ("jun", "juni", "june"), ("jul", "juli", "july"),
            ("agu", "agt", "agustus", "aug", "august"), ("sep", "september", "sept"),
            ("okt", "oktober", "oct", "october"), ("nov", "november"),
            ("des", "desember", "dec", "december"),
        ],
        start=1,
    )
    for name in names
}  # fmt: skip
WEEKS = re.compile(r"(\d{2})(?: ?(?:minggu|mgg|weeks?|wks?|w))?")  # "38", "38 minggu", "38w"
MAX_CHILD_AGE_YEARS = 7


@dataclass
class Reply:
    text: str
    quick_replies: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "quickReplies": self.quick_replies}


@dataclass
class Turn:
    state: dict[str, Any]
    replies: list[Reply]


class Store(Protocol):
    """What the engine needs from persistence (implemented over the repositories)."""

    def set_user(self, user_id: str, **fields: Any) -> None: ...
    def list_children(self, user_id: str) -> list[dict[str, Any]]: ...
    def get_child(self, user_id: str, child_id: str) -> dict[str, Any] | None: ...
    def add_child(self, user_id: str, **fields: Any) -> dict[str, Any]: ...
    def in_progress(self, user_id: str) -> dict[str, Any] | None: ...
    def get_questionnaire(self, questionnaire_id: str) -> dict[str, Any] | None: ...
    def start_questionnaire(self, doc: dict[str, Any]) -> dict[str, Any]: ...
    def save_answers(self, questionnaire_id: str, answers: list[dict[str, Any]]) -> None: ...
    def complete_questionnaire(self, questionnaire_id: str, **fields: Any) -> None: ...
    def abandon_questionnaire(self, questionnaire_id: str) -> None: ...
    def abandon_in_progress(self, user_id: str) -> None: ...
    def last_completed(self, child_id: str) -> dict[str, Any] | None: ...


class BankSource(Protocol):
    def active(self) -> Bank: ...
    def get(self, version: str) -> Bank: ...


@cache
def _load_texts(path: Path) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text(encoding="utf-8"))


class Texts:
    """User-facing messages from chatbot/data/texts.json, in Indonesian and English.

    The file is read once per process (an engine is built for every message).
    """

    def __init__(self, path: Path = TEXTS_FILE) -> None:
        self._texts = _load_texts(path)

    def __call__(self, key: str, language: str, **values: Any) -> str:
        entry = self._texts[key]
        return entry.get(language, entry["id"]).format(**values)


def normalise(text: str) -> str:
    """Lower-case, trim, collapse spaces and drop trailing punctuation: ' Ya! ' -> 'ya'."""
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .!,;")


def parse_date(text: str) -> date | None:
    """Read 25-12-2024, 25/12/2024, 25.12.2024, 2024-12-25 or 25 Desember 2024 / 25 Dec 2024."""
    named = re.fullmatch(r"(\d{1,2}) ([a-z]+) (\d{4})", text)
    if named and named.group(2) in MONTHS:
        try:
            return date(int(named.group(3)), MONTHS[named.group(2)], int(named.group(1)))
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


@dataclass(frozen=True)
class EngineConfig:
    rules: AgeRules = field(default_factory=AgeRules)
    timezone: str = "Asia/Jakarta"
    resume_window: timedelta = timedelta(hours=24)


class Engine:
    def __init__(self, store: Store, banks: BankSource, config: EngineConfig | None = None) -> None:
        self.store = store
        self.banks = banks
        self.config = config or EngineConfig()
        self.tz = ZoneInfo(self.config.timezone)
        self.t = Texts()

    # --- entry point ------------------------------------------------------------
    def handle(
        self, user: dict[str, Any], state: dict[str, Any] | None, text: str, now: datetime
    ) -> Turn:
        """Process one inbound message. `state` is None for a new or expired session."""
        ctx = _Context(self, dict(user), now)
        if state is None:
            ctx.begin()
        else:
            ctx.state = dict(state)
            ctx.dispatch(normalise(text), text.strip())
        return Turn(ctx.state, ctx.replies)


class _Context:
    """One turn of the conversation: the user, the state being built and the replies."""

    def __init__(self, engine: Engine, user: dict[str, Any], now: datetime) -> None:
        self.e = engine
        self.store = engine.store
        self.user = user
        self.now = now
        self.today = now.astimezone(engine.tz).date()
        self.state: dict[str, Any] = {}
        self.replies: list[Reply] = []

    # --- helpers ----------------------------------------------------------------
    @property
    def lang(self) -> str:
        return self.user.get("language") or "id"

    def say(self, key: str, quick: list[tuple[str, str]] | None = None, **values: Any) -> None:
        self.replies.append(
            Reply(
                self.e.t(key, self.lang, **values),
                [{"label": label, "value": value} for label, value in (quick or [])],
            )
        )

    def yes_no(self) -> list[tuple[str, str]]:
        return [(self.e.t("yes", self.lang), "ya"), (self.e.t("no", self.lang), "tidak")]

    def goto(self, step: str, **extra: Any) -> None:
        self.state = {"step": step, **extra}

    def fmt_date(self, d: date) -> str:
        return d.strftime("%d-%m-%Y")

    # --- start of a session -----------------------------------------------------
    def begin(self) -> None:
        self.say("greeting")
        if not self.user.get("consentAt"):
            self.ask_consent()
            return
        pending = self.store.in_progress(self.user["id"])
        if pending is not None:
            started = pending["startedAt"]
            if self.now - started <= self.e.config.resume_window:
                self.ask_resume(pending)
                return
            self.store.abandon_questionnaire(pending["id"])
        self.show_menu()

    def ask_consent(self) -> None:
        self.goto("consent")
        self.say("consent_ask", self.yes_no())

    def ask_resume(self, questionnaire: dict[str, Any]) -> None:
        child = self.store.get_child(self.user["id"], questionnaire["childId"])
        name = child["name"] if child else "?"
        self.goto("resume", questionnaireId=questionnaire["id"])
        self.say(
            "resume_ask",
            [("1", "1"), ("2", "2")],
            name=name,
            answered=len(questionnaire["answers"]),
            count=questionnaire["itemCount"],
        )

    def show_menu(self) -> None:
        self.goto("menu")
        self.say("menu", [("1", "1"), ("2", "2"), ("3", "3"), ("4", "4")])

    # --- dispatch ---------------------------------------------------------------
    def dispatch(self, word: str, raw: str) -> None:
        step = self.state.get("step", "menu")
        if step == "consent":
            self.on_consent(word)
            return
        if word in HELP:
            self.say("help")
            self.reprompt()
            return
        if word in MENU:
            self.show_menu()
            return
        if word in RESTART:
            self.restart()
            return
        if (
            word in SWITCH_LANGUAGE and step != "language"
        ):  # the language step takes it as its answer
            self.set_language(SWITCH_LANGUAGE[word])
            self.reprompt()
            return
        handler = getattr(self, f"on_{step}", None)
        if handler is None:  # an unknown step (e.g. from an older release): start from the menu
            self.show_menu()
            return
        handler(word, raw)

    def reprompt(self) -> None:
        """Repeat the current step's question (after help or a language switch)."""
        step = self.state.get("step")
        prompts = {
            "language": lambda: self.say("language_ask", [("1", "1"), ("2", "2")]),
            "child_name": lambda: self.say("child_name_ask"),
            "child_birth": lambda: self.say("child_birth_ask", name=self.form["name"]),
            "child_sex": lambda: self.say(
                "child_sex_ask", [("1", "1"), ("2", "2")], name=self.form["name"]
            ),
            "child_gestation": lambda: self.ask_gestation(),
            "confirm_screen": lambda: self.show_menu(),
            "choose_child": lambda: self.ask_child(),
            "question": lambda: self.ask_item(),
            "resume": lambda: self.say("resume_invalid", [("1", "1"), ("2", "2")]),
        }
        prompt = prompts.get(step)
        if prompt is None:
            self.show_menu()
        else:
            prompt()

    @property
    def form(self) -> dict[str, Any]:
        return self.state.setdefault("form", {})

    # --- consent and language ---------------------------------------------------
    def on_consent(self, word: str) -> None:
        if word in YES or word in AGREE:
            self.user["consentAt"] = self.now
            self.store.set_user(self.user["id"], consentAt=self.now)
            self.goto("language")
            self.say("language_ask", [("1", "1"), ("2", "2")])
        elif word in NO:
            self.say("consent_declined", self.yes_no())
        else:
            self.say("consent_needed", self.yes_no())

    def on_language(self, word: str, raw: str) -> None:
        choice = {"1": "id", "id": "id", "2": "en", "en": "en"}.get(word) or SWITCH_LANGUAGE.get(
            word
        )
        if choice is None:
            self.say("language_ask", [("1", "1"), ("2", "2")])
            return
        self.set_language(choice)
        if self.store.list_children(self.user["id"]):
            self.show_menu()
        else:
            self.start_child_form()

    def set_language(self, language: str) -> None:
        self.user["language"] = language
        self.store.set_user(self.user["id"], language=language)
        self.say("language_set")

    def restart(self) -> None:
        self.store.abandon_in_progress(self.user["id"])
        self.say("restarted")
        self.show_menu()

    # --- menu ---------------------------------------------------------------------
    def on_menu(self, word: str, raw: str) -> None:
        word = MENU_WORDS.get(word, word)
        if word == "1":
            self.choose_child()
        elif word == "2":
            self.start_child_form()
        elif word == "3":
            self.show_history()
            self.show_menu()
        elif word == "4":
            self.goto("language")
            self.say("language_ask", [("1", "1"), ("2", "2")])
        else:
            self.say("menu_invalid", [("1", "1"), ("2", "2"), ("3", "3"), ("4", "4")])

    def show_history(self) -> None:
        children = self.store.list_children(self.user["id"])
        if not children:
            self.say("history_empty")
            return
        lines = []
        for child in children:
            last = child.get("lastScreening")
            if not last:
                lines.append(self.e.t("history_none_line", self.lang, name=child["name"]))
                continue
            lines.append(
                self.e.t(
                    "history_line",
                    self.lang,
                    name=child["name"],
                    category=self.e.t(f"category_{last['category']}", self.lang),
                    date=self.fmt_date(last["completedAt"].astimezone(self.e.tz).date()),
                    yes=last["yesCount"],
                    count=last["itemCount"],
                    action=self.action_text(last["nextAction"], last.get("nextDueAt")),
                )
            )
        self.replies.append(Reply("\n".join(lines)))

    def action_text(self, action: str, due: datetime | date | None) -> str:
        if action == "routine" and due is None:
            return self.e.t("action_routine_none", self.lang)
        due_date = due.date() if isinstance(due, datetime) else due
        return self.e.t(
            f"action_{action}", self.lang, date=self.fmt_date(due_date) if due_date else ""
        )

    # --- adding a child -------------------------------------------------------------
    def start_child_form(self) -> None:
        self.goto("child_name", form={})
        self.say("child_name_ask")

    def on_child_name(self, word: str, raw: str) -> None:
        name = re.sub(r"\s+", " ", raw).strip()
        if not (1 <= len(name) <= 50) or not re.fullmatch(
            r"[^\W\d_]+(?:[ .'-][^\W\d_]+)*\.?", name
        ):
            self.say("child_name_invalid")
            return
        self.form["name"] = name
        self.state["step"] = "child_birth"
        self.say("child_birth_ask", name=name)

    def on_child_birth(self, word: str, raw: str) -> None:
        born = parse_date(word)
        # add_months, not date.replace: on 29 February replace(year=...) raises.
        earliest = add_months(self.today, -12 * MAX_CHILD_AGE_YEARS)
        if born is None or born > self.today or born < earliest:
            self.say("child_birth_invalid")
            return
        self.form["birthDate"] = born.isoformat()
        self.state["step"] = "child_sex"
        self.say("child_sex_ask", [("1", "1"), ("2", "2")], name=self.form["name"])

    def on_child_sex(self, word: str, raw: str) -> None:
        sex = SEX.get(word)
        if sex is None:
            self.say("child_sex_invalid", [("1", "1"), ("2", "2")])
            return
        self.form["sex"] = sex
        self.state["step"] = "child_gestation"
        self.ask_gestation()

    def ask_gestation(self) -> None:
        unknown = "tidak tahu" if self.lang == "id" else "don't know"
        self.say("child_gestation_ask", [(unknown.upper(), unknown)], name=self.form["name"])

    def on_child_gestation(self, word: str, raw: str) -> None:
        weeks: int | None
        number = WEEKS.fullmatch(word)
        if word in UNKNOWN_GESTATION:
            weeks = None
        elif number and 22 <= int(number.group(1)) <= 44:
            weeks = int(number.group(1))
        else:
            self.say("child_gestation_invalid")
            return
        born = date.fromisoformat(self.form["birthDate"])
        # A retry whose first attempt saved the child but not the session finds it here.
        same = [
            c
            for c in self.store.list_children(self.user["id"])
            if (c["name"], c["birthDate"], c["sex"]) == (self.form["name"], born, self.form["sex"])
        ]
        child = (
            same[0]
            if same
            else self.store.add_child(
                self.user["id"],
                name=self.form["name"],
                birthDate=born,
                sex=self.form["sex"],
                gestationalWeeks=weeks,
            )
        )
        self.goto("confirm_screen", childId=child["id"])
        self.say("child_added", self.yes_no(), name=child["name"])

    def on_confirm_screen(self, word: str, raw: str) -> None:
        if word in YES:
            child = self.store.get_child(self.user["id"], self.state["childId"])
            if child is not None:
                self.start_screening(child)
                return
        self.show_menu()

    # --- choosing a child and starting a screening --------------------------------
    def choose_child(self) -> None:
        children = self.store.list_children(self.user["id"])
        if not children:
            self.say("no_children")
            self.start_child_form()
            return
        if len(children) == 1:
            self.start_screening(children[0])
            return
        self.goto("choose_child", choices=[c["id"] for c in children])
        self.ask_child(children)

    def ask_child(self, children: list[dict[str, Any]] | None = None) -> None:
        if children is None:
            by_id = {c["id"]: c for c in self.store.list_children(self.user["id"])}
            children = [by_id[i] for i in self.state.get("choices", []) if i in by_id]
        listing = "\n".join(f"{n}. {c['name']}" for n, c in enumerate(children, 1))
        self.say(
            "choose_child",
            [(str(n), str(n)) for n in range(1, len(children) + 1)],
            children=listing,
        )

    def on_choose_child(self, word: str, raw: str) -> None:
        choices = self.state.get("choices", [])
        if word.isdigit() and 1 <= int(word) <= len(choices):
            child = self.store.get_child(self.user["id"], choices[int(word) - 1])
            if child is not None:
                self.start_screening(child)
                return
        self.say("choose_child_invalid")
        self.ask_child()

    def start_screening(self, child: dict[str, Any]) -> None:
        rules = self.e.config.rules
        birth = child["birthDate"]
        age = screening_age(birth, self.today, child.get("gestationalWeeks"), rules)
        used = age.used
        corrected = (
            self.e.t("corrected_note", self.lang, months=used.months, days=used.days)
            if age.corrected
            else ""
        )
        chrono = age.chronological
        # Every message about the age names the child and gives both ages.
        about = {
            "name": child["name"],
            "months": chrono.months,
            "days": chrono.days,
            "corrected": corrected,
        }
        bracket_months = bracket_for(age.used_months)
        if bracket_months is None:
            if age.used_months < BRACKETS[0]:
                first = date_at_age(age.reference_birth, BRACKETS[0], rules)
                self.say("too_young", date=self.fmt_date(first), **about)
            else:
                self.say("too_old", **about)
            self.show_menu()
            return

        self.store.abandon_in_progress(self.user["id"])
        bank = self.e.banks.active()
        bracket = bank.bracket(bracket_months)
        questionnaire = self.store.start_questionnaire(
            {
                "childId": child["id"],
                # The result names the child without reading the child again.
                "childName": child["name"],
                "userId": self.user["id"],
                "instrument": bank.instrument,
                "bankVersion": bank.version,
                "bracket": bracket_months,
                "age": {
                    "chronological": chrono.as_dict(),
                    "corrected": age.corrected.as_dict() if age.corrected else None,
                    "usedMonths": age.used_months,
                },
                "referenceBirthDate": age.reference_birth,
                "screeningDate": self.today,
                "answers": [],
                "itemCount": len(bracket.items),
                "startedAt": self.now,
            }
        )
        self.goto("question", questionnaireId=questionnaire["id"])
        self.say("screening_intro", bracket=bracket_months, count=len(bracket.items), **about)
        self.ask_item(questionnaire)

    # --- the questionnaire ------------------------------------------------------------
    def current(self) -> tuple[dict[str, Any], Bank] | None:
        questionnaire = self.store.get_questionnaire(self.state.get("questionnaireId", ""))
        if questionnaire is None or questionnaire["status"] != "in_progress":
            return None
        return questionnaire, self.e.banks.get(questionnaire["bankVersion"])

    def ask_item(self, questionnaire: dict[str, Any] | None = None) -> None:
        if questionnaire is None:
            found = self.current()
            if found is None:
                self.show_menu()
                return
            questionnaire = found[0]
        bank = self.e.banks.get(questionnaire["bankVersion"])
        bracket = bank.bracket(questionnaire["bracket"])
        item = bracket.items[len(questionnaire["answers"])]
        # Which answer the reply will be: lets a replayed message be recognised (on_question).
        self.state["asked"] = len(questionnaire["answers"])
        self.say(
            "question",
            [*self.yes_no(), (self.e.t("back", self.lang), "kembali")],
            number=item.number,
            count=len(bracket.items),
            task=self.e.t("task_marker", self.lang) if item.type == "task" else "",
            text=item.text.get(self.lang),
        )

    def on_question(self, word: str, raw: str) -> None:
        found = self.current()
        if found is None:
            self.show_menu()
            return
        questionnaire, bank = found
        bracket = bank.bracket(questionnaire["bracket"])
        answers = list(questionnaire["answers"])
        if self.state.get("asked", len(answers)) != len(answers):
            # The stored answers moved on without this session state: the message is a
            # retry whose first attempt saved the answer but failed before the session
            # was saved. Record nothing twice; ask what is next.
            self.ask_item(questionnaire)
            return
        if word in BACK:
            if not answers:
                self.say("back_at_first")
            else:
                answers.pop()
                self.store.save_answers(questionnaire["id"], answers)
                questionnaire["answers"] = answers
            self.ask_item(questionnaire)
            return
        if word not in YES and word not in NO:
            self.say("answer_invalid")
            self.ask_item(questionnaire)
            return
        item = bracket.items[len(answers)]
        answers.append(
            {"number": item.number, "domains": list(item.domains), "answer": word in YES}
        )
        questionnaire["answers"] = answers
        if len(answers) < len(bracket.items):
            self.store.save_answers(questionnaire["id"], answers)
            self.ask_item(questionnaire)
            return
        self.finish(questionnaire, bank)

    def finish(self, questionnaire: dict[str, Any], bank: Bank) -> None:
        bracket = bank.bracket(questionnaire["bracket"])
        previous = self.store.last_completed(questionnaire["childId"])
        result = score(
            bracket,
            {a["number"]: a["answer"] for a in questionnaire["answers"]},
            bank.scoring,
            questionnaire["screeningDate"],
            questionnaire["referenceBirthDate"],
            self.e.config.rules,
            previous_doubtful=bool(previous and previous.get("nextAction") == "rescreen_2_weeks"),
        )
        self.store.complete_questionnaire(
            questionnaire["id"],
            answers=questionnaire["answers"],
            yesCount=result.yes_count,
            itemCount=result.item_count,
            category=result.category,
            riskLevel=result.risk_level,
            noByDomain=result.no_by_domain,
            nextAction=result.next_action,
            nextDueAt=result.next_due,
            completedAt=self.now,
        )
        name = questionnaire.get("childName")
        if name is None:  # started before questionnaires carried the name
            child = self.store.get_child(self.user["id"], questionnaire["childId"])
            name = child["name"] if child else "?"
        self.explain(name, result)
        self.show_menu()

    def explain(self, name: str, result: Any) -> None:
        self.say(
            f"result_{result.category}", name=name, yes=result.yes_count, count=result.item_count
        )
        domain_names = [self.e.t(f"domain_{d}", self.lang) for d in result.no_by_domain]
        if result.no_by_domain:
            parts = [
                f"{self.e.t(f'domain_{d}', self.lang)} ({', '.join(map(str, nums))})"
                for d, nums in result.no_by_domain.items()
            ]
            self.say("result_domains", domains="; ".join(parts))
        if result.next_action == "routine":
            if result.next_bracket is None:
                self.say("next_routine_last")
            else:
                self.say(
                    "next_routine", bracket=result.next_bracket, date=self.fmt_date(result.next_due)
                )
        elif result.next_action == "rescreen_2_weeks":
            self.say("next_rescreen", date=self.fmt_date(result.next_due))
        else:
            self.say(
                "next_refer",
                name=name,
                no=result.item_count - result.yes_count,
                domain_names=", ".join(domain_names),
            )
        self.say("disclaimer")

    # --- resuming -------------------------------------------------------------------
    def on_resume(self, word: str, raw: str) -> None:
        questionnaire = self.store.get_questionnaire(self.state.get("questionnaireId", ""))
        if questionnaire is None or questionnaire["status"] != "in_progress":
            self.show_menu()
            return
        if word == "1":
            self.goto("question", questionnaireId=questionnaire["id"])
            self.ask_item(questionnaire)
        elif word == "2":
            child = self.store.get_child(self.user["id"], questionnaire["childId"])
            self.store.abandon_questionnaire(questionnaire["id"])
            if child is None:
                self.show_menu()
            else:
                self.start_screening(child)
        else:
            self.say("resume_invalid", [("1", "1"), ("2", "2")])
