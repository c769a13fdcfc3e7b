"""Questionnaires: one screening of one child, from first answer to result."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from chatbot.db.documents import oid, out, to_datetime

DATES = ("referenceBirthDate", "screeningDate")
HISTORY = {
    "childId": 1, "screeningDate": 1, "referenceBirthDate": 1, "bracket": 1,
    "category": 1, "riskLevel": 1, "yesCount": 1, "itemCount": 1, "noByDomain": 1,
    "nextAction": 1, "nextDueAt": 1, "completedAt": 1, "posyandu": 1,
    "childName": 1, "childSex": 1, "age": 1,
}  # fmt: skip
SUMMARY = {"riskLevel": 1, "completedAt": 1}


class QuestionnaireRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["questionnaires"]

    def start(self, doc: dict[str, Any]) -> dict[str, Any]:
        stored: dict[str, Any] = {
            **doc,
            "childId": oid(doc["childId"], "child"),
            "userId": oid(doc["userId"], "user"),
            "referenceBirthDate": to_datetime(doc["referenceBirthDate"]),
            "screeningDate": to_datetime(doc["screeningDate"]),
            "status": "in_progress",
            "yesCount": None,
            "category": None,
            "riskLevel": None,
            "noByDomain": None,
            "nextAction": None,
            "nextDueAt": None,
            "completedAt": None,
        }
        self.col.insert_one(stored)
        return out(stored, DATES)

    def get(self, questionnaire_id: str) -> dict[str, Any] | None:
        return out(self.col.find_one({"_id": oid(questionnaire_id, "questionnaire")}), DATES)

    def in_progress_for_user(self, user_id: str) -> dict[str, Any] | None:
        doc = self.col.find_one(
            {"userId": oid(user_id, "user"), "status": "in_progress"},
            sort=[("startedAt", DESCENDING)],
        )
        return out(doc, DATES)

    def save_answers(self, questionnaire_id: str, answers: list[dict[str, Any]]) -> None:
        self.col.update_one(
            {"_id": oid(questionnaire_id, "questionnaire"), "status": "in_progress"},
            {"$set": {"answers": answers}},
        )

    def complete(self, questionnaire_id: str, **fields: Any) -> bool:
        """Complete it if still in progress; False if it was not (abandoned or done)."""
        fields["nextDueAt"] = to_datetime(fields.get("nextDueAt"))
        result = self.col.update_one(
            {"_id": oid(questionnaire_id, "questionnaire"), "status": "in_progress"},
            {"$set": {**fields, "status": "completed"}},
        )
        return result.matched_count == 1

    def abandon(self, questionnaire_id: str, now: datetime) -> None:
        self.col.update_one(
            {"_id": oid(questionnaire_id, "questionnaire"), "status": "in_progress"},
            {"$set": {"status": "abandoned", "abandonedAt": now}},
        )

    def abandon_in_progress_for_user(self, user_id: str, now: datetime) -> int:
        """Abandon whatever the user left unfinished, without reading it first."""
        result = self.col.update_many(
            {"userId": oid(user_id, "user"), "status": "in_progress"},
            {"$set": {"status": "abandoned", "abandonedAt": now}},
        )
        return result.modified_count

    def abandon_started_before(self, cutoff: datetime, now: datetime) -> int:
        """The sweep: unfinished questionnaires older than the resume window are abandoned."""
        result = self.col.update_many(
            {"status": "in_progress", "startedAt": {"$lt": cutoff}},
            {"$set": {"status": "abandoned", "abandonedAt": now}},
        )
        return result.modified_count

    def last_completed(self, child_id: str) -> dict[str, Any] | None:
        doc = self.col.find_one(
            {"childId": oid(child_id, "child"), "status": "completed"},
            sort=[("completedAt", DESCENDING)],
        )
        return out(doc, DATES)

    def recent_for_child(self, child_id: str, limit: int = 5) -> list[dict[str, Any]]:
        """The seed's optimised read: riskLevel and completedAt of the latest results."""
        cursor = (
            self.col.find({"childId": oid(child_id, "child"), "status": "completed"}, SUMMARY)
            .sort("completedAt", DESCENDING)
            .limit(limit)
        )
        return [out(d) for d in cursor]

    def history_for_child(self, child_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """A child's completed screenings, newest first, for the health workers' page."""
        cursor = (
            self.col.find({"childId": oid(child_id, "child"), "status": "completed"}, HISTORY)
            .sort([("completedAt", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [out(d, DATES) for d in cursor]

    def completed_in_month(self, posyandu: str, month: str) -> Iterator[dict[str, Any]]:
        """The posyandu's screenings completed in `month` ("2031-03", the local calendar),
        oldest first, as a cursor: the monthly export streams it row by row. Equalities
        only: FerretDB pushes them down to PostgreSQL, so the cost follows the month's
        screenings, not the collection."""
        cursor = self.col.find(
            {"posyandu": posyandu, "completedMonth": month, "status": "completed"},
            HISTORY,
        ).sort([("completedAt", ASCENDING), ("_id", ASCENDING)])
        return (out(d, DATES) for d in cursor)
