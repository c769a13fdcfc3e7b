"""An in-memory Store for unit tests of the pure engine (repositories are tested for real)."""

from __future__ import annotations

import itertools
from typing import Any

from chatbot.screening.bank import Bank, shipped_bank


class FakeStore:
    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.children: dict[str, dict[str, Any]] = {}
        self.questionnaires: dict[str, dict[str, Any]] = {}
        self._ids = (f"id{n}" for n in itertools.count(1))

    def set_user(self, user_id: str, **fields: Any) -> None:
        self.users.setdefault(user_id, {}).update(fields)

    def list_children(self, user_id: str) -> list[dict[str, Any]]:
        return [dict(c) for c in self.children.values() if c["userId"] == user_id]

    def get_child(self, user_id: str, child_id: str) -> dict[str, Any] | None:
        child = self.children.get(child_id)
        return dict(child) if child and child["userId"] == user_id else None

    def add_child(self, user_id: str, **fields: Any) -> dict[str, Any]:
        child = {"id": next(self._ids), "userId": user_id, "lastScreening": None, **fields}
        self.children[child["id"]] = child
        return dict(child)

    def in_progress(self, user_id: str) -> dict[str, Any] | None:
        found = [
            q
            for q in self.questionnaires.values()
            if q["userId"] == user_id and q["status"] == "in_progress"
        ]
        return dict(found[-1]) if found else None

    def get_questionnaire(self, questionnaire_id: str) -> dict[str, Any] | None:
        q = self.questionnaires.get(questionnaire_id)
        return {**q, "answers": list(q["answers"])} if q else None

    def start_questionnaire(self, doc: dict[str, Any]) -> dict[str, Any]:
        q = {**doc, "id": next(self._ids), "status": "in_progress"}
        self.questionnaires[q["id"]] = q
        return dict(q)

    def save_answers(self, questionnaire_id: str, answers: list[dict[str, Any]]) -> None:
        self.questionnaires[questionnaire_id]["answers"] = list(answers)

    def complete_questionnaire(self, questionnaire_id: str, **fields: Any) -> None:
        q = self.questionnaires[questionnaire_id]
        q.update(fields, status="completed")
        self.children[q["childId"]]["lastScreening"] = {
            k: q[k]
            for k in (
                "category",
                "riskLevel",
                "yesCount",
                "itemCount",
                "nextAction",
                "nextDueAt",
                "completedAt",
            )
        }

    def abandon_questionnaire(self, questionnaire_id: str) -> None:
        self.questionnaires[questionnaire_id]["status"] = "abandoned"

    def abandon_in_progress(self, user_id: str) -> None:
        for q in self.questionnaires.values():
            if q["userId"] == user_id and q["status"] == "in_progress":
                q["status"] = "abandoned"

    def last_completed(self, child_id: str) -> dict[str, Any] | None:
        done = [
            q
            for q in self.questionnaires.values()
            if q["childId"] == child_id and q["status"] == "completed"
        ]
        return dict(done[-1]) if done else None


class ShippedBanks:
    def active(self) -> Bank:
        return shipped_bank()

    def get(self, version: str) -> Bank:
        assert version == shipped_bank().version
        return shipped_bank()
