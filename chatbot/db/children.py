"""Children of a user, with a summary of their latest screening for health workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from chatbot.db.documents import oid, out, to_datetime

DATES = ("birthDate",)
ROSTER = {
    "userId": 1, "name": 1, "birthDate": 1, "sex": 1, "gestationalWeeks": 1,
    "posyandu": 1, "lastScreening": 1, "referral": 1, "lastContact": 1,
}  # fmt: skip


def _scoped(query: dict[str, Any], posyandu: list[str] | None) -> dict[str, Any]:
    """A staff query limited to the children of these posyandu (None: every child).
    One posyandu as an equality: FerretDB pushes an equality down to PostgreSQL, not `$in`
    (docs/worker.md, "Cost"), so a worker's usual query does not grow with the system."""
    if posyandu is None:
        return query
    return {**query, "posyandu": posyandu[0] if len(posyandu) == 1 else {"$in": posyandu}}


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
        posyandu: str | None = None,
    ) -> dict[str, Any]:
        doc = {
            "userId": oid(user_id, "user"),
            "name": name,
            "birthDate": to_datetime(birthDate),
            "sex": sex,
            "gestationalWeeks": gestationalWeeks,
            "status": "active",
            "lastScreening": None,
            "posyandu": posyandu,  # the parent's, when they linked one (db/posyandu.py)
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
        self,
        levels: list[str],
        limit: int,
        after: str | None = None,
        posyandu: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Active children whose latest screening has one of `levels`, by id (cursor = last id);
        of these posyandu only (None: all, for an admin)."""
        query = _scoped({"lastScreening.riskLevel": {"$in": levels}, "status": "active"}, posyandu)
        if after:
            query["_id"] = {"$gt": oid(after, "cursor")}
        cursor = self.col.find(query).sort("_id", ASCENDING).limit(limit)
        return [out(d, DATES) for d in cursor]

    def rescreens_due_before(
        self, when: datetime, limit: int, actions: list[str], posyandu: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Active children whose next screening was due before `when`, most overdue first."""
        cursor = (
            self.col.find(
                _scoped(
                    {
                        "lastScreening.nextDueAt": {"$lt": when},
                        "lastScreening.nextAction": {"$in": actions},
                        "status": "active",
                    },
                    posyandu,
                )
            )
            .sort([("lastScreening.nextDueAt", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [out(d, DATES) for d in cursor]

    def count_due_before(
        self, when: datetime, actions: list[str], posyandu: list[str] | None = None
    ) -> int:
        return self.col.count_documents(
            _scoped(
                {
                    "lastScreening.nextDueAt": {"$lt": when},
                    "lastScreening.nextAction": {"$in": actions},
                    "status": "active",
                },
                posyandu,
            )
        )

    def count_by_risk(self, posyandu: list[str] | None = None) -> dict[str, int]:
        """Active children per latest risk level (`none` for never screened)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": _scoped({"status": "active"}, posyandu)},
            {"$group": {"_id": "$lastScreening.riskLevel", "n": {"$sum": 1}}},
        ]
        counts = {"low": 0, "medium": 0, "high": 0, "none": 0}
        for row in self.col.aggregate(pipeline):
            counts[row["_id"] or "none"] = row["n"]
        return counts

    def newest_first(self, user_id: str) -> list[dict[str, Any]]:
        cursor = self.col.find({"userId": oid(user_id, "user")}).sort("createdAt", DESCENDING)
        return [out(d, DATES) for d in cursor]

    def link_posyandu(self, user_id: str, code: str) -> int:
        """The parent's active children join the posyandu (a family goes to one), and so
        do their screenings (the posyandu's monthly export reads them by posyandu)."""
        result = self.col.update_many(
            {"userId": oid(user_id, "user"), "status": "active"}, {"$set": {"posyandu": code}}
        )
        self.col.database["questionnaires"].update_many(
            {"userId": oid(user_id, "user")}, {"$set": {"posyandu": code}}
        )
        return result.matched_count

    def of_posyandu(self, codes: list[str]) -> list[dict[str, Any]]:
        """The active children of these posyandu, by id (the health workers' month list).
        One equality query per posyandu: its cost follows the posyandu, not the system."""
        found = [
            out(d, DATES)
            for code in codes
            for d in self.col.find({"posyandu": code, "status": "active"}, ROSTER)
        ]
        return sorted(found, key=lambda c: c["id"])

    def get_in_posyandu(self, child_id: str, codes: list[str] | None) -> dict[str, Any] | None:
        """The active child if it is in one of `codes` (None: any posyandu, an admin):
        the health worker's scope is part of the query, as ownership is for parents."""
        query: dict[str, Any] = {"_id": oid(child_id, "child"), "status": "active"}
        if codes is not None:
            query["posyandu"] = {"$in": codes}
        return out(self.col.find_one(query, ROSTER), DATES)

    def correct(
        self,
        child_id: str,
        birth_date: Any,
        gestational_weeks: int | None,
        next_due: Any = None,
    ) -> None:
        """A corrected birth date or gestation; `next_due` the routine date it moves to."""
        fields: dict[str, Any] = {
            "birthDate": to_datetime(birth_date),
            "gestationalWeeks": gestational_weeks,
        }
        if next_due is not None:
            fields["lastScreening.nextDueAt"] = to_datetime(next_due)
        self.col.update_one({"_id": oid(child_id, "child"), "status": "active"}, {"$set": fields})
