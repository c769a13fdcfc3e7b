"""Chat through a Redis outage, under load, through nginx and both instances.

Redis is SIGKILLed (then started again, empty) and SIGSTOPped (then continued, with its
old entries) for REDIS_OUTAGE_S while users chat. Chat turns take MongoDB leases
meanwhile (chatbot/chat/locks.py). Every attempt is timed: a 5xx may only come within
1 s around a transition; every message is answered once (a 503 is resent with the same
clientMessageId, as a client does); each screening's answers are recorded in order.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

import pymongo
import pytest

from tests.harness import http
from tests.support import TODDLER_TODAY, HttpChat

pytestmark = pytest.mark.e2e

OUTAGE_S = float(os.environ.get("REDIS_OUTAGE_S", "10"))
STEADY_S = 3.0
CHATTERS = 6  # each says "halo" every second
SCREENERS = 2  # each answers its screening's next question every 1.5 s


@dataclass
class Attempt:
    sent: float
    done: float
    status: int | str


@dataclass
class Traffic:
    stack: object
    attempts: list[Attempt] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)  # cmid -> final status
    answers: dict[str, int] = field(default_factory=dict)  # screener phone -> answers given
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, chat: HttpChat, text: str) -> int | str:
        """Send until answered (503/409 resent with the same id after Retry-After)."""
        cmid = f"ro-{uuid.uuid4().hex}"
        status: int | str = "never"
        for _ in range(20):
            started = time.monotonic()
            retry_after = 1.0
            try:
                reply = chat.send(text, cmid)
                status = reply.status
                retry_after = float(reply.headers.get("Retry-After") or 1)
            except OSError as exc:
                status = type(exc).__name__
            with self.lock:
                self.attempts.append(Attempt(started, time.monotonic(), status))
            if status not in (503, 409):
                break
            time.sleep(min(retry_after, 1.0))
        with self.lock:
            self.answered[cmid] = status  # type: ignore[assignment]
        return status

    def chatter(self, chat: HttpChat, offset: float) -> None:
        time.sleep(offset)
        while not self.stop.is_set():
            self.send(chat, "halo")
            self.stop.wait(1.0)

    def screener(self, chat: HttpChat) -> None:
        while not self.stop.is_set() and self.answers[chat.phone] < 9:
            if self.send(chat, "ya") in (200, 201):
                self.answers[chat.phone] += 1
            self.stop.wait(1.5)


def _screener(stack, phone: str) -> HttpChat:
    chat = HttpChat(stack.url, phone)
    for text in ("halo", "ya", "1", "Budi", TODDLER_TODAY, "1", "38", "ya"):
        chat.say(text)
    return chat


def _outage(stack, name: str, begin, end, phones: range) -> None:
    chatters = [HttpChat(stack.url, f"08130000{n:04d}") for n in phones[:CHATTERS]]
    screeners = [_screener(stack, f"08130000{n:04d}") for n in phones[CHATTERS:]]
    traffic = Traffic(stack, answers={c.phone: 0 for c in screeners})
    threads = [
        threading.Thread(target=traffic.chatter, args=(c, n / CHATTERS), daemon=True)
        for n, c in enumerate(chatters)
    ] + [threading.Thread(target=traffic.screener, args=(c,), daemon=True) for c in screeners]
    for t in threads:
        t.start()
    try:
        time.sleep(STEADY_S)
        began = time.monotonic()
        begin()
        time.sleep(OUTAGE_S)
        ended = time.monotonic()
        end()
        time.sleep(STEADY_S + 2)
    finally:
        traffic.stop.set()
        for t in threads:
            t.join(30)
    attempts = traffic.attempts
    errors = [a for a in attempts if not isinstance(a.status, int) or a.status >= 500]
    during = [a for a in attempts if began <= a.sent <= ended]
    print(
        f"\nredis {name}: {len(attempts)} attempts ({len(during)} during the outage), "
        f"slowest {max(a.done - a.sent for a in attempts):.2f} s, "
        f"{len(errors)} 5xx or errors: "
        + ", ".join(f"{a.status} at {a.sent - began:+.2f} s" for a in errors)
    )
    assert during, "no chat turn was sent during the outage"
    # Every 5xx within 1 s around a transition.
    for transition in (began, ended):
        near = [a for a in errors if transition - 0.5 <= a.sent <= transition + 1.5]
        if near:
            assert max(a.done for a in near) - min(a.sent for a in near) <= 1.0, near
    far = [a for a in errors if not (began - 0.5 <= a.sent <= began + 1.5)]
    far = [a for a in far if not (ended - 0.5 <= a.sent <= ended + 1.5)]
    assert not far, far
    # Nothing lost, nothing twice: every message answered, stored once with its replies.
    assert all(s in (200, 201) for s in traffic.answered.values()), traffic.answered
    uri, db_name = stack.apps[0].app_env["MONGO_URI"], stack.apps[0].app_env["MONGO_DB"]
    with pymongo.MongoClient(uri) as client:
        db = client[db_name]
        inbound = {}
        for doc in db["messages"].find(
            {"turn": {"$in": list(traffic.answered)}}, {"turn": 1, "direction": 1}
        ):
            if doc["direction"] == "inbound":
                inbound[doc["turn"]] = inbound.get(doc["turn"], 0) + 1
        assert inbound == dict.fromkeys(traffic.answered, 1)
        replied = set(db["messages"].distinct("turn", {"direction": "outbound"}))
        assert set(traffic.answered) <= replied
        # Each screening's answers: one per answered "ya", in order, none twice.
        for chat in screeners:
            user = db["users"].find_one({"phoneNumber": "+62" + chat.phone[1:]})
            questionnaire = db["questionnaires"].find_one(
                {"userId": user["_id"]}, sort=[("startedAt", -1)]
            )
            numbers = [a["number"] for a in questionnaire["answers"]]
            assert numbers == list(range(1, traffic.answers[chat.phone] + 1)), numbers
        assert db["leases"].count_documents({}) == 0


def test_chat_goes_on_while_redis_is_killed_and_started_again(stack):
    _outage(
        stack,
        "SIGKILL",
        lambda: stack.redis.stop(signal.SIGKILL),
        stack.redis.start,
        range(1000, 1000 + CHATTERS + SCREENERS),
    )
    assert http("GET", stack.url + "/health").status == 200


def test_chat_goes_on_while_redis_is_frozen_and_continued(stack):
    pid = stack.redis.proc.pid
    _outage(
        stack,
        "SIGSTOP",
        lambda: os.kill(pid, signal.SIGSTOP),
        lambda: os.kill(pid, signal.SIGCONT),
        range(1100, 1100 + CHATTERS + SCREENERS),
    )
    assert http("GET", stack.url + "/health").status == 200
