"""Conversation sessions: one per user, expiring after an idle time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database

from chatbot.db.documents import oid


class SessionRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["sessions"]

    def active(self, user_id: str, now: datetime) -> dict[str, Any] | None:
        """The user's conversation state, or None when missing or expired.

        Expiry is checked here at query time: FerretDB has no TTL indexes, and even
        MongoDB's TTL monitor runs only once a minute.
        """
        doc = self.col.find_one({"userId": oid(user_id, "user"), "expiresAt": {"$gt": now}})
        return doc["conversation"] if doc else None

    def save(
        self, user_id: str, conversation: dict[str, Any], expires_at: datetime, now: datetime
    ) -> None:
        self.col.update_one(
            {"userId": oid(user_id, "user")},
            {
                "$set": {
                    "conversation": conversation,
                    "activeChildId": conversation.get("childId"),
                    "questionnaireId": conversation.get("questionnaireId"),
                    "expiresAt": expires_at,
                    "updatedAt": now,
                }
            },
            upsert=True,
        )

    def delete_expired(self, now: datetime) -> int:
        return self.col.delete_many({"expiresAt": {"$lte": now}}).deleted_count
