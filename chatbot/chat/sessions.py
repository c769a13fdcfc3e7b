"""Conversation sessions: Redis first (`session:{userId}`), written through to MongoDB.

The Redis entry carries more than the MongoDB document: the user's questionnaire in
progress (so an answer turn reads nothing from the database) and what MongoDB
holds (so an unchanged session is not written again). Losing it loses nothing:
MongoDB has the state and the questionnaires collection has every answer.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chatbot.cache import RedisCache, dumps
from chatbot.db import Database, DatabaseError
from chatbot.db.sessions import SessionRepository

log = logging.getLogger(__name__)

# Bump when the shape of the Redis entry changes: older entries are then misses.
VERSION = 1


@dataclass
class Pending:
    """The user's questionnaire in progress, as far as this session knows.

    `known` False means "not looked up yet": the store reads it from the database once.
    """

    known: bool = False
    doc: dict[str, Any] | None = None

    def set(self, doc: dict[str, Any] | None) -> None:
        self.known, self.doc = True, doc


@dataclass
class Session:
    state: dict[str, Any] | None
    pending: Pending = field(default_factory=Pending)
    stored_digest: str = ""  # digest of the state MongoDB holds ("" when unknown)
    stored_until: datetime | None = None  # MongoDB's expiresAt for it


def digest(state: dict[str, Any] | None) -> str:
    """The state without `asked` (recoverable from the questionnaire's answers)."""
    if state is None:
        return ""
    durable = {k: v for k, v in state.items() if k != "asked"}
    return hashlib.sha1(dumps(durable).encode(), usedforsecurity=False).hexdigest()


class ConversationSessions:
    def __init__(
        self, db: Database[dict[str, Any]], cache: RedisCache, ttl_s: int, idle: timedelta
    ) -> None:
        self.repo = SessionRepository(db)
        self.cache = cache
        self.ttl_s = ttl_s
        self.idle = idle

    @staticmethod
    def _key(user_id: str) -> str:
        return f"session:{user_id}"

    def load(self, user_id: str, now: datetime) -> Session:
        """The session (its state None when new or idle too long): Redis, else MongoDB."""
        entry = self.cache.get(self._key(user_id))
        if entry is not None and entry.get("v") == VERSION:
            state = entry["state"]
            if entry["expiresAt"] <= now:
                state = None
            return Session(
                state=state,
                pending=Pending(entry["pendingKnown"], entry["pending"]),
                stored_digest=entry["storedDigest"],
                stored_until=entry["storedUntil"],
            )
        state = self.repo.active(user_id, now)
        if state is not None:
            # `asked` may be behind the questionnaire's answers (answer turns do not
            # write the session to MongoDB); without it the engine goes by the answers.
            state.pop("asked", None)
        return Session(state=state, stored_digest="" if state is None else digest(state))

    def save(self, user_id: str, session: Session, state: dict[str, Any], now: datetime) -> bool:
        """Keep `state` in Redis; write it to MongoDB unless MongoDB already has it.

        MongoDB is written when the durable part of the state changed or when its
        expiry would fall due within half the idle time. Returns True if it wrote.
        """
        expires = now + self.idle
        wrote = False
        durable = digest(state)
        if (
            durable != session.stored_digest
            or session.stored_until is None
            or session.stored_until - now < self.idle / 2
        ):
            try:
                self.repo.save(user_id, state, expires, now)
            except DatabaseError as exc:
                # The turn's replies are stored: answer them. Redis keeps the state and
                # remembers that MongoDB is behind, so the next turn writes it again.
                log.warning("session of user %s not saved: %s", user_id, type(exc).__name__)
            else:
                session.stored_digest, session.stored_until = durable, expires
                wrote = True
        session.state = state
        self.cache.set(
            self._key(user_id),
            {
                "v": VERSION,
                "state": state,
                "expiresAt": expires,
                "pendingKnown": session.pending.known,
                "pending": session.pending.doc,
                "storedDigest": session.stored_digest,
                "storedUntil": session.stored_until,
            },
            self.ttl_s,
        )
        return wrote

    def forget(self, user_id: str) -> None:
        """Drop the Redis entry (something changed behind the session's back)."""
        self.cache.invalidate(self._key(user_id))
