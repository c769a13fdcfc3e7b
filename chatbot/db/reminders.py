"""The reminders' MongoDB side: what changed in the schedule, and what was sent.

The schedule itself (who is due when) lives in a Redis sorted set, so that finding what
is due costs what is due, not the number of children (chatbot/chat/reminders.py); these
two collections are what it is kept and rebuilt from, and neither is read by a scan that
grows with the children:

- `reminder_changes`: small, insert-only on the turn's side. A completed screening or an
  archived child adds one (the child, its parent, what is now due or nothing); the
  scheduler applies them to Redis and deletes them. Durable, so a Redis outage at the
  moment of the change loses nothing.
- `reminders_sent`: insert-only, one document per reminder sent, its `_id`
  `<child>:<due date>:<stage>` (1 the reminder, 2 its one follow-up). The insert is the
  claim: a second scheduler, or a run after a crash, meets the unique `_id` and sends
  nothing. Claimed before the send, so a crash between the two loses that reminder
  (at most once, never twice).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError


class ReminderChanges:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["reminder_changes"]

    def record(
        self,
        child_id: str,
        user_id: str,
        name: str,
        due: dict[str, str] | None,
        now: datetime,
    ) -> None:
        self.col.insert_one(
            {"childId": child_id, "userId": user_id, "name": name, "due": due, "at": now}
        )

    def take(self, limit: int) -> list[dict[str, Any]]:
        """The oldest changes first (a child changed twice: the later one wins)."""
        return list(self.col.find({}).sort([("at", 1), ("_id", 1)]).limit(limit))

    def done(self, ids: list[ObjectId]) -> None:
        if ids:
            self.col.delete_many({"_id": {"$in": ids}})


class ReminderLog:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["reminders_sent"]

    @staticmethod
    def key(child_id: str, due_on: str, stage: int) -> str:
        return f"{child_id}:{due_on}:{stage}"

    def claim(
        self,
        child_id: str,
        due_on: str,
        stage: int,
        user_id: str,
        kind: str,
        now: datetime,
    ) -> bool:
        """Take this reminder for sending; False if it was taken before (by anyone)."""
        try:
            self.col.insert_one(
                {"_id": self.key(child_id, due_on, stage), "childId": child_id,
                 "userId": user_id, "kind": kind, "stage": stage, "at": now}
            )  # fmt: skip
        except DuplicateKeyError:
            return False
        return True

    def claimed(self) -> set[str]:
        """Every reminder ever claimed: read only to rebuild the schedule (a scan)."""
        return {d["_id"] for d in self.col.find({}, {"_id": 1})}
