"""Delivery receipts, logged as they arrive and applied to `messages` by the sweeper.

The web page confirms every turn's replies (`POST /chat/receipts`). Updating `messages`
there would cost a scan of the whole log per receipt on FerretDB, which uses no index,
so a receipt for replies the user's cached first history page vouches for is one insert
here instead (chatbot/chat/service.py). The sweeper applies the log in batches (one
read and one update of `messages` per batch, whatever the number of receipts) and
deletes what it applied; until then reads of `messages` report the logged replies as
delivered (`delivered_among`). Applying twice, or two sweepers at once, changes nothing
twice: the update only moves replies that are still `sent`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database

from chatbot.db.documents import oid


class ReceiptLog:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["receipts"]
        self.messages = db["messages"]

    def record(self, user_id: str, message_ids: list[str], now: datetime) -> None:
        """Log that the user's client showed these replies (one insert)."""
        self.col.insert_one(
            {
                "userId": oid(user_id, "user"),
                "messageIds": [oid(i, "message") for i in message_ids],
                "receivedAt": now,
            }
        )

    def delivered_among(self, user_id: str, message_ids: list[str]) -> set[str]:
        """Which of these messages the user confirmed in a receipt not applied yet."""
        if not message_ids:
            return set()
        wanted = {oid(i, "message") for i in message_ids}
        found = self.col.find(
            {"userId": oid(user_id, "user"), "messageIds": {"$in": list(wanted)}},
            {"messageIds": 1, "_id": 0},
        )
        return {str(i) for receipt in found for i in receipt["messageIds"] if i in wanted}

    def apply(self, batch_size: int = 500) -> int:
        """Move the logged replies from `sent` to `delivered`; answer how many moved.

        `deliveredAt` is the newest receipt's time of the batch the reply was applied
        with: receipts wait at most one sweep, and one update serves the whole batch.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        moved = 0
        while True:
            receipts = list(self.col.find({}).sort("_id", 1).limit(batch_size))
            if not receipts:
                return moved
            owner: dict[Any, Any] = {}
            for receipt in receipts:
                for message_id in receipt["messageIds"]:
                    owner[message_id] = receipt["userId"]
            # Only the user's own replies move, as the old direct update checked.
            own = [
                d["_id"]
                for d in self.messages.find(
                    {"_id": {"$in": list(owner)}, "direction": "outbound", "status": "sent"},
                    {"userId": 1},
                )
                if d["userId"] == owner[d["_id"]]
            ]
            if own:
                moved += self.messages.update_many(
                    {"_id": {"$in": own}, "status": "sent"},
                    {
                        "$set": {
                            "status": "delivered",
                            "deliveredAt": max(r["receivedAt"] for r in receipts),
                        }
                    },
                ).modified_count
            self.col.delete_many({"_id": {"$in": [r["_id"] for r in receipts]}})
            if len(receipts) < batch_size:
                return moved
