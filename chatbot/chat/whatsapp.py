"""The WhatsApp channel: webhooks in, chat turns, replies out in order, each at most once.

The chat service and the engine do not know the channel: an inbound WhatsApp message
becomes the same turn the web page makes (`ChatService.handle_message`), the user found
by phone number (`+` and the `wa_id`: the same number is the same user on both
channels), the idempotency key `wa:<WhatsApp message id>` (the web path's unique insert).
Its replies are handed to this channel before they are stored (`deliver`) and become
Graph API messages in the outbox (chatbot/db/whatsapp.py).

Three steps, each safe to run again after a crash at any point:
1. `accept` (the webhook's request): the messages into the inbox, the statuses into the
   event log; then the webhook answers 200.
2. `process(wa_id)` (a queue task): the sender's inbox messages, oldest first, each a
   turn; its outbox document is made `ready` only after the inbox message is done.
3. `send(wa_id)` (a queue task): the recipient's ready turns, in order, part by part:
   the attempt recorded before the call, its outcome logged after it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chatbot.channels.graph import Accepted, GraphClient, Refused, Retry, Unconfirmed
from chatbot.channels.templates import Templates
from chatbot.channels.whatsapp import Webhook, render_reply
from chatbot.chat.service import ChatService
from chatbot.clock import Clock
from chatbot.db import Database, DatabaseError
from chatbot.db.whatsapp import WhatsAppEvents, WhatsAppInbox, WhatsAppOutbox
from chatbot.errors import BusyError, ConflictError, ServiceUnavailableError
from chatbot.screening.texts import Texts
from chatbot.settings import Settings

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)  # free-form messages only this long after the last inbound
OUTSIDE_WINDOW = {"code": 131047, "title": "Re-engagement message (outside the 24-hour window)"}


class SendDeferredError(Exception):
    """A part could not be sent now (throttled, Meta unreachable, 5xx): retry later.

    Raised out of the queue task so that the task queue retries it with backoff; the
    outbox still holds the part, so nothing is dropped.
    """

    def __init__(self, reason: str, delay_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


class NotificationQueuedError(Exception):
    """A notification with this `ref` is queued already (two callers at once): the
    second stores nothing."""


@dataclass
class AcceptReport:
    senders: list[str]  # wa_ids with new messages: their turns are to be processed
    duplicates: int
    statuses: int


# Told (outcome, Meta's code or None, seconds) of every send: the metrics listen.
SendObserver = Callable[[str, int | None, float], None]


class WhatsAppChannel:
    def __init__(
        self,
        chat: ChatService,
        db: Database[dict[str, Any]],
        settings: Settings,
        clock: Clock,
        graph: GraphClient | None = None,
        rate: Callable[[str], None] | None = None,
        observe: SendObserver | None = None,
        templates: Templates | None = None,
    ) -> None:
        self.chat = chat
        self.settings = settings
        self.clock = clock
        self.inbox = WhatsAppInbox(db)
        self.outbox = WhatsAppOutbox(db)
        self.events = WhatsAppEvents(db)
        self.graph = graph
        # Waits until the phone number's send rate, and the pace for this recipient, allow
        # one more message (the queue's, chatbot/tasks.py).
        self.rate = rate or (lambda _wa_id: None)
        self.observe = observe or (lambda _outcome, _code, _seconds: None)
        self.texts = Texts()
        self.templates = templates or Templates(
            settings.whatsapp_template_languages, settings.whatsapp_template_names
        )

    # --- 1. the webhook ----------------------------------------------------------------
    def accept(self, webhook: Webhook) -> AcceptReport:
        """Record what a webhook carries; answer who has new messages."""
        now = self.clock.now()
        senders: list[str] = []
        duplicates = 0
        for message in webhook.messages:
            fresh = self.inbox.record(
                {
                    "wamid": message.wamid,
                    "waId": message.wa_id,
                    "phoneNumberId": message.phone_number_id,
                    "type": message.type,
                    "text": message.text,
                    "name": message.name,
                    "timestamp": message.timestamp,
                    "attempts": 0,
                },
                now,
            )
            if not fresh:
                duplicates += 1
            elif message.wa_id not in senders:
                senders.append(message.wa_id)
        for status in webhook.statuses:
            self.events.status(status.wamid, status.status, status.timestamp, status.errors, now)
        for error in webhook.errors:
            log.warning("whatsapp webhook error: %s %s", error.get("code"), error.get("title"))
        return AcceptReport(senders, duplicates, len(webhook.statuses))

    # --- 2. turns ----------------------------------------------------------------------
    def process(self, wa_id: str) -> int:
        """Run the sender's waiting messages as turns, oldest first; answer how many."""
        done = 0
        while (message := self.inbox.next_for(wa_id)) is not None:
            turn = "wa:" + message["wamid"]
            try:
                self._turn(wa_id, turn, message)
            except (BusyError, ServiceUnavailableError, DatabaseError):
                # Not the message's fault (a web turn holds the user, an outage): retried.
                # Before ConflictError, of which BusyError is a kind.
                raise
            except ConflictError:
                pass  # handled before, and archived since: nothing to redo
            except Exception:
                if (
                    self.inbox.failed_attempt(message["wamid"])
                    < self.settings.whatsapp_turn_attempts
                ):
                    raise  # the task queue retries it; later messages wait (order)
                log.exception("whatsapp message %s dropped after repeated failures", turn)
            self.inbox.done(message["wamid"])
            self.outbox.make_ready(turn)
            done += 1
        return done

    def _turn(self, wa_id: str, turn: str, message: dict[str, Any]) -> None:
        now = self.clock.now()
        user = self.chat.users.by_phone_or_create("+" + wa_id, now)
        language = user.get("language") or "id"
        deliver = self._deliverer(user["id"], wa_id, turn, message["timestamp"], language)
        if message["text"] is None:
            # A photo, a voice note, a location...: the conversation reads only text.
            unreadable = self.texts("whatsapp_unsupported", language)
            self.chat.answer_without_turn(
                user, f"[{message['type']}]", turn, unreadable, deliver=deliver
            )
        else:
            self.chat.handle_message(user, message["text"], turn, deliver=deliver)

    def _deliverer(
        self, user_id: str, wa_id: str, turn: str, window_from: datetime, language: str
    ) -> Callable[[list[str], list[dict[str, Any]], datetime], None]:
        words = (
            self.texts("whatsapp_list_button", language),
            self.texts("whatsapp_list_section", language),
        )

        def deliver(ids: list[str], replies: list[dict[str, Any]], now: datetime) -> None:
            parts = [
                {"messageId": message_id, "body": body}
                for message_id, reply in zip(ids, replies, strict=True)
                for body in render_reply(wa_id, reply["text"], reply.get("quickReplies", []), words)
            ]
            seq = int(now.timestamp() * 1000)
            self.outbox.add(turn, user_id, wa_id, seq, parts, window_from, now)

        return deliver

    # --- messages the service starts ----------------------------------------------------
    def notify(
        self, wa_id: str, template: str, values: dict[str, str], ref: str
    ) -> dict[str, Any] | None:
        """Queue the approved template `template` to `wa_id` with these parameter values,
        in the parent's language (or the first approved one); the only kind of message
        Meta delivers outside the 24-hour window. `ref` names this notification: while
        one with the same `ref` is queued, another is not (None); the caller keeps what
        was sent for good (reminders do). Stored in the history like a reply; the caller
        queues the send (`TaskQueue.enqueue_send`)."""
        now = self.clock.now()
        user = self.chat.users.by_phone_or_create("+" + wa_id, now)
        rendered = self.templates.render(wa_id, template, user.get("language") or "id", values)
        turn = "notify:" + ref
        if self.outbox.has(turn):
            return None

        def deliver(ids: list[str], _replies: list[dict[str, Any]], at: datetime) -> None:
            part = {"messageId": ids[0], "body": rendered.body, "template": template}
            seq = int(at.timestamp() * 1000)
            # No message of the parent's opens a window for it: only a template may go.
            if not self.outbox.add(turn, user["id"], wa_id, seq, [part], None, at, ready=True):
                raise NotificationQueuedError(ref)

        try:
            return self.chat.notify(user, rendered.text, template, deliver)
        except NotificationQueuedError:
            return None

    def oldest_work_age(self) -> float:
        """Seconds since the oldest unfinished work (an inbox message or an outbox turn)
        arrived; 0 when there is none. Two small reads: both hold only unfinished work."""
        now = self.clock.now()
        found = [t for t in (self.inbox.oldest(), self.outbox.oldest()) if t is not None]
        return max(((now - t).total_seconds() for t in found), default=0.0)

    # --- 3. sends ----------------------------------------------------------------------
    def send(self, wa_id: str) -> int:
        """Send the recipient's ready turns in order; answer how many parts went out.

        Raises SendDeferredError when Meta throttles or cannot be reached: the part stays
        first in line, so the recipient's later replies wait behind it (order), and
        other recipients' do not.
        """
        assert self.graph is not None, "the channel was built without a Graph API client"
        sent = 0
        while (doc := self.outbox.next_for(wa_id)) is not None:
            if not doc["ready"]:
                return sent  # its turn is still being processed; `process` sends for it
            parts = len(doc["parts"])
            for part in range(doc["next"], parts):
                sent += self._send_part(doc, part, last=part == parts - 1)
            if doc["next"] >= parts:  # every part settled before a crash: only the delete left
                self.outbox.finish(doc["_id"])
        return sent

    def _settle(self, turn: str, part: int, last: bool) -> None:
        """The part has its outcome logged: on to the next, or (the last) the turn done,
        in one write."""
        if last:
            self.outbox.finish(turn)
        else:
            self.outbox.settled(turn, part)

    def _send_part(self, doc: dict[str, Any], part: int, last: bool) -> int:
        turn, message_id = doc["_id"], doc["parts"][part]["messageId"]
        user_id = doc["userId"]
        now = self.clock.now()
        if doc.get("sending") == part:
            # Tried before and its outcome never logged (a crash mid-call): it may have
            # gone out, so it is not sent again.
            self.events.failed(user_id, message_id, "send_unconfirmed", {}, now)
            self._settle(turn, part, last)
            self.observe("unconfirmed", None, 0.0)
            return 0
        retry_at = doc.get("retryAt")
        if retry_at is not None and retry_at > now:
            raise SendDeferredError("backing off", (retry_at - now).total_seconds())
        # Free-form messages only within 24 hours of the parent's last message; approved
        # templates at any time.
        window_from = doc["windowFrom"]
        if not doc["parts"][part].get("template") and (
            window_from is None or now - window_from > WINDOW
        ):
            self.events.failed(user_id, message_id, "outside_window", OUTSIDE_WINDOW, now)
            self._settle(turn, part, last)
            self.observe("outside_window", 131047, 0.0)
            return 0
        self.rate(doc["waId"])
        if not self.outbox.attempt(turn, part, now):
            raise SendDeferredError("another attempt is recorded", 1.0)
        started = time.perf_counter()
        assert self.graph is not None
        result = self.graph.send(doc["parts"][part]["body"])
        took = time.perf_counter() - started
        now = self.clock.now()
        if isinstance(result, Accepted):
            self.events.sent(user_id, message_id, result.wamid, now)
            self._settle(turn, part, last)
            self.observe("sent", None, took)
            return 1
        if isinstance(result, Retry):
            attempts = int(doc.get("attempts", 0))
            delay = backoff(attempts, self.settings.whatsapp_retry_max_s)
            self.outbox.not_sent(turn, part, now + timedelta(seconds=delay))
            self.observe("throttled" if result.throttled else "retried", None, took)
            raise SendDeferredError(result.reason, delay)
        if isinstance(result, Refused):
            reason = "outside_window" if result.outside_window else "whatsapp_refused"
            error = {"code": result.code, "title": result.title}
            self.events.failed(user_id, message_id, reason, error, now)
            self.observe("failed", result.code, took)
        elif isinstance(result, Unconfirmed):
            self.events.failed(
                user_id, message_id, "send_unconfirmed", {"title": result.reason}, now
            )
            self.observe("unconfirmed", None, took)
        self._settle(turn, part, last)
        return 0


def backoff(attempts: int, cap_s: float, base_s: float = 0.5) -> float:
    """Exponential backoff with jitter ("equal jitter"): half of min(cap, base * 2^n),
    plus up to as much again at random, so that throttled senders do not retry together."""
    delay = min(cap_s, base_s * float(2**attempts))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 -- jitter, not secrecy
