"""Settling inbound messages: the sweeper, not the chat turn, updates their stored status.

The chat turn only inserts: an inbound message as `received`, then its replies (outbound,
`replyTo` = the inbound's id). Once a message is older than the settle delay its turn is over
(finished or crashed), so:

- `received` with a reply -> `handled`, `handledAt` = its first reply's `createdAt`;
- `received` without one  -> `failed`, `failureReason` "no_reply_after_crash", `failedAt`;
- `failed` by the above, with a reply now (the client retried later) -> `handled`.

A reply is an outbound message with that `replyTo` whose status is not `failed` (a `failed`
outbound record only says why no reply was produced). Every update is conditional on the
status read, so running twice, or two sweepers at once, changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

NO_REPLY = "no_reply_after_crash"


class MessageSettler:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["messages"]

    def settle(self, before: datetime, now: datetime, batch_size: int = 500) -> dict[str, int]:
        """Settle inbound messages created before `before`; return the counts changed."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        report = {"handled": 0, "failed": 0, "recovered": 0}
        received = {"direction": "inbound", "status": "received", "createdAt": {"$lt": before}}
        for ids in self._batches(received, batch_size):
            first = self._first_replies(ids)
            report["handled"] += self._mark_handled(ids, first, {"status": "received"})
            lost = [i for i in ids if i not in first]
            if lost:
                report["failed"] += self.col.update_many(
                    {"_id": {"$in": lost}, "status": "received"},
                    {"$set": {"status": "failed", "failureReason": NO_REPLY, "failedAt": now}},
                ).modified_count
        crashed = {"direction": "inbound", "status": "failed", "failureReason": NO_REPLY}
        for ids in self._batches(crashed, batch_size):
            first = self._first_replies(ids)
            report["recovered"] += self._mark_handled(
                ids, first, {"status": "failed", "failureReason": NO_REPLY}
            )
        return report

    def _batches(self, query: dict[str, Any], batch_size: int) -> Iterator[list[Any]]:
        """Ids matching `query`, `batch_size` at a time in `_id` order (each seen once)."""
        last_id = None
        while True:
            q = dict(query) if last_id is None else {**query, "_id": {"$gt": last_id}}
            ids = [d["_id"] for d in self.col.find(q, {"_id": 1}).sort("_id", 1).limit(batch_size)]
            if not ids:
                return
            yield ids
            if len(ids) < batch_size:
                return
            last_id = ids[-1]

    def _first_replies(self, ids: list[Any]) -> dict[Any, datetime]:
        """inbound id -> `createdAt` of its first reply, for the inbound ids that have one."""
        first: dict[Any, datetime] = {}
        replies = self.col.find(
            {"replyTo": {"$in": ids}, "direction": "outbound", "status": {"$ne": "failed"}},
            {"replyTo": 1, "createdAt": 1},
        )
        for reply in replies:
            key, created = reply["replyTo"], reply["createdAt"]
            if key not in first or created < first[key]:
                first[key] = created
        return first

    def _mark_handled(
        self, ids: list[Any], first: dict[Any, datetime], expected: dict[str, Any]
    ) -> int:
        ops = [
            UpdateOne(
                {"_id": i, **expected},
                {
                    "$set": {"status": "handled", "handledAt": first[i]},
                    "$unset": {"failureReason": "", "failedAt": ""},
                },
            )
            for i in ids
            if i in first
        ]
        return self.col.bulk_write(ops, ordered=False).modified_count if ops else 0
