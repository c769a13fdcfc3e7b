"""Reminders when a screening is due: the schedule in Redis, sent by the sweeper's loop.

- **The schedule** is a Redis sorted set (`reminders:due`, a child's id scored by when
  its reminder may go) and a hash (`reminders:items`: the parent, the child's name, what
  is due, the stage), so a run reads what is due and nothing else: its cost grows with
  what is due, not with the number of children. MongoDB is the truth
  (chatbot/db/reminders.py): changes arrive through `reminder_changes` (a completed
  screening, an archived child), and when Redis lost the schedule (the `reminders:built`
  marker is gone) it is rebuilt once from the children's results and `reminders_sent`.
- **A run** (`run`, every sweep, on every instance): one at a time (a Redis lock); each
  due reminder is claimed by a unique insert in `reminders_sent` before it is sent, so
  two schedulers, or a run after a crash, never send one twice. Sent: as a WhatsApp
  template (approved, so the 24-hour window does not matter) when the channel is on, and
  on the web page as the first thing said on the parent's next visit (the user's
  `pendingReminder`, which also makes the parent's next message start that child's
  screening, or answer the referral's follow-up question).
- **Rules**: only within the quiet hours in the parent's time zone (REMINDER_HOURS,
  08-20, TIMEZONE); one reminder per child and due date, then one follow-up
  REMINDER_FOLLOW_UP_DAYS later, then none; nothing to a parent who opted out
  ("berhenti" / "stop"; "mulai" / "start" opts in again: chatbot/screening/onboarding.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis

from chatbot.chat.users import UserDirectory
from chatbot.db import Database
from chatbot.db.children import ChildRepository
from chatbot.db.reminders import ReminderChanges, ReminderLog
from chatbot.redis_store import RedisStore
from chatbot.screening.schedule import TEMPLATE, WHEN_TEXT, Due, QuietHours, due_of
from chatbot.screening.texts import Texts
from chatbot.settings import Settings

log = logging.getLogger(__name__)

# Told (the parent's number without "+", template key, its values, a reference) for a
# reminder on WhatsApp; None when the channel is off.
Notify = Callable[[str, str, dict[str, str], str], None]
LOCK_TIMEOUT_S = 120


class ReminderSchedule:
    """Who is due when, in Redis: written as the child changes (a completed screening, an
    archived child), read by the run. A change written while Redis is down goes to
    `reminder_changes` instead (durable), applied by the next run; MongoDB stays the truth
    either way (the child's lastScreening, and `reminders_sent`), so a lost schedule is
    rebuilt from it."""

    def __init__(
        self, db: Database[dict[str, Any]], redis_store: RedisStore, settings: Settings
    ) -> None:
        self.redis = redis_store
        self.settings = settings
        self.changes = ReminderChanges(db)
        self.due_key = redis_store.key("reminders", "due")
        self.items_key = redis_store.key("reminders", "items")

    def hours(self, user: dict[str, Any]) -> QuietHours:
        zone = ZoneInfo(user.get("timeZone") or self.settings.timezone)
        return QuietHours(zone, self.settings.reminder_start_hour, self.settings.reminder_end_hour)

    def changed(self, child: dict[str, Any], last_screening: Any, now: datetime) -> None:
        """What the child's schedule is now (None: nothing, e.g. archived)."""
        due = due_of(last_screening)
        try:
            if due is None:
                self.drop(child["id"])
            else:
                self.schedule(child["id"], child["userId"], child["name"], due, 1)
        except redis.RedisError:
            self.changes.record(
                child["id"], child["userId"], child["name"], due.as_dict() if due else None, now
            )

    def put(self, child_id: str, item: dict[str, Any], at: datetime) -> None:
        client = self.redis.client
        assert client is not None
        with client.pipeline(transaction=True) as p:
            p.hset(self.items_key, child_id, json.dumps(item))
            p.zadd(self.due_key, {child_id: at.timestamp()})
            p.execute()

    def drop(self, child_id: str) -> None:
        client = self.redis.client
        assert client is not None
        with client.pipeline(transaction=True) as p:
            p.zrem(self.due_key, child_id)
            p.hdel(self.items_key, child_id)
            p.execute()

    def schedule(self, child_id: str, user_id: str, name: str, due: Due, stage: int) -> None:
        item = {"userId": user_id, "name": name, "kind": due.kind, "on": due.on.isoformat(),
                "stage": stage}  # fmt: skip
        on = (
            due.on if stage == 1 else due.on + timedelta(days=self.settings.reminder_follow_up_days)
        )
        self.put(child_id, item, self.hours({}).first_moment(on))


class ReminderService:
    def __init__(
        self,
        db: Database[dict[str, Any]],
        redis_store: RedisStore,
        users: UserDirectory,
        settings: Settings,
        schedule: ReminderSchedule,
        notify: Notify | None,
    ) -> None:
        self.db = db
        self.redis = redis_store
        self.users = users
        self.settings = settings
        self.notify = notify
        self.plan = schedule
        self.changes = schedule.changes
        self.log = ReminderLog(db)
        self.texts = Texts()
        self.due_key = schedule.due_key
        self.items_key = schedule.items_key
        self.built_key = redis_store.key("reminders", "built")

    def rebuild(self) -> int:
        """The schedule again from MongoDB (Redis lost it): every active child's due
        reminder, at the stage `reminders_sent` says is next. A scan, once."""
        claimed = self.log.claimed()
        count = 0
        for child in ChildRepository(self.db).scheduled():
            due = due_of(child.get("lastScreening"))
            if due is None:
                continue
            stage = 1
            if ReminderLog.key(child["id"], due.on.isoformat(), 1) in claimed:
                stage = 2
                if ReminderLog.key(child["id"], due.on.isoformat(), 2) in claimed:
                    continue
            self.plan.schedule(child["id"], child["userId"], child["name"], due, stage)
            count += 1
        return count

    def apply_changes(self) -> int:
        """The changes written while Redis was down. Each is applied from the child as it
        is now in MongoDB (not as recorded), so a later change that reached Redis
        directly is never undone by an older one applied after it."""
        changes = self.changes.take(self.settings.reminder_batch_size)
        children = ChildRepository(self.db)
        for change in changes:
            child = children.get(change["childId"])
            active = child is not None and child.get("status") == "active"
            due = due_of(child.get("lastScreening")) if child and active else None
            if child is None or due is None:
                self.plan.drop(change["childId"])
            else:
                self.plan.schedule(child["id"], child["userId"], child["name"], due, 1)
        self.changes.done([c["_id"] for c in changes])
        return len(changes)

    # --- a run ------------------------------------------------------------------------------
    def run(self, now: datetime) -> dict[str, int]:
        """Send what is due by `now`; one run at a time across every instance."""
        client = self.redis.client
        assert client is not None
        lock = client.lock(self.redis.key("reminders", "run"), timeout=LOCK_TIMEOUT_S)
        if not lock.acquire(blocking=False):
            return {"remindersBusy": 1}
        try:
            report = {"remindersRebuilt": 0}
            if not client.exists(self.built_key):
                report["remindersRebuilt"] = self.rebuild()
                client.set(self.built_key, now.isoformat())
            report["reminderChanges"] = self.apply_changes()
            found = client.zrangebyscore(
                self.due_key, "-inf", now.timestamp(), start=0,
                num=self.settings.reminder_batch_size,
            )  # fmt: skip
            members = [m.decode() if isinstance(m, bytes) else str(m) for m in found]
            outcomes: dict[str, int] = {}
            if members:
                raws = client.hmget(self.items_key, members)
                for child_id, raw in zip(members, raws, strict=True):
                    outcome = self._remind(child_id, json.loads(raw), now) if raw else "gone"
                    if outcome == "gone":
                        self.plan.drop(child_id)
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
            report |= {f"reminders_{k}": v for k, v in outcomes.items()}
            return report
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 -- expired: the next run takes it again
                log.warning("reminder lock expired during a run")

    def _remind(self, child_id: str, item: dict[str, Any], now: datetime) -> str:
        user = self.users.get(item["userId"])
        if user is None or user.get("remindersOptOutAt"):
            return "gone"  # opted out: nothing more for this child until the next result
        hours = self.plan.hours(user)
        allowed = hours.allowed(now)
        if allowed > now:
            self.plan.put(child_id, item, allowed)
            return "deferred"
        stage = int(item["stage"])
        if self.log.claim(child_id, item["on"], stage, item["userId"], item["kind"], now):
            self._send(child_id, item, user)
            outcome = "sent"
        else:
            outcome = "taken"  # sent by another run: move on as if this one had
        if stage == 1:
            item = {**item, "stage": 2}
            today = now.astimezone(hours.tz).date()
            later = today + timedelta(days=self.settings.reminder_follow_up_days)
            self.plan.put(child_id, item, hours.first_moment(later))
        else:
            self.plan.drop(child_id)
        return outcome

    def _send(self, child_id: str, item: dict[str, Any], user: dict[str, Any]) -> None:
        """The web page's next visit, and WhatsApp; a failure is logged, not retried (the
        reminder is claimed: at most once)."""
        pending = {"childId": child_id, "kind": item["kind"], "on": item["on"],
                   "stage": item["stage"]}  # fmt: skip
        try:
            self.users.set_fields(user["id"], pendingReminder=pending)
        except Exception:  # the WhatsApp half may still go
            log.exception("reminder for child %s: the web's pending reminder not stored", child_id)
        if self.notify is None:
            return
        language = user.get("language") or "id"
        on = datetime.fromisoformat(item["on"]).date()
        values = {
            "child": item["name"],
            "when": self.texts(WHEN_TEXT[item["kind"]], language,
                               date=on.strftime("%d-%m-%Y")),
        }  # fmt: skip
        ref = ReminderLog.key(child_id, item["on"], int(item["stage"]))
        try:
            self.notify(user["phoneNumber"].lstrip("+"), TEMPLATE[item["kind"]], values, ref)
        except Exception:  # logged; the web half is stored
            log.exception("reminder for child %s not queued on WhatsApp", child_id)
