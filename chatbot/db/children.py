"""Children of a user, with a summary of their latest screening for health workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from chatbot.db.documents import oid, out, to_datetime

DATES = ("birthDate",)


class ChildRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["children"]

    def add(
        self,
        user_id: str,
        *,
        name: str,
        birthDate: Any,
        sex: str,
        gestationalWeeks: int | None,
        now: datetime,
    ) -> dict[str, Any]:
        doc = {
            "userId": oid(user_id, "user"),
            "name": name,
            "birthDate": to_datetime(birthDate),
            "sex": sex,
            "gestationalWeeks": gestationalWeeks,
            "status": "active",
            "lastScreening": None,
            "createdAt": now,
        }
        self.col.insert_one(doc)
        return out(doc, DATES)

    def list_for_user(self, user_id: str) -> list[dict[str, Any]]:
        cursor = self.col.find({"userId": oid(user_id, "user"), "status": "active"}).sort(
            [("createdAt", ASCENDING), ("_id", ASCENDING)]
        )
        return [out(d, DATES) for d in cursor]

    def get(self, child_id: str) -> dict[str, Any] | None:
        return out(self.col.find_one({"_id": oid(child_id, "child")}), DATES)

    def get_for_user(self, user_id: str, child_id: str) -> dict[str, Any] | None:
        """The child only if it belongs to the user: ownership is part of the query."""
        doc = self.col.find_one({"_id": oid(child_id, "child"), "userId": oid(user_id, "user")})
        return out(doc, DATES)

    def archive(self, child_id: str, now: datetime) -> None:
        """Hide a child from lists and screening; its history is kept."""
        self.col.update_one(
            {"_id": oid(child_id, "child")}, {"$set": {"status": "archived", "archivedAt": now}}
        )

    def set_last_screening(self, child_id: str, summary: dict[str, Any]) -> None:
        summary = {**summary, "nextDueAt": to_datetime(summary.get("nextDueAt"))}
        self.col.update_one({"_id": oid(child_id, "child")}, {"$set": {"lastScreening": summary}})

    def set_referral(self, user_id: str, child_id: str, visited: bool, at: datetime) -> None:
        self.col.update_one(
            {"_id": oid(child_id, "child"), "userId": oid(user_id, "user")},
            {"$set": {"referral": {"visited": visited, "answeredAt": at}}},
        )

    def scheduled(self) -> Any:
        """Every active child with a result: what the reminder schedule is rebuilt from
        when Redis lost it (a scan of the collection, that once)."""
        return (
            out(d, DATES)
            for d in self.col.find(
                {"status": "active", "lastScreening": {"$ne": None}},
                {"userId": 1, "name": 1, "lastScreening": 1},
            )
        )

    def at_risk(
        self, levels: list[str], limit: int, after: str | None = None
    ) -> list[dict[str, Any]]:
        """Active children whose latest screening has one of `levels`, by id (cursor = last id)."""
        query: dict[str, Any] = {"lastScreening.riskLevel": {"$in": levels}, "status": "active"}
        if after:
            query["_id"] = {"$gt": oid(after, "cursor")}
        cursor = self.col.find(query).sort("_id", ASCENDING).limit(limit)
        return [out(d, DATES) for d in cursor]

    def rescreens_due_before(
        self, when: datetime, limit: int, actions: list[str]
    ) -> list[dict[str, Any]]:
        """Active children whose next screening was due before `when`, most overdue first."""
        cursor = (
            self.col.find(
                {
                    "lastScreening.nextDueAt": {"$lt": when},
                    "lastScreening.nextAction": {"$in": actions},
                    "status": "active",
                }
            )
            .sort([("lastScreening.nextDueAt", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [out(d, DATES) for d in cursor]

    def count_due_before(self, when: datetime, actions: list[str]) -> int:
        return self.col.count_documents(
            {
                "lastScreening.nextDueAt": {"$lt": when},
                "lastScreening.nextAction": {"$in": actions},
                "status": "active",
            }
        )

    def count_by_risk(self) -> dict[str, int]:
        """Active children per latest risk level (`none` for never screened)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"status": "active"}},
            {"$group": {"_id": "$lastScreening.riskLevel", "n": {"$sum": 1}}},
        ]
        counts = {"low": 0, "medium": 0, "high": 0, "none": 0}
        for row in self.col.aggregate(pipeline):
            counts[row["_id"] or "none"] = row["n"]
        return counts

    def newest_first(self, user_id: str) -> list[dict[str, Any]]:
        cursor = self.col.find({"userId": oid(user_id, "user")}).sort("createdAt", DESCENDING)
        return [out(d, DATES) for d in cursor]
