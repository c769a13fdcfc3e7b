"""The message log, with the status lifecycle documented in docs/api.md.

inbound:  received -> handled, or failed (with failureReason)
outbound: sent -> delivered, or failed (with failureReason); a WhatsApp reply
          queued -> sent -> delivered -> read, or failed (with Meta's error)

A chat turn only inserts here: the inbound message first (its unique
(userId, clientMessageId) is the turn's idempotency), then its replies in their
final status in one insert_many. Every document of a turn carries `turn` (the
clientMessageId), so a retried turn finds all of them in one query. The stored
status of an inbound message is settled later, in batches, by the sweeper; reads
report its effective status (handled as soon as a reply exists). Delivery receipts
are logged the same way (chatbot/db/receipts.py) and reads report them too.
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
from chatbot.db.receipts import ReceiptLog
from chatbot.errors import DuplicateMessageError, InvalidCursorError

HISTORY_FIELDS = {
    "direction": 1,
    "text": 1,
    "status": 1,
    "clientMessageId": 1,
    "replyTo": 1,
    "quickReplies": 1,
    "createdAt": 1,
    "failureReason": 1,
    "waError": 1,
}


def encode_cursor(created_at: datetime, message_id: str) -> str:
    millis = int(created_at.timestamp() * 1000)
    return base64.urlsafe_b64encode(f"{millis}:{message_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, ObjectId]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        millis, message_id = raw.split(":", 1)
        return datetime.fromtimestamp(int(millis) / 1000, UTC), ObjectId(message_id)
    except (ValueError, UnicodeDecodeError, TypeError):
        raise InvalidCursorError("The cursor is not valid.") from None


def next_cursor(found: list[dict[str, Any]], limit: int) -> str | None:
    """The cursor after a page, given up to `limit + 1` messages newest first."""
    if len(found) <= limit:
        return None
    last = found[limit - 1]
    return encode_cursor(last["createdAt"], last["id"])


class MessageRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["messages"]
        self.receipts = ReceiptLog(db)

    def insert_inbound(
        self, user_id: str, text: str, client_message_id: str, now: datetime
    ) -> dict[str, Any]:
        doc = {
            "userId": oid(user_id, "user"),
            "direction": "inbound",
            "text": text,
            "clientMessageId": client_message_id,
            "turn": client_message_id,
            "status": "received",
            "createdAt": now,
        }
        try:
            self.col.insert_one(doc)
        except DuplicateKeyError:
            raise DuplicateMessageError(client_message_id) from None
        return out(doc)

    def turn(
        self, user_id: str, client_message_id: str
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """(the inbound message, its replies oldest first) of one turn, in one query."""
        docs = [
            out(d)
            for d in self.col.find(
                {"userId": oid(user_id, "user"), "turn": client_message_id}
            ).sort("createdAt", 1)
        ]
        inbound = next((d for d in docs if d["direction"] == "inbound"), None)
        replies = [d for d in docs if d["direction"] == "outbound"]
        return inbound, replies

    def insert_outbound(
        self,
        user_id: str,
        inbound_id: str,
        client_message_id: str,
        replies: list[dict[str, Any]],
        now: datetime,
        queued: bool = False,
        ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Store a turn's replies: `sent` (they go out in the HTTP response), or `queued`
        for a channel that delivers them later (WhatsApp: chatbot/db/whatsapp.py), whose
        `statusRank` then only moves forward. `ids` (from `new_ids`) when the caller
        had to name the replies before storing them."""
        # A millisecond apart, so history orders a turn's replies after its inbound message.
        docs = [
            {
                "userId": oid(user_id, "user"),
                "direction": "outbound",
                "text": reply["text"],
                "quickReplies": reply.get("quickReplies", []),
                "replyTo": oid(inbound_id, "message"),
                "turn": client_message_id,
                "status": "queued" if queued else "sent",
                "createdAt": now + timedelta(milliseconds=n + 1),
            }
            | ({"statusRank": 0} if queued else {"sentAt": now})
            | ({"_id": oid(ids[n], "message")} if ids else {})
            for n, reply in enumerate(replies)
        ]
        if docs:
            self.col.insert_many(docs)
        return [out(d) for d in docs]

    @staticmethod
    def new_ids(count: int) -> list[str]:
        """Ids for replies not stored yet (ObjectIds are made by the client anyway)."""
        return [str(ObjectId()) for _ in range(count)]

    def insert_notification(
        self, user_id: str, message_id: str, text: str, kind: str, now: datetime
    ) -> dict[str, Any]:
        """Store a message the service starts (a reminder), not a reply to one: `queued`
        for the channel that delivers it, under the id the channel was given."""
        doc = {
            "_id": oid(message_id, "message"),
            "userId": oid(user_id, "user"),
            "direction": "outbound",
            "text": text,
            "quickReplies": [],
            "notification": kind,
            "status": "queued",
            "statusRank": 0,
            "createdAt": now,
        }
        self.col.insert_one(doc)
        return out(doc)

    def insert_failed(
        self, user_id: str, inbound_id: str, client_message_id: str, reason: str, now: datetime
    ) -> None:
        """Record that no reply could be produced for an inbound message, and why."""
        self.col.insert_one(
            {
                "userId": oid(user_id, "user"),
                "direction": "outbound",
                "text": "",
                "replyTo": oid(inbound_id, "message"),
                "turn": client_message_id,
                "status": "failed",
                "failureReason": reason,
                "createdAt": now,
            }
        )

    def mark_delivered(self, user_id: str, message_ids: list[str], now: datetime) -> int:
        """The client confirms it showed these replies; only the user's own sent ones move.

        Replies already confirmed by a logged receipt (not applied yet) are not counted.
        """
        logged = self.receipts.delivered_among(user_id, message_ids)
        ids = [oid(i, "message") for i in message_ids if i not in logged]
        if not ids:
            return 0
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
        found = [out(d) for d in docs]
        for message in found:  # Meta's error on a failed WhatsApp reply, as history names it
            if "waError" in message:
                message["error"] = message.pop("waError")
        self._settle_in_page(found)
        self._deliver_in_page(user_id, found)
        return found[:limit], next_cursor(found, limit)

    def _deliver_in_page(self, user_id: str, page: list[dict[str, Any]]) -> None:
        """Report replies confirmed by a receipt the sweeper has not applied as delivered."""
        sent = {m["id"]: m for m in page if m["direction"] == "outbound" and m["status"] == "sent"}
        for message_id in self.receipts.delivered_among(user_id, list(sent)):
            sent[message_id]["status"] = "delivered"

    def _settle_in_page(self, page: list[dict[str, Any]]) -> None:
        """Report inbound messages whose replies exist as handled (the sweeper stores it)."""
        waiting = {
            m["id"]: m for m in page if m["direction"] == "inbound" and m["status"] == "received"
        }
        if not waiting:
            return
        # find, not distinct: FerretDB's distinct refuses the maxTimeMS a deadline adds.
        answered = {
            d["replyTo"]
            for d in self.col.find(
                {"replyTo": {"$in": [ObjectId(i) for i in waiting]}, "status": {"$ne": "failed"}},
                {"replyTo": 1, "_id": 0},
            )
        }
        for reply_to in answered:
            waiting[str(reply_to)]["status"] = "handled"
