"""Every index the service needs, and the one function that creates them.

`ensure_indexes()` is the only creator, always on a database of a `Mongo`
(chatbot/db/mongo.py) built from the settings, so with their timeouts. It runs once per
start, from one process, before any instance serves: `flask chatbot init-db` (the stack's
`init` step, the deployments' chatbot-init-db.service, the test harness), which waits for
the database with `ensure_indexes_with(settings, wait_s)`. Idempotent.

Nothing else creates indexes while the service runs. On FerretDB's PostgreSQL backend
(v1.24.2) every createIndexes takes the metadata registry's write lock and holds it while
it waits for a PostgreSQL connection; requests holding connections then wait on that lock,
and nothing moves again (docs/ferretdb.md, "Index creation and the pool"). Index creation
from every gunicorn master, collector and sweep at once is what wedged `make run`'s starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from chatbot.db.mongo import Mongo

if TYPE_CHECKING:
    from chatbot.settings import Settings

log = logging.getLogger(__name__)

# How often ensure_indexes_with asks a database that did not answer again.
RETRY_EVERY_S = 1.0
NOT_IMPLEMENTED = 238  # FerretDB's answer to TTL indexes, $lookup and friends

# collection -> indexes. The first block of each is the seed's; the rest serve our queries.
INDEXES: dict[str, list[IndexModel]] = {
    "users": [
        IndexModel([("phoneNumber", ASCENDING)], unique=True, name="phoneNumber_1"),
        IndexModel([("role", ASCENDING)], name="role_1"),
    ],
    "children": [
        IndexModel([("userId", ASCENDING)], name="userId_1"),
        IndexModel([("status", ASCENDING)], name="status_1"),
        # Health-worker lists: latest risk level, and re-screens by due date.
        IndexModel([("lastScreening.riskLevel", ASCENDING)], name="lastScreening.riskLevel_1"),
        IndexModel([("lastScreening.nextDueAt", ASCENDING)], name="lastScreening.nextDueAt_1"),
        # A posyandu's children (the health workers' page, its export, every staff list).
        IndexModel([("posyandu", ASCENDING), ("status", ASCENDING)], name="posyandu_1_status_1"),
    ],
    # A child's contacts by health workers, newest first (db/posyandu.py). `posyandu`
    # itself is keyed by its code (`_id`).
    "contacts": [
        IndexModel([("childId", ASCENDING), ("at", DESCENDING)], name="childId_1_at_-1"),
    ],
    "questionnaires": [
        IndexModel([("childId", ASCENDING)], name="childId_1"),
        # The monthly export: a posyandu's screenings completed in a month.
        IndexModel(
            [("posyandu", ASCENDING), ("completedMonth", ASCENDING), ("status", ASCENDING)],
            name="posyandu_1_completedMonth_1_status_1",
        ),
        IndexModel([("riskLevel", ASCENDING)], name="riskLevel_1"),
        # A child's latest results, newest first.
        IndexModel(
            [("childId", ASCENDING), ("completedAt", DESCENDING)], name="childId_1_completedAt_-1"
        ),
        # A user's questionnaire in progress, and the sweep of stale ones.
        IndexModel([("userId", ASCENDING), ("status", ASCENDING)], name="userId_1_status_1"),
        IndexModel([("status", ASCENDING), ("startedAt", ASCENDING)], name="status_1_startedAt_1"),
    ],
    "messages": [
        IndexModel(
            [("userId", ASCENDING), ("createdAt", DESCENDING)], name="userId_1_createdAt_-1"
        ),
        IndexModel([("status", ASCENDING)], name="status_1"),
        # Idempotent inbound: one message per (user, clientMessageId). Outbound messages
        # have no clientMessageId; the partial filter keeps them out of the unique index.
        IndexModel(
            [("userId", ASCENDING), ("clientMessageId", ASCENDING)],
            unique=True,
            name="userId_1_clientMessageId_1",
            partialFilterExpression={"clientMessageId": {"$type": "string"}},
        ),
        # A retried turn finds its inbound message and replies in one query.
        IndexModel([("userId", ASCENDING), ("turn", ASCENDING)], name="userId_1_turn_1"),
        # The sweeper: messages past the archive cutoff, and the replies of an inbound message.
        IndexModel([("createdAt", ASCENDING)], name="createdAt_1"),
        IndexModel([("replyTo", ASCENDING)], name="replyTo_1"),
    ],
    # Old messages moved out of `messages` (chatbot/db/archive.py): a user's, by date.
    "messages_archive": [
        IndexModel(
            [("userId", ASCENDING), ("createdAt", DESCENDING)], name="userId_1_createdAt_-1"
        ),
    ],
    # Receipts not applied yet (chatbot/db/receipts.py): a user's, for reads of messages.
    "receipts": [IndexModel([("userId", ASCENDING)], name="userId_1")],
    # Per-user leases while Redis is out of reach (chatbot/db/leases.py): the sweep of
    # expired ones. `outages` holds one document, by `_id`.
    "leases": [IndexModel([("expiresAt", ASCENDING)], name="expiresAt_1")],
    "sessions": [
        IndexModel([("userId", ASCENDING)], unique=True, name="userId_1"),
        # A TTL index where the server has them (see FALLBACKS for FerretDB).
        IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0, name="expiresAt_1"),
    ],
    "verifications": [
        IndexModel([("expiresAt", ASCENDING)], name="expiresAt_1"),
        # Codes sent to one number recently (the per-number send limit).
        IndexModel(
            [("userId", ASCENDING), ("createdAt", DESCENDING)], name="userId_1_createdAt_-1"
        ),
    ],
    "question_banks": [
        IndexModel(
            [("active", ASCENDING), ("importedAt", DESCENDING)], name="active_1_importedAt_-1"
        ),
    ],
    # The collector's snapshots (chatbot/db/metrics.py): an instance's latest, and the
    # retention sweep by age.
    "metrics": [
        IndexModel(
            [("instance", ASCENDING), ("timestamp", DESCENDING)], name="instance_1_timestamp_-1"
        ),
        IndexModel([("timestamp", ASCENDING)], name="timestamp_1"),
    ],
    "alerts": [
        # At most one open alert per kind and instance: only open ones carry `openKey`.
        IndexModel(
            [("openKey", ASCENDING)],
            unique=True,
            name="openKey_1",
            partialFilterExpression={"openKey": {"$type": "string"}},
        ),
        IndexModel([("state", ASCENDING), ("openedAt", DESCENDING)], name="state_1_openedAt_-1"),
        IndexModel([("openedAt", DESCENDING)], name="openedAt_-1"),
    ],
}

# Index name -> what to create instead where the server answers NotImplemented (FerretDB).
FALLBACKS: dict[str, IndexModel] = {
    # FerretDB accepts many documents missing a uniquely-indexed field, so a plain unique
    # index behaves like the partial one there.
    "userId_1_clientMessageId_1": IndexModel(
        [("userId", ASCENDING), ("clientMessageId", ASCENDING)],
        unique=True,
        name="userId_1_clientMessageId_1",
    ),
    # The same for the open alerts' key: resolved alerts have none.
    "openKey_1": IndexModel([("openKey", ASCENDING)], unique=True, name="openKey_1"),
    # No TTL: sessions expire at query time and by the periodic sweep.
    "expiresAt_1": IndexModel([("expiresAt", ASCENDING)], name="expiresAt_1"),
}


def ensure_indexes(db: Database[Any]) -> dict[str, list[str]]:
    """Create every index (existing ones are left alone); return {collection: [names]}.

    Each index is created on its own so that one the server cannot build (FerretDB)
    falls back to its documented substitute without hiding other errors.
    """
    report: dict[str, list[str]] = {}
    for collection, models in INDEXES.items():
        names = []
        for model in models:
            name = model.document["name"]
            try:
                db[collection].create_indexes([model])
            except OperationFailure as exc:
                if exc.code != NOT_IMPLEMENTED or name not in FALLBACKS:
                    raise
                log.debug("index %s.%s not supported here; using its fallback", collection, name)
                db[collection].create_indexes([FALLBACKS[name]])
            names.append(name)
        report[collection] = names
    return report


def ensure_indexes_with(
    settings: Settings,
    wait_s: float = 0.0,
    on_retry: Callable[[PyMongoError, float], None] | None = None,
) -> dict[str, list[str]]:
    """Create every index through a `Mongo` of its own, closed on return.

    The database first gets the budget /health gives it (HEALTH_TIMEOUT_S) to answer a
    ping, so a stopped or frozen one costs that at most (a refused connection 0.5 s); it
    is asked again every RETRY_EVERY_S until `wait_s` seconds have passed (0: one try),
    `on_retry(error, seconds left)` called before each new try. Then the MONGO_* timeouts
    apply. Raises the last PyMongoError when the database never answered.
    """
    mongo = Mongo()
    mongo.init_app(settings)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                mongo.ping(settings.health_timeout_s)
                break
            except PyMongoError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                if on_retry is not None:
                    on_retry(exc, left)
                time.sleep(min(RETRY_EVERY_S, left))
        return ensure_indexes(mongo.db)
    finally:
        mongo.close()


def server_has_ttl(db: Database[Any]) -> bool:
    """True when the sessions TTL index exists (MongoDB); False on FerretDB."""
    info = db["sessions"].index_information()
    return "expireAfterSeconds" in info.get("expiresAt_1", {})
