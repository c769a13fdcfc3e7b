"""Archiving old messages: moved from `messages` to `messages_archive` in verified batches.

FerretDB has no transactions, so a batch is copy -> verify -> delete, each step safe to
repeat after a crash at any point:

1. read up to `batch_size` messages created before the cutoff, in `_id` order;
2. insert them into the archive, unordered, ignoring duplicate-key errors (documents an
   earlier, interrupted run had already copied);
3. read the batch back from the archive and compare every copy with its source; a stale
   copy (the message changed after an interrupted run copied it) is replaced and read again;
4. delete from `messages` only the documents whose copy is identical, and only while their
   `status` (the one field changed after insert) is still the copied one: a message that
   changed meanwhile stays in `messages` and the next run copies it again.

A crash after 2 or 3 leaves sources still in `messages`: the next run copies them again
(duplicates ignored) and deletes them. Nothing is deleted that is not verified in the
archive, and a batch that cannot be fully verified stops the run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pymongo.database import Database
from pymongo.errors import BulkWriteError

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000


class MessageArchive:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.messages = db["messages"]
        self.archive = db["messages_archive"]

    def archive_before(self, cutoff: datetime, batch_size: int = 500) -> dict[str, int]:
        """Move messages created before `cutoff` to the archive, `batch_size` at a time.

        Returns counts: `moved` (deleted from `messages` after verification), `verified`
        (found identical in the archive), `unverified` (not found or not identical: left in
        `messages`, and the run stopped), `batches`.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        report = {"moved": 0, "verified": 0, "unverified": 0, "batches": 0}
        last_id = None
        while True:
            query: dict[str, Any] = {"createdAt": {"$lt": cutoff}}
            if last_id is not None:
                # Messages left behind (changed meanwhile) wait for the next run.
                query["_id"] = {"$gt": last_id}
            docs = list(self.messages.find(query).sort("_id", 1).limit(batch_size))
            if not docs:
                return report
            last_id = docs[-1]["_id"]
            report["batches"] += 1
            self._copy(docs)
            verified = self._verified(docs)
            report["verified"] += len(verified)
            report["moved"] += self._delete(verified)
            if len(verified) < len(docs):
                report["unverified"] += len(docs) - len(verified)
                log.warning(
                    "archive: %d of %d messages not verified in the archive; stopping",
                    len(docs) - len(verified),
                    len(docs),
                )
                return report
            if len(docs) < batch_size:
                return report

    def _copy(self, docs: list[dict[str, Any]]) -> None:
        try:
            self.archive.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e["code"] != DUPLICATE_KEY]
            if others:
                raise

    def _verified(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The documents of `docs` whose archived copy is identical (stale copies replaced)."""
        copies = self._copies(docs)
        stale = [d for d in docs if d["_id"] in copies and copies[d["_id"]] != d]
        for doc in stale:
            self.archive.replace_one({"_id": doc["_id"]}, doc)
        if stale:
            copies = self._copies(docs)
        return [d for d in docs if copies.get(d["_id"]) == d]

    def _copies(self, docs: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        ids = [d["_id"] for d in docs]
        return {c["_id"]: c for c in self.archive.find({"_id": {"$in": ids}})}

    def _delete(self, docs: list[dict[str, Any]]) -> int:
        """Delete the sources whose status is still the archived one (one query per status)."""
        by_status: dict[Any, list[Any]] = {}
        for doc in docs:
            by_status.setdefault(doc.get("status"), []).append(doc["_id"])
        deleted = 0
        for status, ids in by_status.items():
            deleted += self.messages.delete_many(
                {"_id": {"$in": ids}, "status": status}
            ).deleted_count
        return deleted
