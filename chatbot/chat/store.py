"""The engine's Store, implemented over the repositories."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chatbot.db import Database
from chatbot.db.children import ChildRepository
from chatbot.db.questionnaires import QuestionnaireRepository
from chatbot.db.users import UserRepository


class RepositoryStore:
    def __init__(self, db: Database, now: datetime) -> None:
        self.users = UserRepository(db)
        self.children = ChildRepository(db)
        self.questionnaires = QuestionnaireRepository(db)
        self.now = now

    def set_user(self, user_id: str, **fields: Any) -> None:
        self.users.set_fields(user_id, **fields)

    def list_children(self, user_id: str) -> list[dict[str, Any]]:
        return self.children.list_for_user(user_id)

    def get_child(self, user_id: str, child_id: str) -> dict[str, Any] | None:
        return self.children.get_for_user(user_id, child_id)

    def add_child(self, user_id: str, **fields: Any) -> dict[str, Any]:
        return self.children.add(user_id, now=self.now, **fields)

    def in_progress(self, user_id: str) -> dict[str, Any] | None:
        return self.questionnaires.in_progress_for_user(user_id)

    def get_questionnaire(self, questionnaire_id: str) -> dict[str, Any] | None:
        if not questionnaire_id:
            return None
        return self.questionnaires.get(questionnaire_id)

    def start_questionnaire(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self.questionnaires.start(doc)

    def save_answers(self, questionnaire_id: str, answers: list[dict[str, Any]]) -> None:
        self.questionnaires.save_answers(questionnaire_id, answers)

    def complete_questionnaire(self, questionnaire_id: str, **fields: Any) -> None:
        self.questionnaires.complete(questionnaire_id, **fields)
        questionnaire = self.questionnaires.get(questionnaire_id)
        assert questionnaire is not None
        # Denormalised for the health-worker lists (no $lookup or $group-by-latest needed).
        self.children.set_last_screening(
            questionnaire["childId"],
            {
                "questionnaireId": questionnaire["id"],
                "bracket": questionnaire["bracket"],
                "category": questionnaire["category"],
                "riskLevel": questionnaire["riskLevel"],
                "yesCount": questionnaire["yesCount"],
                "itemCount": questionnaire["itemCount"],
                "nextAction": questionnaire["nextAction"],
                "nextDueAt": questionnaire["nextDueAt"],
                "completedAt": questionnaire["completedAt"],
            },
        )

    def abandon_questionnaire(self, questionnaire_id: str) -> None:
        self.questionnaires.abandon(questionnaire_id, self.now)

    def last_completed(self, child_id: str) -> dict[str, Any] | None:
        return self.questionnaires.last_completed(child_id)
