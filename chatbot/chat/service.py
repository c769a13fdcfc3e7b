"""Chat use cases: start a chat, verify a phone, handle one message exactly once."""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from chatbot.auth import Tokens, hash_code, load_sender, new_code
from chatbot.chat.banks import BankRegistry
from chatbot.chat.store import RepositoryStore
from chatbot.db import Database
from chatbot.db.documents import ConflictError
from chatbot.db.locks import MongoLock
from chatbot.db.messages import DuplicateMessageError, MessageRepository
from chatbot.db.sessions import SessionRepository
from chatbot.db.users import UserRepository
from chatbot.db.verifications import VerificationRepository
from chatbot.errors import ApiError
from chatbot.redis_store import RedisStore
from chatbot.screening.age import AgeRules
from chatbot.screening.engine import Engine, EngineConfig
from chatbot.settings import Settings

log = logging.getLogger(__name__)


class BusyError(ConflictError):
    code = "busy"


def utcnow() -> datetime:
    return datetime.now(UTC)


class ChatService:
    def __init__(
        self,
        db: Database,
        redis_store: RedisStore,
        settings: Settings,
        banks: BankRegistry,
        tokens: Tokens,
    ) -> None:
        self.db = db
        self.redis = redis_store
        self.settings = settings
        self.banks = banks
        self.users = UserRepository(db)
        self.messages = MessageRepository(db)
        self.sessions = SessionRepository(db)
        self.verifications = VerificationRepository(db)
        self.tokens = tokens
        self.engine_config = EngineConfig(
            rules=AgeRules(
                preterm_below_weeks=settings.preterm_below_weeks,
                correct_until_months=settings.correct_until_months,
            ),
            timezone=settings.timezone,
            resume_window=timedelta(hours=settings.resume_window_hours),
        )

    # --- identity -----------------------------------------------------------------
    def start(self, phone: str, language: str | None) -> dict[str, Any]:
        """A new number gets a token at once; a known one must prove itself with a code."""
        now = utcnow()
        user, created = self.users.get_or_create(phone, now, language=language or "id")
        if created:
            return {
                "verificationRequired": False,
                "token": self.tokens.issue(user),
                "user": public_user(user),
            }
        # Codes cost a message to someone's phone: a few per number per window, whoever asks.
        window = timedelta(seconds=self.settings.otp_send_window_s)
        if (
            self.verifications.count_since(user["id"], now - window)
            >= self.settings.otp_sends_per_window
        ):
            raise ApiError(
                "Too many codes were sent to this number; try again later.",
                status=429,
                code="rate_limited",
                details={"retryAfterSeconds": self.settings.otp_send_window_s},
            )
        code = new_code()
        challenge = secrets.token_urlsafe(18)
        self.verifications.create(
            challenge,
            user["id"],
            # The hash binds the code to its challenge: a code cannot serve another one.
            hash_code(self.settings.secret_key, challenge, code),
            expires_at=now + timedelta(seconds=self.settings.otp_ttl_s),
            now=now,
        )
        load_sender(self.settings.otp_sender).send(phone, code, user.get("language") or "id")
        return {
            "verificationRequired": True,
            "challengeId": challenge,
            "expiresInSeconds": self.settings.otp_ttl_s,
        }

    def verify(self, challenge_id: str, code: str) -> dict[str, Any]:
        now = utcnow()
        challenge = self.verifications.get_live(challenge_id, now)
        invalid = ApiError("The code is wrong or has expired.", status=400, code="invalid_code")
        if challenge is None or challenge["attempts"] >= self.settings.otp_max_attempts:
            raise invalid
        expected = hash_code(self.settings.secret_key, challenge_id, code)
        if not hmac.compare_digest(expected, challenge["codeHash"]):
            self.verifications.count_attempt(challenge_id, challenge["attempts"] + 1)
            raise invalid
        if not self.verifications.consume(challenge_id):
            raise invalid
        # Proven owner: earlier tokens for this number (anyone's) stop working.
        self.users.rotate_token_version(challenge["userId"])
        user = self.users.get(challenge["userId"])
        assert user is not None
        return {"token": self.tokens.issue(user), "user": public_user(user)}

    # --- messages -------------------------------------------------------------------
    def handle_message(
        self, user: dict[str, Any], text: str, client_message_id: str
    ) -> dict[str, Any]:
        """Process one inbound message exactly once, one message per user at a time."""
        with self.user_lock(user["id"]):
            existing = self.messages.inbound_by_client_id(user["id"], client_message_id)
            if existing is not None and existing["status"] == "handled":
                replies = [
                    r for r in self.messages.replies_to(existing["id"]) if r["status"] != "failed"
                ]
                return turn_body(existing, replies, duplicate=True)
            now = utcnow()
            if existing is not None:
                inbound = existing  # accepted before but not answered (a crash): answer it now
            else:
                try:
                    inbound = self.messages.insert_inbound(user["id"], text, client_message_id, now)
                except DuplicateMessageError:  # only without a working lock: another worker won
                    raise BusyError("This message is being processed; retry shortly.") from None
            state = self.sessions.active(user["id"], now)
            engine = Engine(RepositoryStore(self.db, now), self.banks, self.engine_config)
            try:
                turn = engine.handle(user, state, inbound["text"], now)
            except Exception as exc:
                # The inbound message stays "received": a retry with the same
                # clientMessageId processes it again. The failure is on the log too.
                self.messages.insert_failed(
                    user["id"], inbound["id"], f"processing_error: {type(exc).__name__}", now
                )
                raise
            replies = self.messages.insert_outbound(
                user["id"], inbound["id"], [r.as_dict() for r in turn.replies], now
            )
            idle = timedelta(minutes=self.settings.session_idle_minutes)
            self.sessions.save(user["id"], turn.state, now + idle, now)
            self.messages.set_status([inbound["id"]], "handled", handledAt=now)
            inbound["status"] = "handled"
            self.messages.set_status([r["id"] for r in replies], "sent", sentAt=now)
            for reply in replies:
                reply["status"] = "sent"
            return turn_body(inbound, replies, duplicate=False, step=turn.state.get("step"))

    @contextlib.contextmanager
    def user_lock(self, user_id: str) -> Iterator[None]:
        """A Redis lock across all workers and instances; MongoDB's when Redis is down."""
        timeout, wait = self.settings.lock_timeout_s, self.settings.lock_wait_s
        lock: Any
        try:
            lock = self.redis.client.lock(
                self.redis.key("lock", "user", user_id), timeout=timeout, blocking_timeout=wait
            )
            acquired = lock.acquire()
        except redis.RedisError:
            log.warning("Redis unavailable; using the database lock for user %s", user_id)
            lock = MongoLock(self.db, f"user:{user_id}", timeout, wait)
            acquired = lock.acquire()
        if not acquired:
            raise BusyError("Another message from you is still being processed; retry shortly.")
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.RedisError as exc:  # expired or Redis gone: it times out by itself
                log.warning(
                    "could not release the lock of user %s: %s", user_id, type(exc).__name__
                )


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "phoneNumber": user["phoneNumber"],
        "role": user["role"],
        "language": user.get("language") or "id",
        "consentAt": user.get("consentAt"),
    }


def turn_body(
    inbound: dict[str, Any], replies: list[dict[str, Any]], duplicate: bool, step: str | None = None
) -> dict[str, Any]:
    return {
        "message": {
            "id": inbound["id"],
            "clientMessageId": inbound["clientMessageId"],
            "text": inbound["text"],
            "status": inbound["status"],
            "createdAt": inbound["createdAt"],
        },
        "replies": [
            {
                "id": r["id"],
                "text": r["text"],
                "quickReplies": r.get("quickReplies", []),
                "status": r["status"],
                "createdAt": r["createdAt"],
            }
            for r in replies
        ],
        "duplicate": duplicate,
        "step": step,
    }
