"""Question banks imported by operators (the shipped bank lives in chatbot/data)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database


class BankRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["question_banks"]

    def save(self, version: str, data: dict[str, Any], now: datetime, activate: bool) -> None:
        """Store a validated bank under its version; optionally make it the active one."""
        if activate:
            self.col.update_many({"active": True}, {"$set": {"active": False}})
        self.col.update_one(
            {"_id": version},
            {"$set": {"data": data, "importedAt": now, "active": activate}},
            upsert=True,
        )

    def get(self, version: str) -> dict[str, Any] | None:
        doc = self.col.find_one({"_id": version})
        return doc["data"] if doc else None

    def active_version(self) -> str | None:
        doc = self.col.find_one({"active": True}, {"_id": 1}, sort=[("importedAt", DESCENDING)])
        return doc["_id"] if doc else None
