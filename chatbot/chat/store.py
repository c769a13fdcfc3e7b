"""The engine's Store for one turn, over the repositories and the session's snapshot.

The user's questionnaire in progress travels with the session (chat/sessions.py):
an answer turn reads it from there and writes only the new answers, so it costs
no database read.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from chatbot.chat.children import ChildDirectory
from chatbot.chat.reminders import ReminderSchedule
from chatbot.chat.sessions import Pending
from chatbot.chat.users import UserDirectory
from chatbot.db import Database
from chatbot.db.children import ChildRepository
from chatbot.db.posyandu import PosyanduRepository, normal_code
from chatbot.db.questionnaires import QuestionnaireRepository

LAST_SCREENING_FIELDS = (
    "bracket",
    "category",
    "riskLevel",
    "noByDomain",
    "yesCount",
    "itemCount",
    "nextAction",
    "nextDueAt",
    "completedAt",
)


class RepositoryStore:
    def __init__(
        self,
        db: Database[dict[str, Any]],
        users: UserDirectory,
        children: ChildDirectory,
        pending: Pending,
        now: datetime,
        schedule: ReminderSchedule,
    ) -> None:
        self.schedule = schedule
        self.users = users
        self.children = children
        self.child_repo = ChildRepository(db)
        self.posyandu = PosyanduRepository(db)
        self.questionnaires = QuestionnaireRepository(db)
        self.pending = pending
        self.now = now

    def _snapshot(self, questionnaire_id: str) -> dict[str, Any] | None:
        doc = self.pending.doc
        if doc is not None and doc["id"] == questionnaire_id:
            return doc
        return None

    def set_user(self, user_id: str, **fields: Any) -> None:
        self.users.set_fields(user_id, **fields)

    def list_children(self, user_id: str) -> list[dict[str, Any]]:
        return self.children.list_for_user(user_id)

    def get_child(self, user_id: str, child_id: str) -> dict[str, Any] | None:
        return self.children.get_for_user(user_id, child_id)

    def add_child(self, user_id: str, **fields: Any) -> dict[str, Any]:
        child = self.child_repo.add(user_id, now=self.now, **fields)
        self.children.changed(user_id)
        return child

    def link_posyandu(self, user_id: str, code: str) -> dict[str, Any] | None:
        normal = normal_code(code)
        found = self.posyandu.get(normal) if normal else None
        if found is None:
            return None
        self.users.set_fields(user_id, posyandu=found["code"])
        self.child_repo.link_posyandu(user_id, found["code"])
        self.children.changed(user_id)  # the staff lists too
        return found

    def in_progress(self, user_id: str) -> dict[str, Any] | None:
        if not self.pending.known:
            self.pending.set(self.questionnaires.in_progress_for_user(user_id))
        return copy.deepcopy(self.pending.doc)

    def get_questionnaire(self, questionnaire_id: str) -> dict[str, Any] | None:
        if not questionnaire_id:
            return None
        snapshot = self._snapshot(questionnaire_id)
        if snapshot is not None:
            return copy.deepcopy(snapshot)
        return self.questionnaires.get(questionnaire_id)

    def start_questionnaire(self, doc: dict[str, Any]) -> dict[str, Any]:
        started = self.questionnaires.start(doc)
        self.pending.set(copy.deepcopy(started))
        return started

    def save_answers(self, questionnaire_id: str, answers: list[dict[str, Any]]) -> None:
        self.questionnaires.save_answers(questionnaire_id, answers)
        snapshot = self._snapshot(questionnaire_id)
        if snapshot is not None:
            snapshot["answers"] = copy.deepcopy(answers)

    def complete_questionnaire(self, questionnaire_id: str, **fields: Any) -> None:
        completed: dict[str, Any] | None
        if self.questionnaires.complete(questionnaire_id, **fields):
            questionnaire = self._snapshot(questionnaire_id) or self.questionnaires.get(
                questionnaire_id
            )
            assert questionnaire is not None
            completed = {**questionnaire, **fields}
        else:
            # Not in progress any more. Completed by an earlier attempt of this turn (a
            # retry): write its summary again, it may be missing. Abandoned meanwhile
            # (the sweep): its result must not become the child's latest.
            completed = self.questionnaires.get(questionnaire_id)
            if self._snapshot(questionnaire_id) is not None:
                self.pending.set(None)
            if completed is None or completed["status"] != "completed":
                return
        # Denormalised for the health-worker lists (no $lookup or $group-by-latest needed).
        self.child_repo.set_last_screening(
            completed["childId"],
            {
                "questionnaireId": questionnaire_id,
                **{name: completed[name] for name in LAST_SCREENING_FIELDS},
            },
        )
        self.children.changed(completed["userId"], completed["childId"])
        # What is due next, for the reminders (Redis; MongoDB only while Redis is down).
        child = {"id": completed["childId"], "userId": completed["userId"],
                 "name": completed.get("childName") or ""}  # fmt: skip
        self.schedule.changed(child, completed, self.now)
        if self._snapshot(questionnaire_id) is not None:
            self.pending.set(None)

    def abandon_questionnaire(self, questionnaire_id: str) -> None:
        self.questionnaires.abandon(questionnaire_id, self.now)
        if self._snapshot(questionnaire_id) is not None:
            self.pending.set(None)

    def abandon_in_progress(self, user_id: str) -> None:
        if not self.pending.known:
            # One write instead of a read and a write: nothing is unfinished afterwards.
            self.questionnaires.abandon_in_progress_for_user(user_id, self.now)
        elif self.pending.doc is not None:
            self.questionnaires.abandon(self.pending.doc["id"], self.now)
        self.pending.set(None)

    def last_completed(self, child_id: str) -> dict[str, Any] | None:
        return self.questionnaires.last_completed(child_id)

    def record_referral(self, user_id: str, child_id: str, visited: bool, at: datetime) -> None:
        self.child_repo.set_referral(user_id, child_id, visited, at)
        self.children.changed(user_id, child_id)
