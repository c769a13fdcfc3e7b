"""A per-user lock in MongoDB, used only while Redis is unavailable.

It relies on the one write FerretDB and MongoDB both make atomic: an insert into a
unique `_id`. A crashed holder's lock expires after its timeout.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError


class MongoLock:
    def __init__(self, db: Database, name: str, timeout_s: float, wait_s: float) -> None:
        self.col = db["locks"]
        self.name = name
        self.timeout = timedelta(seconds=timeout_s)
        self.wait_s = wait_s
        self.token: str | None = None

    def acquire(self) -> bool:
        deadline = time.monotonic() + self.wait_s
        while True:
            now = datetime.now(UTC)
            try:
                token = uuid.uuid4().hex
                self.col.insert_one(
                    {"_id": self.name, "token": token, "expiresAt": now + self.timeout}
                )
                self.token = token
                return True
            except DuplicateKeyError:
                # Clear a lock whose holder died, then try again.
                self.col.delete_one({"_id": self.name, "expiresAt": {"$lt": now}})
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def release(self) -> None:
        if self.token:
            # Only our own lock: after a timeout another holder may own the name.
            self.col.delete_one({"_id": self.name, "token": self.token})
            self.token = None
