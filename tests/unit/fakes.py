"""An in-memory Store for unit tests of the pure engine (repositories are tested for real).

It keeps the Store contract (chatbot/screening/store.py): tests/integration/
test_store_contract.py runs the same cases against it and the MongoDB-backed store.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from chatbot.chat.store import LAST_SCREENING_FIELDS
from chatbot.screening.bank import Bank, shipped_bank


class FakeStore:
    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.children: dict[str, dict[str, Any]] = {}
        self.questionnaires: dict[str, dict[str, Any]] = {}
        # code -> {code, name}: what an admin created (the real one: db/posyandu.py)
        self.posyandu: dict[str, dict[str, Any]] = {}
        self._ids = (f"id{n}" for n in itertools.count(1))

    def _in_progress(self, questionnaire_id: str) -> dict[str, Any] | None:
        q = self.questionnaires.get(questionnaire_id)
        return q if q is not None and q["status"] == "in_progress" else None

    def set_user(self, user_id: str, **fields: Any) -> None:
        self.users.setdefault(user_id, {}).update(fields)

    def list_children(self, user_id: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(c) for c in self.children.values() if c["userId"] == user_id]

    def get_child(self, user_id: str, child_id: str) -> dict[str, Any] | None:
        child = self.children.get(child_id)
        return copy.deepcopy(child) if child and child["userId"] == user_id else None

    def add_child(self, user_id: str, **fields: Any) -> dict[str, Any]:
        child = {"id": next(self._ids), "userId": user_id, "lastScreening": None, **fields}
        self.children[child["id"]] = child
        return copy.deepcopy(child)

    def link_posyandu(self, user_id: str, code: str) -> dict[str, Any] | None:
        found = self.posyandu.get(code.replace(" ", "").upper())
        if found is None:
            return None
        self.users.setdefault(user_id, {})["posyandu"] = found["code"]
        for child in self.children.values():
            if child["userId"] == user_id and child.get("status", "active") == "active":
                child["posyandu"] = found["code"]
        return dict(found)

    def in_progress(self, user_id: str) -> dict[str, Any] | None:
        found = [
            q
            for q in self.questionnaires.values()
            if q["userId"] == user_id and q["status"] == "in_progress"
        ]
        newest = max(found, key=lambda q: q["startedAt"], default=None)
        return copy.deepcopy(newest)

    def get_questionnaire(self, questionnaire_id: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.questionnaires.get(questionnaire_id))

    def start_questionnaire(self, doc: dict[str, Any]) -> dict[str, Any]:
        q = {**copy.deepcopy(doc), "id": next(self._ids), "status": "in_progress"}
        self.questionnaires[q["id"]] = q
        return copy.deepcopy(q)

    def save_answers(self, questionnaire_id: str, answers: list[dict[str, Any]]) -> None:
        q = self._in_progress(questionnaire_id)
        if q is not None:
            q["answers"] = copy.deepcopy(answers)

    def complete_questionnaire(self, questionnaire_id: str, **fields: Any) -> None:
        q = self._in_progress(questionnaire_id)
        if q is not None:
            q.update(copy.deepcopy(fields), status="completed")
        q = self.questionnaires[questionnaire_id]
        if q["status"] == "completed":  # a repeat writes the same summary again
            self.children[q["childId"]]["lastScreening"] = {
                "questionnaireId": questionnaire_id,
                **{k: q[k] for k in LAST_SCREENING_FIELDS},
            }

    def abandon_questionnaire(self, questionnaire_id: str) -> None:
        q = self._in_progress(questionnaire_id)
        if q is not None:
            q["status"] = "abandoned"

    def abandon_in_progress(self, user_id: str) -> None:
        for q in self.questionnaires.values():
            if q["userId"] == user_id and q["status"] == "in_progress":
                q["status"] = "abandoned"

    def record_referral(self, user_id: str, child_id: str, visited: bool, at: Any) -> None:
        child = self.children.get(child_id)
        if child is not None and child["userId"] == user_id:
            child["referral"] = {"visited": visited, "answeredAt": at}

    def last_completed(self, child_id: str) -> dict[str, Any] | None:
        done = [
            q
            for q in self.questionnaires.values()
            if q["childId"] == child_id and q["status"] == "completed"
        ]
        return copy.deepcopy(max(done, key=lambda q: q["completedAt"], default=None))


class ShippedBanks:
    def active(self) -> Bank:
        return shipped_bank()

    def get(self, version: str) -> Bank:
        assert version == shipped_bank().version
        return shipped_bank()
