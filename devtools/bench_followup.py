"""The follow-up section of the benchmark (devtools/bench.py): reminders and the health
workers' page, at a small and a large number of children in the system.

1. A posyandu of 2,000 children (BENCH01, varied results) and other children elsewhere:
   1,000 first, then 100,000. Children, their parents and last results are inserted with
   PyMongo in the service's shapes (chatbot/db/children.py), as turns would have left them.
2. At each size, through nginx at a constant rate with a health worker's token: the
   page's first list (GET /api/v1/worker/due, each request a different `limit`, so no
   response cache answers it: the cost of the list itself) and the month's CSV export of
   the posyandu (never cached): p50 and p99.
3. At each size, the reminder job as the sweeper runs it (`services().reminders.run`,
   the same code, in this process so that its MongoDB commands can be counted): the
   schedule rebuilt once from MongoDB (the one scan, what happens when Redis lost it),
   then runs until nothing is due: 1,000 due at the small size, 5,000 at the large.
   Time per reminder and MongoDB operations per reminder. The quiet hours are opened
   (REMINDER_START_HOUR=0, _END_HOUR=24) so that the run does not depend on the hour.

The instances' own sweepers send no reminders here (REMINDERS_ENABLED=0 in bench.py's
environment), so every reminder is this section's and none is sent twice by accident.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import monitoring

POSYANDU, ELSEWHERE = "BENCH01", "OTHER01"
IN_POSYANDU = 2_000
SIZES = (1_000, 100_000)  # children elsewhere in the system
DUE = {1_000: 1_000, 100_000: 5_000}  # reminders due at each size
PAGE_RATE, PAGE_SECONDS = 2, 15.0
WORKER_PHONE = "081977000001"
NOT_WORK = {"hello", "ismaster", "isMaster", "ping", "endSessions", "buildInfo",
            "saslStart", "saslContinue"}  # fmt: skip


class Counting(monitoring.CommandListener):
    """MongoDB commands by name, while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.commands: Counter[str] = Counter()

    def started(self, event: Any) -> None:
        if self.on and event.command_name not in NOT_WORK:
            self.commands[event.command_name] += 1

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


def children_docs(
    count: int, posyandu: str, due: int, now: datetime, start: int
) -> tuple[list[dict], list[dict]]:
    """`count` parents with one child each: `due` of them due for a routine screening
    today, the others due later (or re-screens, referrals, never screened in the
    posyandu: what the page groups)."""
    rng = random.Random(start)  # noqa: S311 -- test data, not secrets
    users, children = [], []
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for n in range(start, start + count):
        uid = ObjectId()
        users.append({
            "_id": uid, "phoneNumber": f"+6289{n:09d}", "role": "parent", "language": "id",
            "consentAt": now, "tokenVersion": "bench", "createdAt": now,
            "posyandu": posyandu,
        })  # fmt: skip
        k = n - start
        if k < due:
            action, next_due, category = "routine", today - timedelta(days=1), "appropriate"
        else:
            kind = rng.random()
            if kind < 0.1:
                action, category = "rescreen_2_weeks", "doubtful"
                next_due = today + timedelta(days=5)
            elif kind < 0.15:
                action, next_due, category = "refer", today, "possible_deviation"
            else:
                action, category = "routine", "appropriate"
                next_due = today + timedelta(days=rng.randint(10, 400))
        # A referral's follow-up is due a week after its screening: a day ago, not yet.
        completed = now - timedelta(days=1 if action == "refer" else rng.randint(1, 60))
        last = {
            "questionnaireId": str(ObjectId()), "bracket": 21, "category": category,
            "riskLevel": {"appropriate": "low", "doubtful": "medium"}.get(category, "high"),
            "noByDomain": {} if category == "appropriate" else {"gross_motor": [1, 2]},
            "yesCount": 10 if category == "appropriate" else 7, "itemCount": 10,
            "nextAction": action, "nextDueAt": next_due, "completedAt": completed,
        }  # fmt: skip
        children.append({
            "userId": uid, "name": f"Anak {n}", "sex": "male" if n % 2 else "female",
            "birthDate": now - timedelta(days=640 + n % 300), "gestationalWeeks": 38,
            "status": "active", "posyandu": posyandu, "createdAt": now,
            "lastScreening": None if posyandu == POSYANDU and k % 40 == 39 else last,
        })  # fmt: skip
    return users, children


def insert(db: Any, users: list[dict], children: list[dict]) -> None:
    for i in range(0, len(users), 5000):
        db["users"].insert_many(users[i : i + 5000], ordered=False)
        db["children"].insert_many(children[i : i + 5000], ordered=False)


def questionnaires_of(db: Any, children: list[dict], month_start: datetime) -> int:
    """One completed screening this month per posyandu child (what the export reads)."""
    docs = []
    for child in children:
        last = child["lastScreening"]
        if not last:
            continue
        docs.append({
            "childId": child["_id"], "userId": child["userId"], "status": "completed",
            "posyandu": child["posyandu"], "completedMonth": month_start.strftime("%Y-%m"),
            "childName": child["name"], "childSex": child["sex"],
            "age": {"chronological": {"months": 21, "days": 3}, "corrected": None,
                    "usedMonths": 21},
            "screeningDate": month_start, "referenceBirthDate": child["birthDate"],
            "bracket": 21, "category": last["category"], "riskLevel": last["riskLevel"],
            "yesCount": last["yesCount"], "itemCount": 10, "noByDomain": last["noByDomain"],
            "nextAction": last["nextAction"], "nextDueAt": last["nextDueAt"],
            "completedAt": max(month_start, last["completedAt"]),
        })  # fmt: skip
    for i in range(0, len(docs), 5000):
        db["questionnaires"].insert_many(docs[i : i + 5000], ordered=False)
    return len(docs)


class FollowUpBench:
    def __init__(
        self,
        stack: Any,
        vegeta: Any,
        db: Any,
        target: Callable[..., dict],
        print_step: Callable[[Any], None],
        sizes: tuple[int, ...] = SIZES,
        due: dict[int, int] | None = None,
        page_seconds: float = PAGE_SECONDS,
    ) -> None:
        self.stack, self.vegeta, self.db = stack, vegeta, db
        self.target, self.print_step = target, print_step
        self.sizes, self.due = sizes, due or DUE
        self.page_seconds = page_seconds
        self.now = datetime.now(UTC)
        self.listed = 0  # limits used so far (each request its own; at most 500)

    def run(self) -> dict[str, Any]:
        print("\nfollow-up: reminders and the health workers' page", flush=True)
        self.db["posyandu"].insert_many([
            {"_id": POSYANDU, "name": "Posyandu Bench", "createdAt": self.now},
            {"_id": ELSEWHERE, "name": "Elsewhere", "createdAt": self.now},
        ])  # fmt: skip
        t0 = time.monotonic()
        users, kids = children_docs(IN_POSYANDU, POSYANDU, 0, self.now, 1)
        insert(self.db, users, kids)
        month = self.now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        screenings = questionnaires_of(self.db, kids, month)
        token = self.worker_token()
        results: dict[str, Any] = {"in_posyandu": IN_POSYANDU, "screenings": screenings,
                                   "sizes": {}}  # fmt: skip
        placed, start = 0, 1_000_000
        for size in self.sizes:
            due = self.due[size]
            users, kids = children_docs(size - placed, ELSEWHERE, due, self.now, start)
            # The ones due first, then the rest: at the large size only `due` are due.
            insert(self.db, users, kids)
            start += size - placed
            placed = size
            seeded = time.monotonic() - t0
            total = self.db["children"].count_documents({})
            print(f"  {total:,} children in the system ({seeded:.0f} s to seed)", flush=True)
            page = self.page(token, total)
            job = self.reminders(due)
            results["sizes"][str(size)] = {"children": total, **page, "job": job}
            t0 = time.monotonic()
        return results

    def worker_token(self) -> str:
        from tests.harness import http

        start = http("POST", self.stack.url + "/api/v1/chat/start", {"phoneNumber": WORKER_PHONE})
        assert start.status == 201, start.body
        token: str = start.json()["token"]
        env = {**os.environ, **self.stack.app_env()}
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "chatbot", "grant-role",
             WORKER_PHONE, "health_worker", "--posyandu", POSYANDU],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        return token

    def page(self, token: str, total: int) -> dict[str, Any]:
        base = self.stack.url
        n = int(PAGE_RATE * self.page_seconds) + 1
        # Each a different limit: a different response-cache key, so the list is built
        # (the seeding, straight into MongoDB, bumps no cache counter between sizes).
        first = 500 - self.listed  # the largest pages the API gives, downwards
        self.listed += n
        lists = [self.target("GET", f"{base}/api/v1/worker/due?limit={first - i}", token)
                 for i in range(n)]  # fmt: skip
        export = [self.target("GET", f"{base}/api/v1/worker/export.csv", token)] * n
        out = {}
        for label, targets in (("first list", lists), ("CSV export", export)):
            step = self.vegeta.attack(f"{label} @{total:,}", targets, PAGE_RATE, self.page_seconds)
            self.print_step(step)
            out[label] = step.summary()
        return out

    def reminders(self, due: int) -> dict[str, Any]:
        """The job in this process on the stack's database and Redis, commands counted."""
        from chatbot import create_app
        from chatbot.services import services
        from chatbot.settings import Settings

        listener = Counting()
        monitoring.register(listener)  # before the app's client is made
        env = {**self.stack.app_env(), "REMINDERS_ENABLED": "1", "REMINDER_START_HOUR": "0",
               "REMINDER_END_HOUR": "24"}  # fmt: skip
        app = create_app(Settings.from_env(env))
        sent = 0
        runs = 0
        with app.app_context():
            reminders = services().reminders
            redis_client = reminders.redis.client
            redis_client.delete(reminders.built_key)  # Redis "lost" it: rebuilt once
            listener.on = True
            t0 = time.monotonic()
            first = reminders.run(datetime.now(UTC))
            rebuild_s = time.monotonic() - t0
            rebuilt = first.get("remindersRebuilt", 0)
            rebuild_ops = sum(listener.commands.values())
            sent += first.get("reminders_sent", 0)
            listener.commands.clear()
            t1 = time.monotonic()
            while True:
                report = reminders.run(datetime.now(UTC))
                runs += 1
                sent += report.get("reminders_sent", 0)
                if not any(k.startswith("reminders_") for k in report) or runs > 1000:
                    break
            job_s = time.monotonic() - t1
            ops = dict(listener.commands)
            listener.on = False
        total_ops = sum(ops.values())
        # The first run rebuilt the schedule and sent a batch; its sends are counted in
        # `sent`, its operations in the rebuild's (a scan): per reminder from the rest.
        later_sent = sent - first.get("reminders_sent", 0)
        result = {
            "due": due,
            "sent": sent,
            "rebuilt": rebuilt,
            "rebuild_s": round(rebuild_s, 2),
            "rebuild_ops": rebuild_ops,
            "runs": runs,
            "job_s": round(job_s, 2),
            "ms_per_reminder": round(1000 * job_s / later_sent, 2) if later_sent else None,
            "ops": ops,
            "ops_per_reminder": round(total_ops / later_sent, 2) if later_sent else None,
        }
        print(
            f"  reminder job: {sent:,} of {due:,} due sent; schedule rebuilt from MongoDB"
            f" ({rebuilt:,} children) in {rebuild_s:.1f} s; then {later_sent:,} in"
            f" {job_s:.1f} s over {runs} runs: {result['ms_per_reminder']} ms and"
            f" {result['ops_per_reminder']} MongoDB operations per reminder {ops}",
            flush=True,
        )
        return result


def goals(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not section:
        return []
    small, large = (section["sizes"][str(s)] for s in sorted(int(k) for k in section["sizes"]))
    rows: list[dict[str, Any]] = []

    def add(name: str, value: str, target: str, ok: bool | None) -> None:
        rows.append({"goal": name, "measured": value, "target": target, "pass": ok, "note": ""})

    for job, size in ((small["job"], small["children"]), (large["job"], large["children"])):
        add(f"reminders due at {size:,} children: every one sent once",
            f"{job['sent']:,} of {job['due']:,}", "all", job["sent"] == job["due"])  # fmt: skip
    a, b = small["job"]["ops_per_reminder"], large["job"]["ops_per_reminder"]
    add("reminder job: MongoDB operations per reminder, small vs large system",
        f"{a} vs {b}", "the same, within 10% (grows with what is due)",
        bool(a and b and abs(b - a) <= 0.1 * a))  # fmt: skip
    ta, tb = small["job"]["ms_per_reminder"], large["job"]["ms_per_reminder"]
    add("reminder job: time per reminder, large / small", f"{ta} / {tb} ms",
        "<= 1.5x", bool(ta and tb and tb <= 1.5 * ta))  # fmt: skip
    for label in ("first list", "CSV export"):
        pa, pb = small[label]["p50_ms"], large[label]["p50_ms"]
        add(f"{label} of a 2,000-child posyandu: p50 at {small['children']:,} vs"
            f" {large['children']:,} children", f"{pa} / {pb} ms", "flat (<= 1.5x)",
            bool(pa and pb and pb <= 1.5 * pa))  # fmt: skip
    return rows


def docs(section: dict[str, Any]) -> list[str]:
    lines = ["## Follow-up: reminders and the health workers' page", "",
             "| children in the system | first list p50 / p99 | CSV export p50 / p99 |"
             " reminders sent | job time | per reminder | MongoDB ops per reminder |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for size in sorted(section["sizes"], key=int):
        s = section["sizes"][size]
        job = s["job"]
        lines.append(
            f"| {s['children']:,} | {s['first list']['p50_ms']} / {s['first list']['p99_ms']} ms"
            f" | {s['CSV export']['p50_ms']} / {s['CSV export']['p99_ms']} ms"
            f" | {job['sent']:,} of {job['due']:,} | {job['job_s']} s ({job['runs']} runs)"
            f" | {job['ms_per_reminder']} ms | {job['ops_per_reminder']} ({job['ops']}) |"
        )
    lines += ["", "The schedule rebuilt from MongoDB once (Redis lost it): "
              + ", ".join(f"{s['job']['rebuilt']:,} children in {s['job']['rebuild_s']} s"
                          for s in section["sizes"].values()) + "."]  # fmt: skip
    return lines
