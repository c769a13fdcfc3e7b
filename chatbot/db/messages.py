"""The message log, with the status lifecycle documented in docs/api.md.

inbound:  received -> handled
outbound: queued -> sent -> delivered, or failed (with failureReason)
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from chatbot.db.documents import oid, out
from chatbot.errors import ApiError

HISTORY_FIELDS = {
    "direction": 1,
    "text": 1,
    "status": 1,
    "clientMessageId": 1,
    "replyTo": 1,
    "quickReplies": 1,
    "createdAt": 1,
}


class DuplicateMessageError(Exception):
    """An inbound message with this clientMessageId already exists."""


def encode_cursor(created_at: datetime, message_id: str) -> str:
    millis = int(created_at.timestamp() * 1000)
    return base64.urlsafe_b64encode(f"{millis}:{message_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, ObjectId]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        millis, message_id = raw.split(":", 1)
        return datetime.fromtimestamp(int(millis) / 1000, UTC), ObjectId(message_id)
    except (ValueError, UnicodeDecodeError, TypeError):
        raise ApiError("The cursor is not valid.", code="invalid_cursor") from None


class MessageRepository:
    def __init__(self, db: Database) -> None:
        self.col = db["messages"]

    def insert_inbound(
        self, user_id: str, text: str, client_message_id: str, now: datetime
    ) -> dict[str, Any]:
        doc = {
            "userId": oid(user_id, "user"),
            "direction": "inbound",
            "text": text,
            "clientMessageId": client_message_id,
            "status": "received",
            "createdAt": now,
        }
        try:
            self.col.insert_one(doc)
        except DuplicateKeyError:
            raise DuplicateMessageError(client_message_id) from None
        return out(doc)  # type: ignore[return-value]

    def inbound_by_client_id(self, user_id: str, client_message_id: str) -> dict[str, Any] | None:
        return out(
            self.col.find_one(
                {"userId": oid(user_id, "user"), "clientMessageId": client_message_id}
            )
        )

    def replies_to(self, inbound_id: str) -> list[dict[str, Any]]:
        cursor = self.col.find({"replyTo": oid(inbound_id, "message")}).sort("createdAt", 1)
        return [out(d) for d in cursor]  # type: ignore[misc]

    def insert_outbound(
        self, user_id: str, inbound_id: str, replies: list[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        # A millisecond apart, so history orders a turn's replies after its inbound message.
        docs = [
            {
                "userId": oid(user_id, "user"),
                "direction": "outbound",
                "text": reply["text"],
                "quickReplies": reply.get("quickReplies", []),
                "replyTo": oid(inbound_id, "message"),
                "status": "queued",
                "createdAt": now + timedelta(milliseconds=n + 1),
            }
            for n, reply in enumerate(replies)
        ]
        if docs:
            self.col.insert_many(docs)
        return [out(d) for d in docs]  # type: ignore[misc]

    def insert_failed(self, user_id: str, inbound_id: str, reason: str, now: datetime) -> None:
        """Record that no reply could be produced for an inbound message, and why."""
        self.col.insert_one(
            {
                "userId": oid(user_id, "user"),
                "direction": "outbound",
                "text": "",
                "replyTo": oid(inbound_id, "message"),
                "status": "failed",
                "failureReason": reason,
                "createdAt": now,
            }
        )

    def set_status(self, message_ids: list[str], status: str, **extra: Any) -> None:
        if message_ids:
            ids = [oid(i, "message") for i in message_ids]
            self.col.update_many({"_id": {"$in": ids}}, {"$set": {"status": status, **extra}})

    def mark_delivered(self, user_id: str, message_ids: list[str], now: datetime) -> int:
        """The client confirms it showed these replies; only the user's own sent ones move."""
        ids = [oid(i, "message") for i in message_ids]
        result = self.col.update_many(
            {
                "_id": {"$in": ids},
                "userId": oid(user_id, "user"),
                "direction": "outbound",
                "status": "sent",
            },
            {"$set": {"status": "delivered", "deliveredAt": now}},
        )
        return result.modified_count

    def recent(
        self, user_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The seed's optimised read: a user's messages, newest first, projected.

        Returns (page, next cursor or None). The cursor is (createdAt, _id) of the
        last message, so pages stay stable while new messages arrive.
        """
        query: dict[str, Any] = {"userId": oid(user_id, "user")}
        if cursor:
            created, last_id = decode_cursor(cursor)
            query["$or"] = [
                {"createdAt": {"$lt": created}},
                {"createdAt": created, "_id": {"$lt": last_id}},
            ]
        docs = list(
            self.col.find(query, HISTORY_FIELDS)
            .sort([("createdAt", DESCENDING), ("_id", DESCENDING)])
            .limit(limit + 1)
        )
        page = [out(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = docs[limit - 1]
            next_cursor = encode_cursor(last["createdAt"], str(last["_id"]))
        return page, next_cursor  # type: ignore[return-value]
