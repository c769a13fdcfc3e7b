"""Chat use cases: start a chat, verify a phone, handle one message exactly once."""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chatbot.auth import CodeSender, Tokens, hash_code, new_code
from chatbot.cache import RedisCache
from chatbot.chat.banks import BankRegistry
from chatbot.chat.children import ChildDirectory
from chatbot.chat.history import HistoryCache
from chatbot.chat.locks import OutageWatch, UserLocks
from chatbot.chat.reminders import ReminderSchedule
from chatbot.chat.sessions import ConversationSessions
from chatbot.chat.store import RepositoryStore
from chatbot.chat.users import UserDirectory
from chatbot.clock import Clock
from chatbot.db import Database, DatabaseError, deadline
from chatbot.db.children import ChildRepository
from chatbot.db.leases import LeaseRepository, OutageRepository
from chatbot.db.messages import MessageRepository, next_cursor
from chatbot.db.receipts import ReceiptLog
from chatbot.db.users import UserRepository
from chatbot.db.verifications import VerificationRepository
from chatbot.errors import (
    ConflictError,
    DuplicateMessageError,
    InvalidInputError,
    RateLimitedError,
)
from chatbot.redis_store import RedisStore
from chatbot.screening.age import AgeRules
from chatbot.screening.engine import Engine, EngineConfig
from chatbot.screening.schedule import corrected_next_due
from chatbot.screening.words import load_limits
from chatbot.settings import Settings

log = logging.getLogger(__name__)

# A channel's delivery of a turn's replies: (their ids, the replies, the turn's time).
Deliver = Callable[[list[str], list[dict[str, Any]], datetime], None]


class ChatService:
    def __init__(
        self,
        db: Database[dict[str, Any]],
        redis_store: RedisStore,
        settings: Settings,
        banks: BankRegistry,
        tokens: Tokens,
        cache: RedisCache,
        clock: Clock,
        sender: CodeSender,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        # Told (user id, staff lists affected) after every write by or about a user:
        # the response cache bumps its counters (chatbot/http_cache.py).
        self.on_change = on_change or (lambda _user_id, _staff: None)
        self.db = db
        self.redis = redis_store
        self.settings = settings
        self.banks = banks
        self.accounts = UserRepository(db)
        self.users = UserDirectory(
            db, cache, settings.session_cache_s, on_change=lambda uid: self.on_change(uid, True)
        )
        self.messages = MessageRepository(db)
        self.receipts = ReceiptLog(db)
        self.sessions = ConversationSessions(
            db, cache, settings.session_cache_s, timedelta(minutes=settings.session_idle_minutes)
        )
        self.children = ChildDirectory(
            db, cache, settings.session_cache_s, on_change=lambda uid: self.on_change(uid, True)
        )
        self.history_cache = HistoryCache(redis_store, settings.session_cache_s, cache)
        self.schedule = ReminderSchedule(db, redis_store, settings)
        self.child_repo = ChildRepository(db)
        self.limits = load_limits()  # what the conversation accepts for a child
        self.verifications = VerificationRepository(db)
        # The outage window (chatbot/chat/locks.py): read now and then every
        # REDIS_FALLBACK_POLL_S by a thread of this process; it also steers the caches.
        outages = OutageRepository(db)
        self.outage_watch = OutageWatch(outages, cache.mode, clock, settings.redis_fallback_poll_s)
        self.outage_watch.start()
        self.locks = UserLocks(
            redis_store, LeaseRepository(db), outages, self.outage_watch, settings, clock
        )
        self.tokens = tokens
        self.clock = clock
        self.sender = sender
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
        now = self.clock.now()
        user, created = self.accounts.get_or_create(phone, now, language=language or "id")
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
            raise RateLimitedError(
                "Too many codes were sent to this number; try again later.",
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
        self.sender.send(phone, code, user.get("language") or "id")
        return {
            "verificationRequired": True,
            "challengeId": challenge,
            "expiresInSeconds": self.settings.otp_ttl_s,
        }

    def verify(self, challenge_id: str, code: str) -> dict[str, Any]:
        now = self.clock.now()
        challenge = self.verifications.get_live(challenge_id, now)
        invalid = InvalidInputError("The code is wrong or has expired.", code="invalid_code")
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
        user = self.accounts.get(challenge["userId"])
        assert user is not None
        return {"token": self.tokens.issue(user), "user": public_user(user)}

    # --- messages -------------------------------------------------------------------
    def handle_message(
        self,
        user: dict[str, Any],
        text: str,
        client_message_id: str,
        deliver: Deliver | None = None,
    ) -> dict[str, Any]:
        """Process one inbound message exactly once, one message per user at a time.

        `deliver`: a channel that delivers the replies itself (WhatsApp) is handed them,
        with the ids they will have, before they are stored (so a stored reply means its
        delivery is queued); they are stored `queued`.

        Database budget with warm caches (tests/integration/test_turn_budget.py): an
        answer turn makes 3 writes and no read (the inbound insert, the answers, the
        replies); other turns at most 5 writes and 1 read.
        """
        user_id = user["id"]
        with self.user_lock(user_id), deadline(self.settings.mongo_request_timeout_s):
            now = self._turn_time()
            inbound, answered = self._accept(user_id, text, client_message_id, now)
            if answered is not None:
                return answered
            session = self.sessions.load(user_id, now)
            store = RepositoryStore(
                self.db, self.users, self.children, session.pending, now, self.schedule
            )
            engine = Engine(store, self.banks, self.engine_config)
            try:
                turn = engine.handle(user, session.state, inbound["text"], now)
            except Exception as exc:
                # The inbound message stays "received": a retry with the same
                # clientMessageId processes it again. The failure is on the log too.
                with contextlib.suppress(DatabaseError):
                    self.messages.insert_failed(
                        user_id,
                        inbound["id"],
                        client_message_id,
                        f"{PROCESSING_ERROR}: {type(exc).__name__}",
                        now,
                    )
                raise
            made = [r.as_dict() for r in turn.replies]
            replies = self._store_replies(user_id, inbound, client_message_id, made, now, deliver)
            inbound["status"] = "handled"
            # The turn is answered now: saving the session degrades, it never fails it.
            self.sessions.save(user_id, session, turn.state, now)
            self.history_cache.push(user_id, [history_item(inbound), *map(history_item, replies)])
            self.on_change(user_id, False)
            return turn_body(inbound, replies, duplicate=False, step=turn.state.get("step"))

    def answer_without_turn(
        self,
        user: dict[str, Any],
        text: str,
        client_message_id: str,
        reply: str,
        deliver: Deliver | None = None,
    ) -> dict[str, Any]:
        """Store an inbound message the conversation cannot read (a WhatsApp photo, say)
        and one fixed reply, exactly once, without running the engine: the conversation
        stays where it was."""
        user_id = user["id"]
        with self.user_lock(user_id), deadline(self.settings.mongo_request_timeout_s):
            now = self._turn_time()
            inbound, answered = self._accept(user_id, text, client_message_id, now)
            if answered is not None:
                return answered
            made = [{"text": reply, "quickReplies": []}]
            replies = self._store_replies(user_id, inbound, client_message_id, made, now, deliver)
            inbound["status"] = "handled"
            self.history_cache.push(user_id, [history_item(inbound), *map(history_item, replies)])
            self.on_change(user_id, False)
            return turn_body(inbound, replies, duplicate=False)

    def notify(
        self, user: dict[str, Any], text: str, kind: str, deliver: Deliver
    ) -> dict[str, Any]:
        """Store a message the service starts (a reminder, `kind`), handed to the channel
        that delivers it first; it joins the history like a reply. Under the user's lock,
        so it never lands inside a turn."""
        user_id = user["id"]
        with self.user_lock(user_id), deadline(self.settings.mongo_request_timeout_s):
            now = self._turn_time()
            [message_id] = self.messages.new_ids(1)
            deliver([message_id], [{"text": text, "quickReplies": []}], now)
            message = self.messages.insert_notification(user_id, message_id, text, kind, now)
            self.history_cache.push(user_id, [history_item(message)])
            self.on_change(user_id, False)
            return history_item(message)

    def _turn_time(self) -> datetime:
        """Now, in the milliseconds MongoDB keeps: the same precision everywhere (history,
        cursors)."""
        now = self.clock.now()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _accept(
        self, user_id: str, text: str, client_message_id: str, now: datetime
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The inbound message, stored now; or, seen before, the stored one and, if it was
        answered, that answer (nothing left to do). Inserting first is the idempotency
        check: the unique (userId, clientMessageId) index refuses a second copy."""
        try:
            return self.messages.insert_inbound(user_id, text, client_message_id, now), None
        except DuplicateMessageError:
            stored, replies = self.messages.turn(user_id, client_message_id)
        if stored is None:  # only if the message was archived since: nothing to redo
            raise ConflictError("This message was already handled.")
        # A reply that failed in processing leaves the message unanswered; one a channel
        # failed to deliver (Meta refused it, outside the 24-hour window) is an answer.
        answered = [
            r for r in replies
            if r["status"] != "failed"
            or not (r.get("failureReason") or "").startswith(PROCESSING_ERROR)
        ]  # fmt: skip
        if answered:
            stored["status"] = "handled"
            return stored, turn_body(stored, answered, duplicate=True)
        return stored, None  # accepted before but never answered (a crash): answer it now

    def _store_replies(
        self,
        user_id: str,
        inbound: dict[str, Any],
        client_message_id: str,
        made: list[dict[str, Any]],
        now: datetime,
        deliver: Deliver | None,
    ) -> list[dict[str, Any]]:
        """Store a turn's replies; a channel that delivers them itself gets them first."""
        ids = None
        if deliver is not None:
            ids = self.messages.new_ids(len(made))
            deliver(ids, made, now)
        return self.messages.insert_outbound(
            user_id, inbound["id"], client_message_id, made, now,
            queued=deliver is not None, ids=ids,
        )  # fmt: skip

    def history(
        self, user_id: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the user's messages, newest first, and the next page's cursor.

        The first page comes from Redis (chat/history.py), so its cost does not grow
        with the message log; later pages read MongoDB by (createdAt, _id) cursor.
        """
        if cursor:
            return self.messages.recent(user_id, limit, cursor)
        found = self.history_cache.first_page(
            user_id, limit, lambda n: self.messages.recent(user_id, n)[0]
        )
        return found[:limit], next_cursor(found, limit)

    def mark_delivered(self, user_id: str, message_ids: list[str]) -> int:
        """The client showed these replies: sent -> delivered (only the user's own).

        A receipt usually confirms the replies of the last turns, which Redis holds as
        the user's replies still `sent` (chat/history.py): then it is logged, one insert
        applied to `messages` by the sweeper (chatbot/db/receipts.py). Otherwise
        `messages` is updated at once (on FerretDB a scan of the whole log).
        """
        now = self.clock.now()
        ids = set(message_ids)
        sent = self.history_cache.take_sent_replies(user_id, ids)
        if sent is None:
            count = self.messages.mark_delivered(user_id, message_ids, now)
        else:
            # Taken off Redis's set first: if this insert fails (503), the client's retry
            # takes the database path, which is right either way.
            self.receipts.record(user_id, sorted(sent), now)
            count = len(sent)
        if count:
            self.history_cache.update_status(user_id, ids, "delivered")
            self.on_change(user_id, False)
        return count

    # --- a parent's children ----------------------------------------------------------
    def archive_child(self, child: dict[str, Any]) -> dict[str, Any] | None:
        """Hide a child (added by mistake): gone from lists, screening and the reminder
        schedule; its history kept. `child` is the caller's, ownership checked."""
        now = self.clock.now()
        self.child_repo.archive(child["id"], now)
        self.children.changed(child["userId"], child["id"])
        self.schedule.changed(child, None, now)  # nothing due for it any more
        return self.child_repo.get(child["id"])

    def correct_child(
        self, child: dict[str, Any], birth_date: date | None, gestational_weeks: Any
    ) -> dict[str, Any] | None:
        """A corrected birth date or gestation (`gestational_weeks` UNCHANGED to keep it):
        the next routine screening moves with it, and so does its reminder. Under the
        user's lock, so a screening finishing meanwhile is not overwritten."""
        with self.user_lock(child["userId"]):
            current = self.child_repo.get(child["id"])
            if current is None or current["status"] != "active":
                return None
            birth = birth_date or current["birthDate"]
            today = self.clock.now().astimezone(ZoneInfo(self.settings.timezone)).date()
            oldest = today.replace(year=today.year - self.limits.child_max_age_years)
            if not oldest <= birth <= today:
                raise InvalidInputError(
                    "The birth date must be in the past 7 years.", code="validation_error"
                )
            weeks = (
                current["gestationalWeeks"] if gestational_weeks is UNCHANGED else gestational_weeks
            )
            last = current.get("lastScreening")
            next_due = None
            if last and last.get("completedAt"):
                zone = ZoneInfo(self.settings.timezone)
                screened_on = last["completedAt"].astimezone(zone).date()
                if birth > screened_on:
                    raise InvalidInputError(
                        "The birth date is after the child's last screening.",
                        code="validation_error",
                    )
                rules = self.engine_config.rules
                next_due = corrected_next_due(last, birth, weeks, screened_on, rules)
            self.child_repo.correct(child["id"], birth, weeks, next_due)
            if last and next_due is not None:
                last = {**last, "nextDueAt": next_due}
            self.children.changed(child["userId"], child["id"])
            self.schedule.changed(current, last, self.clock.now())
            return self.child_repo.get(child["id"])

    def user_lock(self, user_id: str) -> contextlib.AbstractContextManager[None]:
        """One message per user at a time, across every worker of every instance: the
        Redis lock, or a MongoDB lease when Redis is out of reach (chatbot/chat/locks.py).
        The lock's timeout outlasts a turn: every database call of a turn runs under a
        shorter deadline."""
        return self.locks.hold(user_id)


# The failureReason prefix of the reply stored when a turn raised: the message is retried.
PROCESSING_ERROR = "processing_error"
UNCHANGED: Any = object()  # correct_child: a field not sent is kept


def history_item(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as the history API shows it."""
    keep = ("id", "direction", "text", "status", "clientMessageId", "replyTo", "quickReplies")
    item = {**{k: message[k] for k in keep if k in message}, "createdAt": message["createdAt"]}
    if message.get("status") == "failed" and message.get("direction") == "outbound":
        item["failureReason"] = message.get("failureReason")
        if message.get("waError"):
            item["error"] = message["waError"]
    return item


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
