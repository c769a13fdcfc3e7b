"""One-time codes proving a phone number belongs to the person typing it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database
from pymongo.errors import PyMongoError

from chatbot.db.documents import oid, out


class VerificationRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["verifications"]

    def create(
        self, challenge_id: str, user_id: str, code_hash: str, expires_at: datetime, now: datetime
    ) -> None:
        doc = {
            "_id": challenge_id,
            "userId": oid(user_id, "user"),
            "codeHash": code_hash,
            "attempts": 0,
            "used": False,
            "expiresAt": expires_at,
            "createdAt": now,
        }
        self.col.insert_one(doc)

    def count_since(self, user_id: str, since: datetime) -> int:
        return self.col.count_documents(
            {"userId": oid(user_id, "user"), "createdAt": {"$gte": since}}
        )

    def get_live(self, challenge_id: str, now: datetime) -> dict[str, Any] | None:
        doc = self.col.find_one({"_id": challenge_id, "used": False, "expiresAt": {"$gt": now}})
        return out(doc)

    def count_attempt(self, challenge_id: str, attempts: int) -> None:
        # $set, not $inc: FerretDB's $inc is not atomic. Attempts on one challenge are
        # also rate limited per client, so a lost increment costs at most one extra try.
        self.col.update_one({"_id": challenge_id}, {"$set": {"attempts": attempts}})

    def consume(self, challenge_id: str) -> bool:
        """Mark used; True only for the caller that flipped it (a code works once)."""
        result = self.col.update_one({"_id": challenge_id, "used": False}, {"$set": {"used": True}})
        return result.modified_count == 1

    def delete_expired(self, now: datetime) -> int:
        try:
            return self.col.delete_many({"expiresAt": {"$lte": now}}).deleted_count
        except PyMongoError:
            return 0
