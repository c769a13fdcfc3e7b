"""Steady GETs and chat POSTs through nginx, and what became of each, read back from the database.

Used by the failover suites (test_failover.py, test_multihost.py). Each chat POST carries a
new clientMessageId; a 503 or 409 is sent again with the same id after its Retry-After (as
a real client does), a GET likewise. FAILOVER_GET_RATE and FAILOVER_CHAT_RATE set the rates
(requests per second, default 20 and 4).
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pymongo

from tests.harness import http

GET_RATE = float(os.environ.get("FAILOVER_GET_RATE", "20"))
CHAT_RATE = float(os.environ.get("FAILOVER_CHAT_RATE", "4"))
CHAT_USERS = 12  # each sends every CHAT_USERS / CHAT_RATE seconds
GET_THREADS = 8
MAX_RETRIES = 5  # a client resends a 503/409 this often, honouring Retry-After


class Target(Protocol):
    """A stack under load: nginx's URL and the database to read back."""

    url: str
    mongo_uri: str
    mongo_db: str

    def log_tail(self, lines: int = 60) -> str: ...


@dataclass
class Outcome:
    kind: str  # "get" or "chat"
    status: int | str  # the final answer (a status, or the exception's name)
    answers: list  # every answer, retries included
    cmid: str | None = None
    user: str | None = None
    replies: int = 0
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.status in (200, 201)


@dataclass
class Load:
    target: Target
    users: list[dict]
    burst_users: list[dict] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.stop.clear()
        self.outcomes = []
        self.threads = [
            threading.Thread(target=self._chat_loop, args=(u, i), daemon=True)
            for i, u in enumerate(self.users)
        ] + [
            threading.Thread(target=self._get_loop, args=(i,), daemon=True)
            for i in range(GET_THREADS)
        ]
        for t in self.threads:
            t.start()

    def finish(self) -> list[Outcome]:
        self.stop.set()
        for t in self.threads:
            t.join(90)
        return self.outcomes

    def burst(self) -> None:
        """One chat POST from each burst user at once, so that some are in flight on any
        instance or worker killed right after (the steady load's turns take ~20 ms)."""
        threads = [
            threading.Thread(target=self._one_chat, args=(u,), daemon=True)
            for u in self.burst_users
        ]
        for t in threads:
            t.start()
        self.threads.extend(threads)

    def _record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def _paced(self, period: float, offset: float, send: Callable[[int], None]) -> None:
        started = time.monotonic() + offset
        n = 0
        while not self.stop.is_set():
            delay = started + n * period - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            send(n)
            n += 1

    def _send(self, method: str, path: str, body=None, headers=None) -> tuple[list, object]:
        answers: list = []
        reply = None
        for _ in range(MAX_RETRIES + 1):
            try:
                reply = http(method, self.target.url + path, body, headers, timeout=40)
            except OSError as exc:  # a reset or refused connection reached the client
                answers.append(type(exc).__name__)
                reply = None
                break
            answers.append(reply.status)
            if reply.status not in (503, 409):
                break
            time.sleep(min(float(reply.headers.get("Retry-After") or 1), 2.0))
        return answers, reply

    def _one_chat(self, user: dict) -> None:
        cmid = f"fo-{uuid.uuid4().hex}"
        answers, reply = self._send(
            "POST", "/api/v1/chat/messages", {"text": "halo", "clientMessageId": cmid},
            user["headers"],
        )  # fmt: skip
        outcome = Outcome("chat", answers[-1], answers, cmid, user["id"])
        if reply is not None and reply.status in (200, 201):
            body = reply.json()
            outcome.replies = len(body["replies"])
            outcome.duplicate = bool(body.get("duplicate"))
        self._record(outcome)

    def _chat_loop(self, user: dict, index: int) -> None:
        period = len(self.users) / CHAT_RATE
        self._paced(period, index * period / len(self.users), lambda n: self._one_chat(user))

    def _get_loop(self, index: int) -> None:
        period = GET_THREADS / GET_RATE
        user = self.users[index % len(self.users)]
        paths = ["/livez", "/api/v1/chat/messages?limit=10", "/api/v1/children"]

        def send(n: int) -> None:
            path = paths[n % len(paths)]
            answers, _ = self._send("GET", path, None, user["headers"])
            self._record(Outcome("get", answers[-1], answers))

        self._paced(period, index * period / GET_THREADS, send)


def duplicated(target: Target, outcomes: list[Outcome]) -> tuple[int, int]:
    """(duplicated, lost) chat turns, read back from the database."""
    from bson import ObjectId

    chats = [o for o in outcomes if o.kind == "chat" and o.cmid]
    turns = {o.cmid for o in chats}
    inbound: collections.Counter = collections.Counter()
    outbound: collections.Counter = collections.Counter()
    with pymongo.MongoClient(target.mongo_uri) as client:
        users = list({ObjectId(o.user) for o in chats})
        for doc in client[target.mongo_db]["messages"].find(
            {"userId": {"$in": users}}, {"turn": 1, "direction": 1}
        ):
            if doc.get("turn") in turns:
                (inbound if doc["direction"] == "inbound" else outbound)[doc["turn"]] += 1
    dup = lost = 0
    for o in chats:
        if inbound[o.cmid] > 1 or (o.ok and outbound[o.cmid] > o.replies):
            dup += 1
        if o.ok and inbound[o.cmid] == 0:
            lost += 1
    return dup, lost


def report(name: str, target: Target, outcomes: list[Outcome], note: str = "") -> dict:
    failed = collections.Counter(str(o.status) for o in outcomes if not o.ok)
    dup, lost = duplicated(target, outcomes)
    retried = sum(1 for o in outcomes if len(o.answers) > 1)
    counts = {
        "scenario": name,
        "sent": len(outcomes),
        "gets": sum(1 for o in outcomes if o.kind == "get"),
        "chat_posts": sum(1 for o in outcomes if o.kind == "chat"),
        "succeeded": sum(1 for o in outcomes if o.ok),
        "failed": dict(failed),
        "duplicated": dup,
        "lost": lost,
        "resent_after_503_or_409": retried,
        "answered_duplicate_true": sum(1 for o in outcomes if o.duplicate),
    }
    print(f"\nfailover {json.dumps(counts)}{'  ' + note if note else ''}")
    return counts


def check(counts: dict, target: Target) -> None:
    assert counts["failed"] == {}, f"{counts}\n{target.log_tail()}"
    assert counts["duplicated"] == 0 and counts["lost"] == 0, counts
    assert counts["sent"] > 0 and counts["chat_posts"] > 0, counts


def make_users(target: Target, count: int = CHAT_USERS) -> list[dict]:
    """`count` new users, each with a token and its id in the database."""
    users = []
    for i in range(count):
        phone = f"0813{uuid.uuid4().int % 10**8:08d}"
        reply = http("POST", target.url + "/api/v1/chat/start", {"phoneNumber": phone})
        assert reply.status == 201, reply.body
        token = reply.json()["token"]
        users.append({"phone": phone, "headers": {"Authorization": f"Bearer {token}"}, "index": i})
    with pymongo.MongoClient(target.mongo_uri) as client:
        db = client[target.mongo_db]
        for user in users:
            e164 = "+62" + user["phone"][1:]
            user["id"] = str(db["users"].find_one({"phoneNumber": e164})["_id"])
    return users


def under_load(load: Load, event: Callable[[], str], steady_s: float) -> tuple[list[Outcome], str]:
    """Run the load, `event()` after steady_s, steady_s more; (outcomes, event's note)."""
    load.start()
    try:
        time.sleep(steady_s)
        note = event()
        time.sleep(steady_s)
    finally:
        outcomes = load.finish()
    return outcomes, note
