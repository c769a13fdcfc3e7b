"""The WhatsApp channel's durable state: the inbox, the outbox and the event log.

- `whatsapp_inbound` (the inbox): every message a webhook carried, keyed by its WhatsApp
  message id (`_id`), inserted before the webhook is answered, so a crash after the 200
  loses nothing and a redelivered copy is refused by the key. A queue worker turns each
  into a chat turn (whose `clientMessageId` is `wa:<wamid>`, the web path's unique insert
  again) and then deletes it: the inbox holds only what is still to do.
- `whatsapp_outbox`: every reply still to be sent, one document per Graph API message,
  keyed by the reply's message id and part (`<messageId>:<n>`), ordered per recipient by
  `seq`. `state` queued -> sending (the attempt recorded *before* the call) -> deleted
  once Meta's answer is logged. A document found `sending` is never sent again (at most
  once): it is logged as unconfirmed. Only what is in flight stays here.
- `whatsapp_events`: insert-only, like the receipts log (chatbot/db/receipts.py): what
  became of each send (its WhatsApp id, or Meta's error) and every status webhook. The
  sweeper applies them to `messages` in batches (`apply`), since an update of `messages`
  by anything but a scan costs a scan of the whole log on FerretDB.

On MongoDB the indexes in chatbot/db/indexes.py serve the per-recipient look-ups; on
FerretDB the inbox and outbox stay small (only unfinished work), so their scans do too.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from chatbot.db.documents import oid

# A status never moves back: read (3) beats delivered (2) beats sent (1). failed (4)
# also wins over sent/delivered (Meta reports it after accepting a message).
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


class WhatsAppInbox:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["whatsapp_inbound"]

    def record(self, message: dict[str, Any], now: datetime) -> bool:
        """Keep one inbound message (`wamid` becomes `_id`); False if it was there already."""
        doc = {**message, "_id": message["wamid"], "receivedAt": now}
        doc.pop("wamid")
        try:
            self.col.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    def next_for(self, wa_id: str) -> dict[str, Any] | None:
        """The sender's oldest message still to do (by WhatsApp's time, then arrival)."""
        found = (
            self.col.find({"waId": wa_id})
            .sort([("timestamp", ASCENDING), ("receivedAt", ASCENDING), ("_id", ASCENDING)])
            .limit(1)
        )
        for doc in found:
            doc["wamid"] = doc.pop("_id")
            return doc
        return None

    def done(self, wamid: str) -> None:
        self.col.delete_one({"_id": wamid})

    def failed_attempt(self, wamid: str) -> int:
        """Count a failed turn of this message; answer how many there were."""
        doc = self.col.find_one_and_update(
            {"_id": wamid}, {"$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER
        )
        return int(doc["attempts"]) if doc else 0

    def has(self, wamid: str) -> bool:
        return self.col.count_documents({"_id": wamid}, limit=1) == 1

    def senders_waiting_since(self, before: datetime, limit: int) -> list[str]:
        """Senders with a message received before `before` and still to do (lost tasks)."""
        found = self.col.find({"receivedAt": {"$lt": before}}, {"waId": 1}).limit(limit)
        return sorted({d["waId"] for d in found})

    def depth(self) -> int:
        return self.col.estimated_document_count()

    def oldest(self) -> datetime | None:
        for doc in self.col.find({}, {"receivedAt": 1}).sort("receivedAt", ASCENDING).limit(1):
            received: datetime = doc["receivedAt"]
            return received
        return None


class WhatsAppOutbox:
    """One document per answered turn (`_id` its clientMessageId): the Graph API messages
    its replies became (`parts`, each with the reply's message id), sent in order.

    Added before the turn's replies are stored (so a stored reply means its sends are
    queued), but `ready` only once the turn's inbox message is done: a turn that runs
    again after a crash finds its document unsent and leaves it as it is. `next` is the
    first part not yet tried; a part is marked `sending` before its call (so it is never
    sent twice) and the document deleted once every part has an outcome in the log.
    """

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["whatsapp_outbox"]

    def add(
        self,
        turn: str,
        user_id: str,
        wa_id: str,
        seq: int,
        parts: list[dict[str, Any]],
        window_from: datetime | None,
        now: datetime,
        ready: bool = False,
    ) -> bool:
        """Queue a turn's messages (not ready until its turn is done, unless `ready`: a
        notification has no turn); False if this turn's are queued already."""
        try:
            self.col.insert_one(
                {"_id": turn, "userId": user_id, "waId": wa_id, "seq": seq, "parts": parts,
                 "next": 0,
                 "sending": None, "ready": ready, "windowFrom": window_from, "attempts": 0,
                 "createdAt": now}
            )  # fmt: skip
        except DuplicateKeyError:
            return False
        return True

    def has(self, turn: str) -> bool:
        return self.col.count_documents({"_id": turn}, limit=1) == 1

    def make_ready(self, turn: str) -> None:
        self.col.update_one({"_id": turn}, {"$set": {"ready": True}})

    def next_for(self, wa_id: str) -> dict[str, Any] | None:
        """The recipient's oldest turn with parts still to send, ready or not (a turn
        not ready yet holds back the later ones: replies keep their order)."""
        found = (
            self.col.find({"waId": wa_id}).sort([("seq", ASCENDING), ("_id", ASCENDING)]).limit(1)
        )
        for doc in found:
            return doc
        return None

    def attempt(self, turn: str, part: int, now: datetime) -> bool:
        """Record that part `part` is being sent, before the call; False if it was tried."""
        done = self.col.update_one(
            {"_id": turn, "next": part, "sending": None},
            {"$set": {"sending": part, "attemptAt": now}},
        )
        return done.modified_count == 1

    def settled(self, turn: str, part: int) -> None:
        """Part `part` has its outcome logged: on to the next one."""
        self.col.update_one(
            {"_id": turn, "next": part}, {"$set": {"next": part + 1, "sending": None}}
        )

    def not_sent(self, turn: str, part: int, retry_at: datetime) -> None:
        """The call did not send it (throttled, refused connection, 5xx): try it again."""
        self.col.update_one(
            {"_id": turn, "sending": part},
            {"$set": {"sending": None, "retryAt": retry_at}, "$inc": {"attempts": 1}},
        )

    def finish(self, turn: str) -> None:
        self.col.delete_one({"_id": turn})

    def stale(self, before: datetime, limit: int) -> list[dict[str, Any]]:
        """Turns queued before `before` and not finished (their tasks may be lost)."""
        return list(
            self.col.find({"createdAt": {"$lt": before}}, {"waId": 1, "ready": 1}).limit(limit)
        )

    def oldest(self) -> datetime | None:
        for doc in self.col.find({}, {"createdAt": 1}).sort("createdAt", ASCENDING).limit(1):
            created: datetime = doc["createdAt"]
            return created
        return None

    def depth(self) -> int:
        return self.col.estimated_document_count()


class WhatsAppEvents:
    """Insert-only: send outcomes and status webhooks, applied to `messages` by the sweeper.

    `whatsapp_sent` maps each WhatsApp message id to our reply (`_id` the wamid), so a
    status finds its reply without `messages` holding, or being searched by, the wamid.
    """

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["whatsapp_events"]
        self.sent_ids = db["whatsapp_sent"]
        self.messages = db["messages"]

    def sent(self, user_id: str, message_id: str, wa_message_id: str, now: datetime) -> None:
        """Meta accepted the reply (or one part of it) under `wa_message_id`."""
        with contextlib.suppress(DuplicateKeyError):
            self.sent_ids.insert_one(
                {"_id": wa_message_id, "messageId": oid(message_id, "message"),
                 "userId": oid(user_id, "user"), "at": now}
            )  # fmt: skip
        self.status(wa_message_id, "sent", now, [], now)

    def failed(
        self, user_id: str, message_id: str, reason: str, error: dict[str, Any], now: datetime
    ) -> None:
        """The reply will not be sent: Meta refused it, or it fell outside the window."""
        self.col.insert_one(
            {"kind": "failed", "messageId": oid(message_id, "message"),
             "userId": oid(user_id, "user"),
             "failureReason": reason, "error": error, "at": now}
        )  # fmt: skip

    def status(
        self, wa_message_id: str, status: str, at: datetime, errors: list[dict[str, Any]],
        now: datetime,
    ) -> None:  # fmt: skip
        self.col.insert_one(
            {"kind": "status", "waMessageId": wa_message_id, "status": status, "at": at,
             "errors": errors, "receivedAt": now}
        )  # fmt: skip

    def apply(
        self, now: datetime, batch_size: int = 500, give_up_after: timedelta = timedelta(days=1)
    ) -> tuple[int, set[str]]:
        """Apply the logged events to `messages`, oldest first; answer how many, and
        whose replies changed (their cached history pages are behind).

        Per batch: one read of `whatsapp_sent`, one update of `messages` per status
        reached (sent, delivered, read) and one per failure: the cost does not grow with
        the number of events. A status only moves a reply forward (STATUS_RANK), so
        repeated and out-of-order webhooks change nothing. A status for a WhatsApp id not
        (yet) known waits for a later sweep, and is dropped after `give_up_after`.
        """
        applied, users = 0, set[str]()
        while True:
            events = list(self.col.find({}).sort("_id", ASCENDING).limit(batch_size))
            if not events:
                return applied, users
            statuses = [e for e in events if e["kind"] == "status"]
            wamids = list({e["waMessageId"] for e in statuses})
            reply_of = {
                d["_id"]: (d["messageId"], d["userId"])
                for d in self.sent_ids.find({"_id": {"$in": wamids}}, {"messageId": 1, "userId": 1})
            } if wamids else {}  # fmt: skip
            waiting = set()
            reached: dict[str, set[Any]] = {}
            for event in statuses:
                found = reply_of.get(event["waMessageId"])
                if found is None:
                    if now - event["receivedAt"] < give_up_after:
                        waiting.add(event["_id"])
                    continue
                reply, user = found
                users.add(str(user))
                if event["status"] == "failed":
                    error = (event["errors"] or [{}])[0]
                    self._fail(reply, "whatsapp_failed", error, event["at"])
                else:
                    reached.setdefault(event["status"], set()).add(reply)
            for status in sorted(reached, key=STATUS_RANK.__getitem__):
                rank = STATUS_RANK[status]
                self.messages.update_many(
                    {"_id": {"$in": list(reached[status])}, "statusRank": {"$lt": rank}},
                    {"$set": {"status": status, "statusRank": rank, "statusAt": now}},
                )
            for event in events:
                if event["kind"] == "failed":
                    users.add(str(event["userId"]))
                    self._fail(
                        event["messageId"], event["failureReason"], event["error"], event["at"]
                    )
            done = [e["_id"] for e in events if e["_id"] not in waiting]
            if done:
                self.col.delete_many({"_id": {"$in": done}})
            applied += len(done)
            if len(events) < batch_size or not done:
                return applied, users

    def _fail(self, message_id: Any, reason: str, error: dict[str, Any], at: datetime) -> None:
        self.messages.update_one(
            {"_id": message_id, "statusRank": {"$lt": STATUS_RANK["failed"]}},
            {"$set": {"status": "failed", "statusRank": STATUS_RANK["failed"],
                      "failureReason": reason, "waError": _error(error), "statusAt": at}},
        )  # fmt: skip

    def forget_sent_before(self, cutoff: datetime) -> int:
        """Drop id mappings older than `cutoff` (statuses come within days)."""
        return self.sent_ids.delete_many({"at": {"$lt": cutoff}}).deleted_count


def _error(error: dict[str, Any]) -> dict[str, Any]:
    """Meta's error as the history shows it: its code and title (or message)."""
    return {"code": error.get("code"), "title": error.get("title") or error.get("message")}
