"""Per-user leases in MongoDB, and the flag that says some instance needs them.

The per-user lock lives in Redis (chatbot/chat/locks.py). An instance that cannot reach
Redis takes a lease here instead: a unique insert keyed by user (`_id`, unique on every
server, FerretDB included: docs/ferretdb.md), with an expiry and an owner token, released
by a delete that names the owner. Every instance agrees on it because the database does.

So that an instance that *can* reach Redis checks the lease too, the instance that
falls back first declares it in `outages` (one document, `_id` "redis"): while its
`until` lies ahead, every instance takes the lease as well as the Redis lock. Each new
window (`until` had passed) increments `epoch`, which the caches use to name their keys
(chatbot/cache.py `CacheMode`): nothing cached before a window is trusted after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

REDIS = "redis"


class LeaseRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["leases"]

    def acquire(self, key: str, owner: str, now: datetime, expires_at: datetime) -> bool:
        """Take the lease `key` for `owner` until `expires_at`; False while another holds it.

        An expired lease is taken over: deleted (by its expiry, so a lease renewed or taken
        meanwhile survives) and inserted again; of two takers only one insert succeeds.
        """
        doc = {"_id": key, "owner": owner, "expiresAt": expires_at, "takenAt": now}
        try:
            self.col.insert_one(doc)
            return True
        except DuplicateKeyError:
            pass
        if self.col.delete_one({"_id": key, "expiresAt": {"$lte": now}}).deleted_count == 0:
            return False
        try:
            self.col.insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    def release(self, key: str, owner: str) -> bool:
        """Give the lease back, only if `owner` still holds it (it may have expired)."""
        return self.col.delete_one({"_id": key, "owner": owner}).deleted_count == 1

    def delete_expired(self, now: datetime) -> int:
        return self.col.delete_many({"expiresAt": {"$lte": now}}).deleted_count


@dataclass(frozen=True)
class Outage:
    """What `outages` says of Redis: the window's number, when it began and ends."""

    epoch: int
    since: datetime | None
    until: datetime | None

    def active(self, now: datetime) -> bool:
        return self.until is not None and self.until > now


NO_OUTAGE = Outage(epoch=0, since=None, until=None)


class OutageRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["outages"]

    def read(self) -> Outage:
        return _outage(self.col.find_one({"_id": REDIS}))

    def declare(self, now: datetime, until: datetime) -> Outage:
        """Say that an instance cannot reach Redis until at least `until`.

        Extends the window that is open; otherwise opens a new one (epoch + 1, since
        now). Two instances opening one at once may both count: the epoch only has to
        grow, not to count windows.
        """
        extended = self.col.find_one_and_update(
            {"_id": REDIS, "until": {"$gt": now}},
            {"$max": {"until": until}},
            return_document=ReturnDocument.AFTER,
        )
        if extended is not None:
            return _outage(extended)
        opened = self.col.find_one_and_update(
            {"_id": REDIS},
            {"$inc": {"epoch": 1}, "$set": {"since": now, "until": until}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return _outage(opened)


def _outage(doc: dict[str, Any] | None) -> Outage:
    if doc is None:
        return NO_OUTAGE
    return Outage(epoch=int(doc.get("epoch", 0)), since=doc.get("since"), until=doc.get("until"))
