"""The conversation's state between two messages: which step, and that step's context.

Stored per turn by the chat service (Redis, and MongoDB when its durable part changes)
as the plain document `to_doc` writes; `from_doc` reads any version ever written.
Version 1 (no "v" key) had the same fields; a step this release does not know is
read as the menu, flagged `lost` so the message is not taken as a menu choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from typing import Any

STATE_VERSION = 2


class Step(StrEnum):
    """Where the conversation waits for the parent; the values are stored and shown
    by the API (`step` of a turn)."""

    CONSENT = "consent"
    LANGUAGE = "language"
    MENU = "menu"
    CHILD_NAME = "child_name"
    CHILD_BIRTH = "child_birth"
    CHILD_SEX = "child_sex"
    CHILD_GESTATION = "child_gestation"
    CONFIRM_SCREEN = "confirm_screen"
    CHOOSE_CHILD = "choose_child"
    QUESTION = "question"
    RESUME = "resume"
    POSYANDU = "posyandu"  # the posyandu's code, asked for by the word "posyandu"


@dataclass
class ChildForm:
    """The child being added, one slot filled per message."""

    name: str | None = None
    birth_date: date | None = None
    sex: str | None = None  # male | female
    gestational_weeks: int | None = None  # None also when the parent does not know

    def to_doc(self) -> dict[str, Any]:
        doc = {
            "name": self.name,
            "birthDate": self.birth_date.isoformat() if self.birth_date else None,
            "sex": self.sex,
            "gestationalWeeks": self.gestational_weeks,
        }
        return {k: v for k, v in doc.items() if v is not None}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ChildForm:
        born = doc.get("birthDate")
        return cls(
            name=doc.get("name"),
            birth_date=date.fromisoformat(born) if isinstance(born, str) else born,
            sex=doc.get("sex"),
            gestational_weeks=doc.get("gestationalWeeks"),
        )


# The fields that belong to a step's context, and their names in the stored document.
CONTEXT_FIELDS = {
    "form": "form",
    "child_id": "childId",
    "questionnaire_id": "questionnaireId",
    "choices": "choices",
    "asked": "asked",
}


@dataclass
class ConversationState:
    step: Step = Step.MENU
    form: ChildForm | None = None  # child_* steps and confirm_screen (the child's name)
    child_id: str | None = None  # confirm_screen: the child just added
    questionnaire_id: str | None = None  # question, resume
    choices: list[str] = field(default_factory=list)  # choose_child: child ids by number
    # question: how many answers the questionnaire had when the question was asked, so a
    # replayed message is recognised. Not durable: recomputed from the answers (sessions.py).
    asked: int | None = None
    # Kept across steps: the questionnaire in progress the parent left for the menu (or
    # another command). Choosing to screen again offers to continue it or start over.
    paused: str | None = None
    # Read from a state whose step this release does not know: show the menu, read nothing.
    lost: bool = False

    def moved_to(self, step: Step, keep: frozenset[str], **context: Any) -> ConversationState:
        """This state at `step`: context fields the step does not `keep` are cleared,
        then `context` is applied."""
        fresh = ConversationState()
        cleared = {name: getattr(fresh, name) for name in CONTEXT_FIELDS if name not in keep}
        return replace(self, step=step, lost=False, **{**cleared, **context})

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"v": STATE_VERSION, "step": self.step.value}
        values = {
            "form": self.form.to_doc() if self.form is not None else None,
            "child_id": self.child_id,
            "questionnaire_id": self.questionnaire_id,
            "choices": list(self.choices) or None,
            "asked": self.asked,
        }
        doc.update({CONTEXT_FIELDS[k]: v for k, v in values.items() if v is not None})
        if self.paused is not None:
            doc["paused"] = self.paused
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> ConversationState:
        """Any stored version; None (a new or expired session) is a fresh state."""
        if doc is None:
            return cls()
        # Version 1 (no "v") stored the same fields; nothing to convert yet. A later
        # version's change of shape gets its step here, before the fields are read.
        raw_step = doc.get("step", Step.MENU.value)
        lost = raw_step not in Step._value2member_map_
        form = doc.get("form")
        return cls(
            step=Step.MENU if lost else Step(raw_step),
            form=ChildForm.from_doc(form) if isinstance(form, dict) else None,
            child_id=doc.get("childId"),
            questionnaire_id=doc.get("questionnaireId"),
            choices=list(doc.get("choices") or []),
            asked=doc.get("asked"),
            paused=doc.get("paused"),
            lost=lost,
        )
