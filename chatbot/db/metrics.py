"""Saved metric snapshots (`metrics`), alerts (`alerts`) and the database command timer.

The snapshots and alerts are written by each instance's collector (chatbot/collector.py)
and read by the admin API. Both collections are small and bounded: snapshots older than
METRICS_RETENTION_HOURS and resolved alerts older than ALERT_RETENTION_DAYS are deleted
by the collector (FerretDB has no TTL index).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, monitoring
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from chatbot.db.documents import out

log = logging.getLogger(__name__)

# Command names kept as metric labels; anything else is counted as "other" so that a
# stray command cannot add series without bound.
KNOWN_COMMANDS = frozenset(
    (
        "find", "insert", "update", "delete", "findAndModify", "aggregate", "count",
        "distinct", "getMore", "killCursors", "createIndexes", "listIndexes", "ping",
        "create", "drop", "listCollections", "endSessions",
    )
)  # fmt: skip


class CommandTimer(monitoring.CommandListener):
    """PyMongo command monitoring: tells `observe(command, seconds, error)` after each command.

    `error` is the failure's code name (or "failed") for a failed command, None otherwise.
    Runs on the thread that ran the command, so `observe` must be quick.
    """

    def __init__(self, observe: Callable[[str, float, str | None], None]) -> None:
        self.observe = observe

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.observe(_name(event.command_name), event.duration_micros / 1e6, None)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        failure = event.failure or {}
        self.observe(
            _name(event.command_name),
            event.duration_micros / 1e6,
            str(failure.get("codeName") or "failed"),
        )


def _name(command: str) -> str:
    return command if command in KNOWN_COMMANDS else "other"


class MetricsRepository:
    """The instances' snapshots, one document per instance per interval."""

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["metrics"]

    def save(self, snapshot: dict[str, Any]) -> str:
        return str(self.col.insert_one(dict(snapshot)).inserted_id)

    def latest_per_instance(self, since: datetime) -> list[dict[str, Any]]:
        """The newest snapshot of every instance that saved one at `since` or later."""
        latest: dict[str, dict[str, Any]] = {}
        for doc in self.col.find({"timestamp": {"$gte": since}}).sort("timestamp", DESCENDING):
            latest.setdefault(doc["instance"], doc)
        return [out(doc) for _, doc in sorted(latest.items())]

    def history(
        self, start: datetime, end: datetime, instance: str | None = None, limit: int = 5000
    ) -> list[dict[str, Any]]:
        """Snapshots from `start` to `end` (inclusive), oldest first, at most `limit`."""
        query: dict[str, Any] = {"timestamp": {"$gte": start, "$lte": end}}
        if instance:
            query["instance"] = instance
        # Newest `limit` first, then put back in time order.
        docs = list(self.col.find(query).sort("timestamp", DESCENDING).limit(limit))
        docs.reverse()
        return [out(doc) for doc in docs]

    def delete_before(self, cutoff: datetime) -> int:
        return self.col.delete_many({"timestamp": {"$lt": cutoff}}).deleted_count


class AlertRepository:
    """Alerts with an open/resolved state; at most one open alert per kind and instance.

    An open alert carries `openKey` ("kind/instance") under a unique index; resolving it
    removes the key, so the index only ever holds the open ones.
    """

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["alerts"]

    @staticmethod
    def open_key(kind: str, instance: str) -> str:
        return f"{kind}/{instance}"

    def find_open(self, kind: str, instance: str) -> dict[str, Any] | None:
        return out(self.col.find_one({"openKey": self.open_key(kind, instance)}))

    def open(self, alert: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store `alert` (kind, instance, openedAt, ...) as open; (alert, True) if new.

        When one is already open for its kind and instance, that one is answered, (it, False).
        """
        doc = {
            **alert,
            "_id": ObjectId(),
            "state": "open",
            "openKey": self.open_key(alert["kind"], alert["instance"]),
        }
        try:
            self.col.insert_one(doc)
        except DuplicateKeyError:
            existing = self.find_open(alert["kind"], alert["instance"])
            if existing is not None:
                return existing, False
            raise
        return out(doc), True

    def still_open(self, alert_id: str, now: datetime, value: float, details: Any) -> None:
        """The condition holds again: note when, the latest value and the peak."""
        self.col.update_one(
            {"_id": ObjectId(alert_id), "state": "open"},
            {
                "$set": {"lastSeenAt": now, "value": value, "details": details},
                "$max": {"peak": value},
            },
        )

    def resolve(self, alert_id: str, now: datetime, value: float | None) -> dict[str, Any] | None:
        """Mark the alert resolved; answer it, or None if it was not open."""
        found = self.col.find_one_and_update(
            {"_id": ObjectId(alert_id), "state": "open"},
            {
                "$set": {"state": "resolved", "resolvedAt": now, "clearedValue": value},
                "$unset": {"openKey": ""},
            },
            return_document=True,
        )
        return out(found)

    def list(
        self,
        state: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        instance: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Alerts newest first: open ones (any age) or those opened in [since, until]."""
        query: dict[str, Any] = {}
        if state:
            query["state"] = state
        if instance:
            query["instance"] = instance
        opened: dict[str, Any] = {}
        if since is not None:
            opened["$gte"] = since
        if until is not None:
            opened["$lte"] = until
        if opened:
            query["openedAt"] = opened
        docs = self.col.find(query, {"openKey": 0}).sort("openedAt", DESCENDING).limit(limit)
        return [out(doc) for doc in docs]

    def delete_resolved_before(self, cutoff: datetime) -> int:
        return self.col.delete_many(
            {"state": "resolved", "resolvedAt": {"$lt": cutoff}}
        ).deleted_count
