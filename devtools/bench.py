"""Open-loop benchmark of the chatbot through nginx and two instances, with PASS/MISS goals.

    make bench                      # or: .venv/bin/python devtools/bench.py [options]
    .venv/bin/python devtools/bench.py --quick            # a smoke run, 1.5 minutes
    .venv/bin/python devtools/bench.py --rates 25,50,100 --seconds 10

It starts its own FerretDB, Redis, two gunicorn instances and nginx on free loopback
ports (tests/harness.py) and drives them with vegeta (devtools/bench_setup.sh builds it):
a constant arrival rate whatever the server does, and latency counted from each
request's *intended* send time, so queueing shows instead of slowing the client down.

1. 100 users, each in their own conversation, are driven through the API to the
   questionnaire, so the load is answer turns (the most frequent kind).
2. Hot-path latency at 1,000 and at 50,000 stored messages, side by side: chat turn,
   child summary, children list, first history page (seeded with PyMongo).
3. Capacity of GET /livez and of the three GETs at rising rates, as ratios.
4. The database's own limit: one answer turn's operations done directly with PyMongo at
   the service's concurrency (instances x workers x threads).
5. Chat turns at rising rates (25, 50, 100, 200, 400/s ...) until a rate is no longer
   served without error: achieved rate, p50/p99, errors by status, refused share (503),
   lock expiries from the instances' logs; then every accepted message is checked in the
   database (0 lost, 0 processed twice).
6. The cache layer, at rising rates: /livez, a warmed cached read (the child summary),
   a static file and a public GET from nginx's cache, a ~5 KB history page with gzip and
   with X-No-Compression; /livez and the reads at 64 connections (closed loop); the
   cache counters per tier from each instance's /metrics; then both instances restarted
   with CACHE_ENABLED=0 (every cache off) for the same read uncached, and put back.
7. WhatsApp (devtools/bench_whatsapp.py): signed webhooks through nginx at rising rates,
   1 in 10 redelivered, two queue workers, the Graph API emulator: acknowledgement and
   inbound-to-send latency, sends per second against the limit, queue depth over time;
   then 0 lost, 0 processed twice, 0 sent twice, order per user.
8. Follow-up (devtools/bench_followup.py): a posyandu of 2,000 children among 1,000 and
   then 100,000 others: the health workers' first list and CSV export through nginx, and
   the reminder job (1,000 and 5,000 due): time and MongoDB operations per reminder.
9. The goals, as PASS/MISS; docs/benchmarks.md, docs/benchmarks-latency.png and
   docs/benchmarks-whatsapp.png.

Everything shares the machine's cores, so absolute numbers are this machine's: read the
ratios within one run.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
import copy
import functools
import itertools
import json
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bson import ObjectId  # noqa: E402 -- after sys.path, like the rest
from pymongo import monitoring  # noqa: E402

from tests.harness import (  # noqa: E402 -- after sys.path
    FerretDB,
    GraphEmulator,
    Gunicorn,
    Nginx,
    Redis,
    http,
    init_db,
)

sys.path.insert(0, str(ROOT / "devtools"))  # devtools is not a package
import bench_followup  # noqa: E402 -- after sys.path
import bench_whatsapp  # noqa: E402 -- after sys.path

VEGETA = ROOT / ".build" / "bin" / "vegeta"
DOCS = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks-latency.png"
RAW = ROOT / "var" / "bench.json"
DB_NAME = "bench"
# The service's shape in this benchmark: 2 instances x WEB_CONCURRENCY x GUNICORN_THREADS.
INSTANCES, WORKERS, THREADS = 2, 2, 16
TIMEOUT_S = 15  # vegeta's per-request timeout (gunicorn's worker timeout is 30 s)
READERS = 10  # users whose history is seeded beyond a page (GET /chat/messages?limit=50)
READER_HISTORY = 60
LOCK_EXPIRED = re.compile(r"LockNotOwnedError|LockError|could not release the lock")


# --- configuration ---------------------------------------------------------------------
@dataclass
class Config:
    users: int = 100
    rates: list[int] = field(default_factory=lambda: [25, 50, 100, 200, 400])
    max_rate: int = 6400  # the chat ladder doubles past `rates` until it breaks, up to this
    seconds: float = 10.0  # per chat-turn rate
    get_rates: list[int] = field(default_factory=lambda: [50, 100, 200, 400, 800])
    get_max_rate: int = 12800
    get_seconds: float = 5.0  # per GET rate
    probe_rate: int = 10  # the side-by-side latency at 1,000 and 50,000 messages
    probe_seconds: float = 6.0
    sizes: tuple[int, int] = (1_000, 50_000)
    db_seconds: float = 8.0
    dup_every: int = 50  # every n-th chat request resends an earlier clientMessageId
    pause: float = 1.0  # seconds between two rates, for queues to drain
    # The cache layer (section 7): routes about as cheap as /livez, and the slower ones.
    cache_fast_rates: list[int] = field(default_factory=lambda: [400, 800, 1600])
    cache_slow_rates: list[int] = field(default_factory=lambda: [200, 400, 800])
    cache_max_rate: int = 12800
    closed_workers: int = 64  # "64 connections": vegeta's closed loop, -rate=0 -max-workers=64
    closed_seconds: float = 5.0
    cache_layer: bool = True
    # The WhatsApp section (devtools/bench_whatsapp.py): webhooks per second, doubling.
    whatsapp: bool = True
    whatsapp_only: bool = False
    whatsapp_rates: list[int] = field(default_factory=lambda: [50, 100, 200, 400])
    whatsapp_seconds: float = 10.0
    whatsapp_max_rate: int = 3200
    # The follow-up section (devtools/bench_followup.py): children elsewhere, reminders due.
    followup: bool = True
    followup_only: bool = False
    followup_sizes: tuple[int, ...] = (1_000, 100_000)
    followup_due: dict[int, int] = field(default_factory=lambda: {1_000: 1_000, 100_000: 5_000})
    followup_seconds: float = 15.0
    quick: bool = False


def quick_config() -> Config:
    return Config(
        users=10,
        rates=[20, 40],
        max_rate=1280,
        seconds=1.5,
        get_rates=[100, 200],
        get_seconds=1,
        probe_rate=10,
        probe_seconds=1,
        sizes=(1_000, 3_000),
        db_seconds=1.5,
        pause=0.3,
        cache_fast_rates=[200],
        cache_slow_rates=[200],
        cache_max_rate=200,  # one rate per route: a smoke test of the section
        closed_seconds=1,
        whatsapp_rates=[20],
        whatsapp_seconds=2,
        whatsapp_max_rate=20,
        followup_sizes=(200, 2_000),
        followup_due={200: 100, 2_000: 500},
        followup_seconds=3,
        quick=True,
    )


# --- vegeta ------------------------------------------------------------------------------
@dataclass
class Step:
    """One vegeta run at one constant rate."""

    label: str
    offered: float
    seconds: float
    sent: int = 0
    codes: Counter = field(default_factory=Counter)
    transport: Counter = field(default_factory=Counter)  # status 0: timeouts, resets
    accepted_ms: list[float] = field(default_factory=list)  # 2xx, from the intended send time
    refused_ms: list[float] = field(default_factory=list)  # 503
    refused_no_retry_after: int = 0
    send_lag_ms: float = 0.0  # p99 of (actual - intended) send time: the generator's own lag
    span_s: float = 0.0
    bodies: list[tuple[int, dict]] = field(default_factory=list)  # chat: (status, JSON body)
    lock_expiries: int = 0
    log_errors: int = 0
    health_polls: int = 0  # chat steps: /health polled every 100 ms during the step
    health_failed: int = 0  # ...and how many of those polls were not 200
    cache_status: Counter = field(default_factory=Counter)  # nginx's X-Cache-Status, if any
    workers: int = 0  # a closed loop of this many workers (rate 0), else open loop
    # With keep_rows: (seq, intended send time in Unix seconds, status) of every request.
    rows: list[tuple[int, float, int]] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.accepted_ms)

    @property
    def achieved(self) -> float:
        """2xx answers per second, from the first send to the last answer."""
        return self.ok / self.span_s if self.span_s else 0.0

    @property
    def errors(self) -> int:
        return self.sent - self.ok

    @property
    def refused(self) -> int:
        return len(self.refused_ms)

    @property
    def clean(self) -> bool:
        """Served without error: every request answered 2xx and the rate kept up."""
        return self.sent > 0 and self.errors == 0 and self.achieved >= 0.9 * self.offered

    def p(self, q: float, values: list[float] | None = None) -> float | None:
        values = self.accepted_ms if values is None else values
        return percentile(values, q)

    def error_summary(self) -> str:
        parts = [f"{c}:{n}" for c, n in sorted(self.codes.items()) if not 200 <= c < 300]
        parts += [f"{kind}:{n}" for kind, n in self.transport.most_common()]
        return " ".join(parts) or "-"

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "offered": self.offered,
            "seconds": self.seconds,
            "sent": self.sent,
            "achieved": round(self.achieved, 1),
            "p50_ms": rnd(self.p(50)),
            "p99_ms": rnd(self.p(99)),
            "codes": {str(k): v for k, v in sorted(self.codes.items())},
            "transport_errors": dict(self.transport),
            "refused": self.refused,
            "refused_p99_ms": rnd(self.p(99, self.refused_ms)),
            "refused_without_retry_after": self.refused_no_retry_after,
            "send_lag_p99_ms": round(self.send_lag_ms, 1),
            "lock_expiries": self.lock_expiries,
            "log_errors": self.log_errors,
            "health_polls": self.health_polls,
            "health_not_200": self.health_failed,
            "clean": self.clean,
            **({"nginx_cache": dict(self.cache_status)} if self.cache_status else {}),
            **({"closed_loop_workers": self.workers} if self.workers else {}),
        }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def rnd(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def parse_ts(text: str) -> float:
    """RFC 3339 with nanoseconds (vegeta's) -> Unix seconds as a float."""
    m = _TS.fullmatch(text)
    if not m:
        raise ValueError(f"unexpected timestamp {text!r}")
    base = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    zone = m.group(3)
    offset = 0 if zone == "Z" else (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return base + frac - (offset if zone.startswith("+") else -offset)


def target(
    method: str, url: str, token: str, body: dict | None = None, headers: dict | None = None
) -> dict[str, Any]:
    """One line of vegeta's JSON targets format (the body base64-encoded)."""
    line: dict[str, Any] = {
        "method": method,
        "url": url,
        "header": {"Authorization": [f"Bearer {token}"]} if token else {},
    }
    for name, value in (headers or {}).items():
        line["header"][name] = [value]
    if body is not None:
        line["header"]["Content-Type"] = ["application/json"]
        line["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    return line


class HealthWatch:
    """Polls /health through nginx every 100 ms while a step runs: does it flap under load?"""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.polls = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HealthWatch:
        if self.url:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            self.polls += 1
            if http("GET", self.url, timeout=5).status != 200:  # type: ignore[arg-type]
                self.failed += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


class Vegeta:
    def __init__(
        self,
        workdir: Path,
        logs: Callable[[], list[Path]],
        health_url: Callable[[], str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.logs = logs
        self.health_url = health_url
        self.runs = 0

    def attack(
        self,
        label: str,
        targets: list[dict[str, Any]],
        rate: float,
        seconds: float,
        keep_bodies: bool = False,
        workers: int = 0,
        keep_rows: bool = False,
    ) -> Step:
        """Send `targets` in order at `rate`/s for `seconds` (open loop: vegeta starts a new
        worker whenever every one is waiting, `-max-workers` unlimited).

        With `workers` (and rate 0): a closed loop instead, exactly that many workers each
        sending its next request when the last one is answered, as fast as they can (wrk's
        "N connections"); latency is then counted from each request's actual send.
        """
        self.runs += 1
        targets_file = self.workdir / f"targets-{self.runs}.json"
        results_file = self.workdir / f"results-{self.runs}.bin"
        with targets_file.open("w") as f:
            for line in targets:
                f.write(json.dumps(line) + "\n")
        offsets = {p: p.stat().st_size if p.exists() else 0 for p in self.logs()}
        health = HealthWatch(self.health_url() if keep_bodies and self.health_url else None)
        with health:
            subprocess.run(
                [
                    str(VEGETA), "attack",
                    "-format=json", f"-targets={targets_file}",
                    *([f"-rate={rate:g}/1s"] if not workers else
                      ["-rate=0", f"-workers={workers}", f"-max-workers={workers}"]),
                    f"-duration={seconds:g}s",
                    f"-timeout={TIMEOUT_S}s",
                    f"-max-body={-1 if keep_bodies else 0}",
                    "-keepalive=true",
                    f"-output={results_file}",
                ],
                check=True,
            )  # fmt: skip
        step = Step(label, 0 if workers else rate, seconds, workers=workers)
        step.health_polls, step.health_failed = health.polls, health.failed
        self._read(step, results_file, step.offered, keep_bodies, keep_rows)
        self._count_logs(step, offsets)
        targets_file.unlink()
        results_file.unlink()
        return step

    def _read(
        self, step: Step, results_file: Path, rate: float, keep_bodies: bool, keep_rows: bool
    ) -> None:
        encode = subprocess.Popen(
            [str(VEGETA), "encode", "--to", "json", str(results_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        rows = []
        assert encode.stdout is not None
        for line in encode.stdout:
            r = json.loads(line)
            rows.append(r)
        if encode.wait() != 0:
            raise RuntimeError("vegeta encode failed")
        if not rows:
            return
        start = min(parse_ts(r["timestamp"]) for r in rows if r["seq"] == 0)
        end = start
        lags = []
        for r in rows:
            sent = parse_ts(r["timestamp"])
            done = sent + r["latency"] / 1e9
            end = max(end, done)
            intended = start + r["seq"] / rate if rate > 0 else sent  # closed loop: as sent
            lags.append(max(0.0, sent - intended) * 1000)
            # Latency from the intended send time: a late send (the generator behind) counts.
            ms = max(r["latency"] / 1e6, (done - intended) * 1000)
            code = r["code"]
            if keep_rows:
                step.rows.append((r["seq"], intended, code))
            step.sent += 1
            step.codes[code] += 1
            if code == 0:
                step.transport[classify(r.get("error", ""))] += 1
            elif 200 <= code < 300:
                step.accepted_ms.append(ms)
            elif code == 503:
                step.refused_ms.append(ms)
                headers = {k.lower() for k in (r.get("headers") or {})}
                if "retry-after" not in headers:
                    step.refused_no_retry_after += 1
            for name, values in (r.get("headers") or {}).items():
                if name.lower() == "x-cache-status" and values:
                    step.cache_status[values[0] if isinstance(values, list) else values] += 1
            if keep_bodies and code in (200, 201) and r.get("body"):
                with contextlib.suppress(ValueError):
                    step.bodies.append((code, json.loads(base64.b64decode(r["body"]))))
        step.span_s = end - start
        step.send_lag_ms = percentile(lags, 99) or 0.0

    def _count_logs(self, step: Step, offsets: dict[Path, int]) -> None:
        for path, offset in offsets.items():
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            for line in text.splitlines():
                if LOCK_EXPIRED.search(line):
                    step.lock_expiries += 1
                if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line:
                    step.log_errors += 1


def classify(error: str) -> str:
    lowered = error.lower()
    if "timeout" in lowered or "deadline" in lowered:
        return "timeout"
    if "reset" in lowered or "refused" in lowered or "eof" in lowered:
        return "conn"
    return "other"


# --- the stack ---------------------------------------------------------------------------
def answer(method: str, url: str, timeout: float = 2) -> Any:
    """http(), or None when no answer came (a server starting: reset, timeout)."""
    try:
        return http(method, url, timeout=timeout)
    except (OSError, HTTPException):
        return None


class Stack:
    """FerretDB (or MONGO_URI), Redis, two gunicorn instances, nginx: the e2e suite's stack."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.external_mongo = os.environ.get("MONGO_URI")
        self.ferretdb = None if self.external_mongo else FerretDB(root / "ferretdb")
        self.redis = Redis(root / "redis")
        self.db_name = f"chatbot_bench_{os.getpid()}" if self.external_mongo else DB_NAME
        self.apps: list[Gunicorn] = []
        self.nginx: Nginx | None = None
        self.started: list[Any] = []
        # The Graph API emulator, for the WhatsApp section; its webhook is nginx's.
        self.graph = GraphEmulator(root / "graph", "", [
            "--app-secret", bench_whatsapp.APP_SECRET, "--token", bench_whatsapp.ACCESS_TOKEN,
            "--no-statuses",
        ])  # fmt: skip

    @property
    def mongo_uri(self) -> str:
        return self.external_mongo or self.ferretdb.uri  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    def app_env(self) -> dict[str, str]:
        return {
            "CHATBOT_ENV": "production",
            "SECRET_KEY": "bench-secret-key-not-for-real-use",
            # No SMS gateway here: keep the default (logging) code sender,
            # which production refuses unless told explicitly.
            "ALLOW_LOG_CODE_SENDER": "1",
            "MONGO_URI": self.mongo_uri,
            "MONGO_DB": self.db_name,
            "REDIS_URL": self.redis.url,
            # WARNING keeps lock and error lines (counted per step) without per-request noise.
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": str(WORKERS),
            "GUNICORN_THREADS": str(THREADS),
            # The benchmark measures the service, not the rate limiter's 429s.
            "RATE_LIMIT_DEFAULT": "10000000 per minute",
            "CHAT_RATE_LIMIT": "10000000 per minute",
            # The follow-up section runs the reminder job itself, commands counted.
            "REMINDERS_ENABLED": "0",
            **bench_whatsapp.app_env(self.graph.url),
        }

    def start(self) -> None:
        for service in (self.ferretdb, self.redis):
            if service:
                service.start()
                self.started.append(service)
        init_db(self.app_env())
        for n in range(1, INSTANCES + 1):
            app = Gunicorn(self.root / f"app{n}", f"app{n}", self.app_env())
            app.start()
            self.started.append(app)
            self.apps.append(app)
        self.nginx = Nginx(self.root / "nginx", [app.port for app in self.apps])
        self.nginx.start()
        self.started.append(self.nginx)
        self.graph.webhook = self.nginx.url + "/webhooks/whatsapp"
        self.graph.start()
        self.started.append(self.graph)
        self.wait_healthy()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = answer("GET", self.url + "/health")
            if reply is not None and reply.status == 200 and reply.json().get("status") == "ok":
                return
            time.sleep(0.2)
        raise RuntimeError("the stack never became healthy:\n" + self.logs_tail())

    def restart_apps(self, extra_env: dict[str, str]) -> dict[str, float]:
        """Stop both instances and start them again on the same ports (same nginx, Redis
        and database) with `extra_env` added to their environment; seconds it took."""
        started = time.monotonic()
        with ThreadPoolExecutor(len(self.apps)) as pool:
            list(pool.map(lambda app: app.stop(), self.apps))
            stopped = time.monotonic()
            for app in self.apps:
                app.app_env = {**self.app_env(), **extra_env}
            list(pool.map(lambda app: app.start(), self.apps))
        for app in self.apps:  # each instance itself, then the way through nginx
            deadline = time.monotonic() + 30
            while getattr(answer("GET", f"http://127.0.0.1:{app.port}/livez"), "status", 0) != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{app.name} did not come back:\n{app.log_tail(15)}")
                time.sleep(0.1)
        self.wait_healthy()
        done = time.monotonic()
        return {"stop_s": round(stopped - started, 1), "start_s": round(done - stopped, 1)}

    def stop(self) -> None:
        if self.external_mongo:
            with contextlib.suppress(Exception), self.client() as client:
                client.drop_database(self.db_name)
        for service in reversed(self.started):
            service.stop()

    def app_logs(self) -> list[Path]:
        return [app.log_path for app in self.apps]

    def logs_tail(self) -> str:
        # nginx's log is its access log: the instances' and the database's tell more.
        services = [s for s in self.started if s is not self.nginx]
        return "\n".join(f"--- {s.name} ---\n{s.log_tail(15)}" for s in services)

    def client(self) -> Any:
        import pymongo

        return pymongo.MongoClient(self.mongo_uri)


# --- users and data ----------------------------------------------------------------------
@dataclass
class User:
    n: int
    token: str
    id: str
    child_id: str = ""


def born_months_ago(months: int) -> str:
    from chatbot.screening.age import add_months

    today = datetime.now(ZoneInfo("Asia/Jakarta")).date()
    return add_months(today, -months).strftime("%d-%m-%Y")


# To the first question of a screening: greeting, consent, language, a child's name, birth
# date, sex and gestation, then "screen now".
SETUP_TURNS = ["halo", "ya", "1", "{name}", "{born}", "1", "38", "ya"]
NAMES = ["Ayu", "Budi", "Citra", "Dewi", "Eka", "Fajar", "Gita", "Hadi", "Indah", "Joko"]


def setup_users(base: str, count: int) -> list[User]:
    """Each user starts a chat and answers their way to the first question of a screening."""
    born = born_months_ago(22)  # a term child of 22 months: the 21-month form, 10 items

    def one(n: int) -> User:
        start = http("POST", base + "/api/v1/chat/start", {"phoneNumber": f"0819{70000000 + n}"})
        assert start.status == 201, start.body
        user = User(n, start.json()["token"], start.json()["user"]["id"])
        auth = {"Authorization": f"Bearer {user.token}"}
        step = None
        for k, text in enumerate(SETUP_TURNS):
            text = {"{name}": NAMES[n % len(NAMES)], "{born}": born}.get(text, text)
            body = {"text": text, "clientMessageId": f"setup-{n}-{k}"}
            reply = http("POST", base + "/api/v1/chat/messages", body, auth, timeout=30)
            assert reply.status == 201, (text, reply.status, reply.body)
            step = reply.json()["step"]
        assert step == "question", step
        [child] = http("GET", base + "/api/v1/children", None, auth).json()["children"]
        user.child_id = child["id"]
        return user

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def seed_results(db: Any, users: list[User]) -> None:
    """Three earlier completed screenings per child, so the child summary has results."""
    now = datetime.now(UTC)
    docs = []
    for user in users:
        template = db["questionnaires"].find_one(
            {"userId": ObjectId(user.id), "status": "in_progress"}
        )
        assert template is not None
        template.pop("_id")
        for k, weeks_ago in enumerate((30, 20, 10)):
            completed = now - timedelta(weeks=weeks_ago)
            yes = (10, 8, 9)[k]
            docs.append(
                {
                    **template,
                    "startedAt": completed - timedelta(minutes=5),
                    "answers": [
                        {"number": i, "domains": ["gross_motor"], "answer": i <= yes}
                        for i in range(1, 11)
                    ],
                    "status": "completed",
                    "yesCount": yes,
                    "category": "appropriate" if yes >= 9 else "doubtful",
                    "riskLevel": "low" if yes >= 9 else "medium",
                    "noByDomain": {"gross_motor": list(range(yes + 1, 11))} if yes < 10 else {},
                    "nextAction": "routine" if yes >= 9 else "rescreen_2_weeks",
                    "nextDueAt": completed + timedelta(days=14),
                    "completedAt": completed,
                }
            )
    if docs:
        db["questionnaires"].insert_many(docs)
    last = docs[-1] if docs else None
    for user in users:
        if last:
            db["children"].update_one(
                {"_id": ObjectId(user.child_id)},
                {"$set": {"lastScreening": {k: last[k] for k in SUMMARY_FIELDS}}},
            )


SUMMARY_FIELDS = ("bracket", "category", "riskLevel", "yesCount", "itemCount", "nextAction",
                  "nextDueAt", "completedAt")  # fmt: skip
QUESTION_TEXT = (
    "Pertanyaan {k} dari 10: Apakah anak dapat berjalan sendiri tanpa berpegangan, "
    "setidaknya lima langkah, tanpa jatuh? Jawab YA atau TIDAK."
)
INBOUND_WORDS = ["ya", "tidak", "1", "halo", "ya", "ya", "menu", "2", "bantuan", "ya"]


def message_pairs(user_ids: list[Any], count: int, start: datetime, span: timedelta, tag: str):
    """`count` documents of the service's shape: inbound (handled) + its reply (delivered)."""
    rng = random.Random(tag)  # noqa: S311 -- synthetic data, not security
    docs = []
    n = 0
    while len(docs) < count:
        user_id = user_ids[n % len(user_ids)]
        at = start + span * rng.random()
        inbound_id = ObjectId()
        docs.append(
            {
                "_id": inbound_id,
                "userId": user_id,
                "direction": "inbound",
                "text": INBOUND_WORDS[n % len(INBOUND_WORDS)],
                "clientMessageId": f"{tag}-{n}",
                "status": "handled",
                "createdAt": at,
                "handledAt": at,
            }
        )
        if len(docs) < count:
            docs.append(
                {
                    "userId": user_id,
                    "direction": "outbound",
                    "text": QUESTION_TEXT.format(k=n % 10 + 1),
                    "quickReplies": [
                        {"label": "Ya", "value": "ya"},
                        {"label": "Tidak", "value": "tidak"},
                        {"label": "Kembali", "value": "kembali"},
                    ],
                    "replyTo": inbound_id,
                    "status": "delivered",
                    "createdAt": at + timedelta(milliseconds=1),
                    "sentAt": at + timedelta(milliseconds=1),
                    "deliveredAt": at + timedelta(seconds=2),
                }
            )
        n += 1
    return docs


def grow_messages(db: Any, target: int, tag: str) -> int:
    """Insert messages of many other users until the collection holds `target`."""
    missing = target - db["messages"].count_documents({})
    if missing <= 0:
        return db["messages"].count_documents({})
    others = [ObjectId() for _ in range(max(10, missing // 40))]
    now = datetime.now(UTC)
    docs = message_pairs(others, missing, now - timedelta(days=90), timedelta(days=89), tag)
    for i in range(0, len(docs), 1000):
        db["messages"].insert_many(docs[i : i + 1000], ordered=False)
    return db["messages"].count_documents({})


def reset_messages(db: Any, users: list[User]) -> None:
    """Drop the set-up conversations' messages (their sessions, children and questionnaires
    stay) and give the readers a history longer than a page."""
    db["messages"].delete_many({"userId": {"$in": [ObjectId(u.id) for u in users]}})
    readers = [ObjectId(u.id) for u in users[:READERS]]
    now = datetime.now(UTC)
    docs = message_pairs(
        readers,
        len(readers) * READER_HISTORY,
        now - timedelta(days=3),
        timedelta(days=2),
        "history",
    )
    db["messages"].insert_many(docs, ordered=False)


# --- targets ---------------------------------------------------------------------------------
class ChatTargets:
    """Answer turns ("1": yes to a question, or "screen again" at the menu) round-robin over
    the users, each with a fresh clientMessageId; every `dup_every`-th resends the id of
    the same user's previous message (a client retry, maybe while the first is in flight)."""

    def __init__(self, base: str, users: list[User], dup_every: int) -> None:
        self.url = base + "/api/v1/chat/messages"
        self.users = users
        self.dup_every = dup_every
        self.batches = 0

    def make(self, count: int) -> list[dict[str, Any]]:
        self.batches += 1
        lines = []
        for i in range(count):
            user = self.users[i % len(self.users)]
            earlier = i - len(self.users)
            n = earlier if self.dup_every and i % self.dup_every == 0 and earlier >= 0 else i
            body = {"text": "1", "clientMessageId": f"b{self.batches}-{n}"}
            lines.append(target("POST", self.url, user.token, body))
        return lines


def get_targets(
    base: str,
    users: list[User],
    path: Callable[[User], str],
    count: int,
    headers: dict | None = None,
):
    return [
        target(
            "GET", base + path(users[i % len(users)]), users[i % len(users)].token, None, headers
        )
        for i in range(count)
    ]


# --- the database's own limit ------------------------------------------------------------------
# Commands of a recorded turn that are not the turn's own work.
NOT_TURN = {"hello", "ismaster", "isMaster", "ping", "endSessions", "buildInfo", "getMore",
            "killCursors", "saslStart", "saslContinue", "createIndexes", "listIndexes"}  # fmt: skip
# Driver bookkeeping in a recorded command, dropped before it is sent again.
DRIVER_KEYS = {"lsid", "$db", "$clusterTime", "txnNumber", "$readPreference", "autocommit"}


class _Recorder(monitoring.CommandListener):
    """PyMongo command monitoring: keeps the commands started while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: Any) -> None:
        if self.on and event.command_name not in NOT_TURN:
            command = {k: v for k, v in event.command.items() if k not in DRIVER_KEYS}
            self.commands.append((event.command_name, copy.deepcopy(command)))

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


def record_answer_turn(stack: Stack) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The database commands of one answer turn (warm caches), recorded from the service's
    own code: an in-process app on the same database answers a user of its own."""
    from chatbot import create_app
    from chatbot.settings import Settings

    recorder = _Recorder()
    monitoring.register(recorder)  # clients made from now on: the app's, made on first use
    env = {**stack.app_env(), "INSTANCE_ID": "bench-recorder", "REDIS_KEY_PREFIX": "bench-rec:"}
    client = create_app(Settings.from_env(env)).test_client()
    phone = f"0818{random.randrange(10**8):08d}"  # noqa: S311 -- a test number
    start = client.post("/api/v1/chat/start", json={"phoneNumber": phone})
    assert start.status_code == 201, start.get_json()
    auth = {"Authorization": f"Bearer {start.get_json()['token']}"}

    def say(text: str, cmid: str) -> dict[str, Any]:
        reply = client.post(
            "/api/v1/chat/messages", json={"text": text, "clientMessageId": cmid}, headers=auth
        )
        assert reply.status_code == 201, reply.get_json()
        return reply.get_json()

    for k, text in enumerate([*SETUP_TURNS, "1", "1"]):  # two answers: every cache warm
        say({"{name}": "Rekam", "{born}": born_months_ago(22)}.get(text, text), f"rec-{k}")
    recorder.on = True
    turn = say("1", "rec-answer")
    recorder.on = False
    assert turn["step"] == "question", turn["step"]
    return recorder.commands, "rec-answer"


def _object_ids(value: Any, found: set) -> set:
    if isinstance(value, ObjectId):
        found.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _object_ids(v, found)
    elif isinstance(value, list):
        for v in value:
            _object_ids(v, found)
    return found


def remap(value: Any, ids: dict, strings: dict[str, str]) -> Any:
    """`value` with its ObjectIds and strings replaced as the two maps say."""
    if isinstance(value, dict):
        return {k: remap(v, ids, strings) for k, v in value.items()}
    if isinstance(value, list):
        return [remap(v, ids, strings) for v in value]
    if isinstance(value, str):
        return strings.get(value, value)
    if isinstance(value, ObjectId):
        return ids.get(value, value)
    return value


def inserted_ids(commands: list[tuple[str, dict[str, Any]]]) -> set:
    return {
        doc["_id"]
        for name, command in commands
        if name == "insert"
        for doc in command.get("documents", [])
        if "_id" in doc
    }


def clone_entities(db: Any, commands: list[tuple[str, dict[str, Any]]], count: int) -> list[dict]:
    """For each of `count` threads, its own copy of every document the turn refers to (the
    user, the questionnaire ...): {template id: the copy's id}."""
    from pymongo.errors import DuplicateKeyError

    entities = _object_ids([c for _, c in commands], set()) - inserted_ids(commands)
    collections = db.list_collection_names()
    originals = []
    for entity in entities:
        for name in collections:
            doc = db[name].find_one({"_id": entity})
            if doc is not None:
                originals.append((name, doc))
    maps = []
    for n in range(count):
        ids = {e: ObjectId() for e in entities}
        strings = {str(e): str(new) for e, new in ids.items()}
        for name, doc in originals:
            copy_ = remap(doc, ids, strings)
            if "phoneNumber" in copy_:  # unique
                copy_["phoneNumber"] = f"+6289{n:08d}"
            with contextlib.suppress(DuplicateKeyError):
                db[name].insert_one(copy_)
        maps.append(ids)
    return maps


def replay_turns(
    uri: str,
    db_name: str,
    commands: list[tuple[str, dict[str, Any]]],
    cmid: str,
    maps: list[dict],
    seconds: float,
) -> tuple[int, int, float]:
    """One process: a thread per map, each sending the recorded turn's commands back to back
    (fresh ids and clientMessageId every turn). Returns (turns, failed commands, seconds)."""
    import pymongo

    client = pymongo.MongoClient(uri, maxPoolSize=len(maps) + 4)
    db = client[db_name]
    db.command("ping")
    fresh = inserted_ids(commands)
    counts = [0] * len(maps)
    failures = [0] * len(maps)
    deadline = time.monotonic() + seconds

    def run(k: int, ids: dict) -> None:
        strings = {str(e): str(new) for e, new in ids.items()}
        while time.monotonic() < deadline:
            turn_ids = {**ids, **{i: ObjectId() for i in fresh}}
            turn_strings = {**strings, cmid: f"db-{os.getpid()}-{k}-{counts[k]}"}
            for _, command in commands:
                try:
                    result = db.command(remap(command, turn_ids, turn_strings))
                    failures[k] += bool(result.get("writeErrors"))
                except pymongo.errors.PyMongoError:
                    failures[k] += 1
            counts[k] += 1

    threads = [threading.Thread(target=run, args=(k, m)) for k, m in enumerate(maps)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    client.close()
    return sum(counts), sum(failures), elapsed


def db_only_rate(stack: Stack, seconds: float) -> dict[str, Any]:
    """Answer turns/s when only the database works: the commands of a recorded answer turn,
    sent by INSTANCES x WORKERS processes of THREADS threads each (the service's own
    concurrency), without HTTP, Flask, Redis or the engine."""
    commands, cmid = record_answer_turn(stack)
    shape = ", ".join(f"{name} {command.get(name)}" for name, command in commands)
    processes = INSTANCES * WORKERS
    with stack.client() as client:
        maps = clone_entities(client[stack.db_name], commands, processes * THREADS)
    groups = [maps[i::processes] for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        runs = pool.starmap(
            replay_turns,
            [(stack.mongo_uri, stack.db_name, commands, cmid, g, seconds) for g in groups],
        )
    # Each process times its own threads (start-up excluded); the processes overlap.
    return {
        "turns_per_s": round(sum(turns / elapsed for turns, _, elapsed in runs), 1),
        "concurrency": len(maps),
        "commands_per_turn": len(commands),
        "commands": shape,
        "failed_commands": sum(failed for _, failed, _ in runs),
    }


# --- the run ---------------------------------------------------------------------------------
class Bench:
    def __init__(self, cfg: Config, stack: Stack, workdir: Path) -> None:
        self.cfg = cfg
        self.stack = stack
        self.workdir = workdir
        self.vegeta = Vegeta(workdir, stack.app_logs, lambda: stack.url + "/health")
        self.users: list[User] = []
        self.chat: ChatTargets | None = None
        self.results: dict[str, Any] = {}
        self.chat_steps: list[Step] = []
        self.all_chat: list[Step] = []  # every chat step (probes too), for the lost/dup check

    def db(self) -> Any:
        return self.client[self.stack.db_name]

    def run(self) -> None:
        self.client = self.stack.client()
        try:
            self._run()
        finally:
            self.client.close()

    def _run(self) -> None:
        cfg = self.cfg
        base = self.stack.url
        t0 = time.monotonic()
        print(f"setting up {cfg.users} users through the API ...", flush=True)
        self.users = setup_users(base, cfg.users)
        seed_results(self.db(), self.users)
        self.chat = ChatTargets(base, self.users, cfg.dup_every)
        print(f"  done in {time.monotonic() - t0:.0f} s\n", flush=True)
        if cfg.followup_only:
            self.results["followup"] = self.followup()
            self.results["goals"] = bench_followup.goals(self.results["followup"])
            print_goals(self.results["goals"])
            return
        if cfg.whatsapp_only:
            self.results["whatsapp"] = self.whatsapp()
            self.results["goals"] = bench_whatsapp.goals(self.results["whatsapp"])
            print_goals(self.results["goals"])
            return

        # 1. Hot paths at the two sizes, side by side.
        reset_messages(self.db(), self.users)
        self.cold_start()
        probes = {}
        stored = {}
        for size in cfg.sizes:
            count = grow_messages(self.db(), size, f"seed-{size}")
            probes[size] = self.probe(count)
            stored[str(size)] = [count, self.db()["messages"].count_documents({})]
        self.results["probes"] = {
            str(size): {path: step.summary() for path, step in steps.items()}
            for size, steps in probes.items()
        }
        self.results["probes_stored_before_after"] = stored
        self.print_probes(probes)

        # 2. Capacity of /livez and the GETs at rising rates.
        caps = self.capacities()

        # 3. The database's own limit for the same operations.
        print("\ndatabase only: a recorded answer turn's commands, replayed with PyMongo ...")
        db_only = self.results["db_only"] = db_only_rate(self.stack, cfg.db_seconds)
        db_rate = db_only["turns_per_s"]
        print(
            f"  {db_rate:.0f} turns/s at {db_only['concurrency']} threads;"
            f" {db_only['commands_per_turn']} commands per turn: {db_only['commands']}"
            + (f"; {db_only['failed_commands']} FAILED" if db_only["failed_commands"] else ""),
            flush=True,
        )

        # 4. Chat turns at rising rates until it breaks.
        self.chat_ladder()

        # 5. Nothing lost, nothing twice.
        integrity = self.check_integrity()
        self.results["integrity"] = integrity
        self.results["messages_at_end"] = self.db()["messages"].count_documents({})

        # 6. The cache layer: cached and uncached reads, nginx's caches, compression.
        if cfg.cache_layer:
            self.results["cache"] = self.cache_layer()

        # 7. WhatsApp: signed webhooks through nginx, the queue, the sends.
        if cfg.whatsapp:
            self.results["whatsapp"] = self.whatsapp()
        # 8. Follow-up: the health workers' page and the reminder job as data grows.
        if cfg.followup:
            self.results["followup"] = self.followup()
        self.results["goals"] = (
            goals(self.results, caps, db_rate, self.chat_steps, probes)
            + cache_goals(self.results.get("cache"), cfg)
            + bench_whatsapp.goals(self.results.get("whatsapp"))
            + bench_followup.goals(self.results.get("followup"))
        )
        print_goals(self.results["goals"])

    def followup(self) -> dict[str, Any]:
        cfg = self.cfg
        return bench_followup.FollowUpBench(
            self.stack, self.vegeta, self.db(), target, print_step,
            cfg.followup_sizes, cfg.followup_due, cfg.followup_seconds,
        ).run()  # fmt: skip

    def whatsapp(self) -> dict[str, Any]:
        cfg = self.cfg
        # The same users on WhatsApp: their web numbers (0819...) in international form.
        wa_ids = [f"62819{70000000 + u.n}" for u in self.users]
        return bench_whatsapp.WhatsAppBench(
            self.stack, self.vegeta, self.workdir, self.db(), wa_ids, print_step,
            cfg.whatsapp_rates, cfg.whatsapp_seconds, cfg.whatsapp_max_rate,
        ).run()  # fmt: skip

    # -- side by side -------------------------------------------------------------------------
    def probe(self, stored: int) -> dict[str, Step]:
        cfg = self.cfg
        base = self.stack.url
        n = int(cfg.probe_rate * cfg.probe_seconds) + cfg.probe_rate
        readers = self.users[:READERS]
        paths = {
            "child summary": get_targets(
                base, self.users, lambda u: f"/api/v1/children/{u.child_id}", n
            ),
            "children list": get_targets(base, self.users, lambda u: "/api/v1/children", n),
            "first history page": get_targets(
                base, readers, lambda u: "/api/v1/chat/messages?limit=50", n
            ),
        }
        steps = {}
        print(f"hot paths at {stored:,} stored messages ({cfg.probe_rate}/s):", flush=True)
        for path, targets in paths.items():
            self.warm(targets)
            steps[path] = self.vegeta.attack(path, targets, cfg.probe_rate, cfg.probe_seconds)
        # Last: it adds messages.
        assert self.chat is not None
        step = self.vegeta.attack(
            "chat turn", self.chat.make(n), cfg.probe_rate, cfg.probe_seconds, keep_bodies=True
        )
        self.all_chat.append(step)
        steps = {"chat turn": step, **steps}
        for path, step in steps.items():
            print(
                f"  {path:<20} p50 {fmt_ms(step.p(50)):>6} ms  p99 {fmt_ms(step.p(99)):>6} ms"
                f"  errors {step.error_summary()}",
                flush=True,
            )
        return steps

    def cold_start(self) -> None:
        """Empty Redis, then warm every user's caches again through the API.

        The set-up wrote MongoDB directly (earlier results, the readers' history, the set-up
        messages removed): the service's Redis copies (sessions, children, first history
        pages) would disagree with it. Redis only holds what MongoDB can rebuild
        (docs/api.md), so the benchmark starts from an empty one; one chat turn and one of
        each GET per user then fill it as users would, before anything is measured.
        """
        import redis

        client = redis.Redis.from_url(self.stack.redis.url)
        client.flushdb()
        client.close()
        assert self.chat is not None
        base = self.stack.url
        n = len(self.users)
        step = self.vegeta.attack("warm-up", self.chat.make(n), 50, n / 50, keep_bodies=True)
        self.all_chat.append(step)
        for path in (
            lambda u: f"/api/v1/children/{u.child_id}",
            lambda u: "/api/v1/children",
            lambda u: "/api/v1/chat/messages?limit=50",
        ):
            self.vegeta.attack("warm-up", get_targets(base, self.users, path, n), 100, n / 100)
        if step.errors:
            print(f"  warm-up chat turns: errors {step.error_summary()}", flush=True)

    def warm(self, targets: list[dict[str, Any]]) -> None:
        """A few requests first, so no measurement pays for first connections."""
        self.vegeta.attack("warm-up", targets[:20], 40, 0.5)

    def print_probes(self, probes: dict[int, dict[str, Step]]) -> None:
        small, large = self.cfg.sizes
        print(f"\nside by side: p50 (p99) in ms at {small:,} and {large:,} stored messages")
        print(f"  {'hot path':<20} {small:>16,} {large:>16,}   p50 ratio")
        for path in probes[small]:
            a, b = probes[small][path], probes[large][path]
            ratio = (b.p(50) or 0) / (a.p(50) or 1)
            print(
                f"  {path:<20} {fmt_ms(a.p(50)):>7} ({fmt_ms(a.p(99)):>6})"
                f" {fmt_ms(b.p(50)):>7} ({fmt_ms(b.p(99)):>6})   {ratio:5.2f}x"
            )

    # -- capacities ---------------------------------------------------------------------------
    def ladder(
        self, name: str, make: Callable[[int], list[dict]], rates: list[int], max_rate: int,
        seconds: float, keep_bodies: bool = False, warm: bool = True,
    ) -> list[Step]:  # fmt: skip
        """Rising rates (doubling past `rates`) until one is not served without error.

        When the first rate already fails, halve it (up to 3 times) to find one that works.
        """
        steps: list[Step] = []
        queue = list(rates)
        if warm:
            self.warm(make(20))
        while queue:
            rate = queue.pop(0)
            step = self.vegeta.attack(
                name, make(int(rate * seconds) + rate), rate, seconds, keep_bodies
            )
            steps.append(step)
            print_step(step)
            measured = {s.offered for s in steps}
            if step.clean:
                if not queue and rate * 2 <= max_rate and rate * 2 not in measured:
                    queue.append(rate * 2)
            elif not any(s.clean for s in steps) and rate >= 2 and len(steps) < 4:
                queue = [rate // 2]  # broken from the start: look lower
            else:
                break
            time.sleep(self.cfg.pause)  # let queues drain before the next rate
        steps.sort(key=lambda s: s.offered)
        return steps

    def capacities(self) -> dict[str, float]:
        cfg = self.cfg
        base = self.stack.url
        readers = self.users[:READERS]
        routes: dict[str, Callable[[int], list[dict]]] = {
            "/livez": lambda n: [target("GET", base + "/livez", "")] * n,
            "child summary": lambda n: get_targets(
                base, self.users, lambda u: f"/api/v1/children/{u.child_id}", n
            ),
            "children list": lambda n: get_targets(
                base, self.users, lambda u: "/api/v1/children", n
            ),
            "first history page": lambda n: get_targets(
                base, readers, lambda u: "/api/v1/chat/messages?limit=50", n
            ),
        }
        caps: dict[str, float] = {}
        self.results["capacity"] = {}
        print(f"\ncapacity: GETs at rising rates, {cfg.get_seconds:g} s each", flush=True)
        print_step_header()
        for name, make in routes.items():
            rates = cfg.get_rates if name != "/livez" else [r * 4 for r in cfg.get_rates]
            steps = self.ladder(name, make, rates, cfg.get_max_rate, cfg.get_seconds)
            caps[name] = max(s.achieved for s in steps)
            self.results["capacity"][name] = {
                "peak_achieved": round(caps[name], 1),
                "highest_clean": max((s.offered for s in steps if s.clean), default=0),
                "steps": [s.summary() for s in steps],
            }
        print("\n  peak achieved rate (2xx/s), and the ratio to /livez:")
        for name, cap in caps.items():
            print(f"    {name:<20} {cap:8.0f} /s   {cap / (caps['/livez'] or 1):6.3f}x")
        return caps

    # -- chat turns ---------------------------------------------------------------------------
    def chat_ladder(self) -> None:
        cfg = self.cfg
        assert self.chat is not None
        print(
            f"\nchat turns at rising rates, {cfg.users} users, {cfg.seconds:g} s each"
            f" (1 in {cfg.dup_every} resends an earlier clientMessageId)",
            flush=True,
        )
        print_step_header()
        steps = self.ladder(
            "chat turn", self.chat.make, cfg.rates, cfg.max_rate, cfg.seconds,
            keep_bodies=True, warm=False,
        )  # fmt: skip
        # Goals are read at twice the highest rate served without error: run it if missing
        # (when --rates skipped it), and on while that one is clean too.
        for _ in range(4):
            clean = [s.offered for s in steps if s.clean]
            if not clean or 2 * max(clean) in {s.offered for s in steps}:
                break
            rate = int(2 * max(clean))
            time.sleep(self.cfg.pause)
            step = self.vegeta.attack(
                "chat turn", self.chat.make(int(rate * cfg.seconds) + rate), rate, cfg.seconds,
                keep_bodies=True,
            )  # fmt: skip
            print_step(step)
            steps.append(step)
        self.chat_steps = sorted(steps, key=lambda s: s.offered)
        self.all_chat += steps
        self.results["chat"] = [s.summary() for s in self.chat_steps]

    # -- nothing lost, nothing twice ------------------------------------------------------------
    def check_integrity(self) -> dict[str, Any]:
        """Every accepted message (201, or 200 for a resend) is stored once and answered by
        exactly one processing; a resend gets the first answer's message and replies."""
        time.sleep(1)
        first: dict[str, dict] = {}  # clientMessageId -> the body of its 201
        created: Counter = Counter()
        for step in self.all_chat:
            for code, body in step.bodies:
                if code == 201:
                    created[body["message"]["clientMessageId"]] += 1
                    first.setdefault(body["message"]["clientMessageId"], body)
        resends = resend_mismatch = 0
        for step in self.all_chat:
            for code, body in step.bodies:
                original = first.get(body["message"]["clientMessageId"]) if code == 200 else None
                resends += code == 200
                if original is not None and (
                    original["message"]["id"] != body["message"]["id"]
                    or [r["id"] for r in original["replies"]] != [r["id"] for r in body["replies"]]
                ):
                    resend_mismatch += 1
        accepted = {b["message"]["clientMessageId"] for s in self.all_chat for _, b in s.bodies}

        col = self.db()["messages"]
        users = {"$in": [ObjectId(u.id) for u in self.users]}
        inbound = defaultdict(list)
        for doc in col.find({"userId": users, "direction": "inbound"}, {"clientMessageId": 1}):
            inbound[doc["clientMessageId"]].append(doc)
        replies = defaultdict(list)
        for doc in col.find(
            {"userId": users, "direction": "outbound", "status": {"$ne": "failed"}},
            {"replyTo": 1, "createdAt": 1},
        ):
            replies[doc["replyTo"]].append(doc["createdAt"])
        lost, stored_twice, processed_twice = [], [], []
        for key in accepted:
            docs = inbound.get(key, [])
            stamps = sorted(replies.get(docs[0]["_id"], [])) if docs else []
            if not stamps:  # no inbound message, or no reply to it
                lost.append(key)
                continue
            if len(docs) > 1:
                stored_twice.append(key)
            # One processing stores its replies 1 ms apart (now + 1, + 2 ... ms): any other
            # gap between a message's replies means a second processing answered it too.
            gaps = {round((b - a).total_seconds() * 1000) for a, b in itertools.pairwise(stamps)}
            if gaps - {1}:
                processed_twice.append(key)
        unanswered = sum(1 for docs in inbound.values() for d in docs if not replies.get(d["_id"]))
        created_twice = [k for k, n in created.items() if n > 1]
        result = {
            "accepted": len(accepted),
            "resends_answered_200": resends,
            "lost": len(lost),
            "lost_examples": lost[:5],
            "duplicated": len(stored_twice)
            + len(processed_twice)
            + len(created_twice)
            + resend_mismatch,
            "stored_twice": len(stored_twice),
            "processed_twice": len(processed_twice),
            "processed_twice_examples": processed_twice[:5],
            "created_twice": len(created_twice),
            "resend_with_other_replies": resend_mismatch,
            "inbound_without_reply": unanswered,
        }
        print(
            f"\nafter the run: {len(accepted)} accepted messages checked in the database"
            f" ({resends} resends answered 200): lost {len(lost)}, duplicated"
            f" {result['duplicated']} (stored twice {len(stored_twice)}, processed twice"
            f" {len(processed_twice)}, 201 twice {len(created_twice)}, resend with other"
            f" replies {resend_mismatch}). Stored but never answered (refused or failed"
            f" turns: a retry with the same id answers them): {unanswered}",
            flush=True,
        )
        return result

    # -- the cache layer ----------------------------------------------------------------------
    def cache_layer(self) -> dict[str, Any]:
        """A warmed cached read, the same read with the response cache off, /livez, a static
        file and a public GET from nginx's cache, each at rising rates; /livez and the reads
        at 64 connections; compression's cost; the cache counters of the instances."""
        cfg = self.cfg
        base = self.stack.url
        users, readers = self.users, self.users[:READERS]
        fast, slow = cfg.cache_fast_rates, cfg.cache_slow_rates
        out: dict[str, Any] = {"routes": {}, "closed": {}}
        reads: list[Step] = []  # answers of response-cached views, for the hit rate
        started = time.monotonic()
        print(
            f"\ncache layer: rising rates, {cfg.get_seconds:g} s each; then"
            f" {cfg.closed_workers} connections (closed loop), {cfg.closed_seconds:g} s",
            flush=True,
        )
        time.sleep(cfg.pause)  # the chat ladder's overload drains first
        before, why = scrape_cache_counts(self.stack)

        def child(u: User) -> str:
            return f"/api/v1/children/{u.child_id}"

        sizes = out["sizes"] = self.body_sizes(readers[0], child(users[0]))
        limit = sizes["page_limit"]
        makers: dict[str, Callable[[int], list[dict]]] = {
            "/livez": lambda n: [target("GET", base + "/livez", "")] * n,
            CACHED: lambda n: get_targets(base, users, child, n),
            STATIC: lambda n: [target("GET", base + STATIC_FILE, "", None, GZIP)] * n,
            PUBLIC: lambda n: [target("GET", base + PUBLIC_GET, "", None, GZIP)] * n,
        }
        page = f"/api/v1/chat/messages?limit={limit}"
        largest = f"/api/v1/chat/messages?limit={LARGEST_LIMIT}"
        pages = {
            "gzip": lambda n: get_targets(base, readers, lambda u: page, n, GZIP),
            "X-No-Compression": lambda n: get_targets(base, readers, lambda u: page, n, IDENTITY),
        }
        etag_on = "ETag" in http("GET", base + child(users[0]), None, auth(users[0])).headers

        print_step_header()
        for name, make in makers.items():
            # Every user's read in every worker's memory tier; nginx's cache filled.
            n = len(users) * INSTANCES * WORKERS * 2 if name == CACHED else 40
            warm = self.vegeta.attack("warm-up", make(n), 200, n / 200)
            if name == CACHED:
                reads.append(warm)
            steps = self.ladder(name, make, fast, cfg.cache_max_rate, cfg.get_seconds, warm=False)
            if name == CACHED:
                reads += steps
            out["routes"][name] = ladder_summary(steps)
        for name in ("/livez", CACHED):
            step = self.closed(name, makers[name](len(users) * 4), reads if name == CACHED else [])
            out["closed"][name] = closed_summary(step)

        # Compression: the same cached page with gzip and with the opt-out.
        print(
            f"  compression: GET {page} ({sizes['page_raw']:,} B, {sizes['page_gzip']:,} B"
            f" gzipped), readers only",
            flush=True,
        )
        out["compression"] = {"page": page, "largest": largest}
        for variant, make in pages.items():
            n = len(readers) * INSTANCES * WORKERS * 2
            reads.append(self.vegeta.attack("warm-up", make(n), 100, n / 100))
            steps = self.ladder(
                f"page, {variant}", make, slow, cfg.cache_max_rate, cfg.get_seconds, warm=False
            )
            reads += steps
            out["compression"][variant] = ladder_summary(steps)
        print(
            f"  largest: GET {largest} ({sizes['largest_raw']:,} B,"
            f" {sizes['largest_gzip']:,} B gzipped), {cfg.closed_workers} connections",
            flush=True,
        )
        for variant, headers in (("gzip", GZIP), ("X-No-Compression", IDENTITY)):
            make = functools.partial(get_targets, base, readers, lambda u: largest)
            step = self.closed(
                f"largest, {variant}", make(len(readers) * 4, headers), reads, warm=True
            )
            out["compression"][f"largest {variant}"] = closed_summary(step)

        # Hit rates per tier: the instances' own counters, before they restart.
        after, why_after = scrape_cache_counts(self.stack)
        out["hit_rates"] = hit_rates(before, after, sum(s.ok for s in reads), why or why_after)

        # The same read with the response cache off: both instances restarted with
        # CACHE_ENABLED=0 (same ports, nginx, Redis and data), then put back.
        print("  restarting both instances with CACHE_ENABLED=0 (every cache off)")
        out["restart"] = self.stack.restart_apps({"CACHE_ENABLED": "0"})
        print(
            f"  (stopped in {out['restart']['stop_s']:g} s, serving again"
            f" {out['restart']['start_s']:g} s later)",
            flush=True,
        )
        try:
            make = makers[CACHED]
            n = len(users) * INSTANCES * WORKERS
            warm = self.vegeta.attack("warm-up", make(n), 100, n / 100)
            if warm.errors:  # an instance marked failed by nginx: its fail_timeout is 5 s
                time.sleep(5.5)
                self.vegeta.attack("warm-up", make(n), 100, n / 100)
            etag_off = "ETag" in http("GET", base + child(users[0]), None, auth(users[0])).headers
            steps = self.ladder(
                UNCACHED, make, slow, cfg.cache_max_rate, cfg.get_seconds, warm=False
            )
            out["routes"][UNCACHED] = ladder_summary(steps)
            out["closed"][UNCACHED] = closed_summary(
                self.closed(UNCACHED, make(len(users) * 4), [])
            )
        finally:
            out["restore"] = self.stack.restart_apps({})
        # The monitoring issue's cost: /livez with metrics off (METRICS_ENABLED=0) against
        # /livez above (metrics on), same ladder, same 64-connection run.
        print("  restarting both instances with METRICS_ENABLED=0 (metrics off)", flush=True)
        self.stack.restart_apps({"METRICS_ENABLED": "0"})
        try:
            make = makers["/livez"]
            self.vegeta.attack("warm-up", make(40), 200, 0.2)
            steps = self.ladder(
                LIVEZ_NO_METRICS, make, fast, cfg.cache_max_rate, cfg.get_seconds, warm=False
            )
            out["routes"][LIVEZ_NO_METRICS] = ladder_summary(steps)
            out["closed"][LIVEZ_NO_METRICS] = closed_summary(
                self.closed(LIVEZ_NO_METRICS, make(len(users) * 4), [])
            )
            # The goal's figure: metrics on and off side by side, alternating, each round
            # after a restart; the two ladders above lie minutes apart, and their peaks
            # move with the generator's own lag.
            print(
                f"  metrics on/off alternating, {METRICS_ROUNDS} rounds of"
                f" {cfg.closed_workers} connections",
                flush=True,
            )
            rounds: dict[str, list[float]] = {"on": [], "off": []}
            for n in range(METRICS_ROUNDS):
                for mode, env in (("on", {}), ("off", {"METRICS_ENABLED": "0"})):
                    self.stack.restart_apps(env)
                    self.vegeta.attack("warm-up", make(40), 200, 0.2)
                    step = self.closed(f"/livez, metrics {mode} #{n + 1}", make(len(users) * 4), [])
                    rounds[mode].append(round(step.achieved, 1) if not step.errors else 0.0)
            out["metrics_rounds"] = rounds
        finally:
            self.stack.restart_apps({})
        # A cached answer carries the ETag of its stored body; an uncached one has none.
        out["cache_on_checked"] = etag_on and not etag_off
        if not out["cache_on_checked"]:
            print(
                f"  WARNING: ETag on the cached read {etag_on}, with the cache off {etag_off}:"
                " the two modes may not be what they claim",
                flush=True,
            )
        out["seconds"] = round(time.monotonic() - started)
        print_cache_layer(out, cfg)
        return out

    def closed(
        self, name: str, targets: list[dict[str, Any]], sent: list[Step], warm: bool = False
    ) -> Step:
        """`name` at `closed_workers` connections, each sending as soon as it is answered
        (after a short warm-up when `warm`); the runs are appended to `sent`."""
        cfg = self.cfg
        if warm:
            sent.append(self.vegeta.attack("warm-up", targets[:40], 100, 0.4))
        time.sleep(cfg.pause)
        step = self.vegeta.attack(
            f"{name} @{cfg.closed_workers}", targets, 0, cfg.closed_seconds,
            workers=cfg.closed_workers,
        )  # fmt: skip
        sent.append(step)
        print_step(step)
        return step

    def body_sizes(self, reader: User, child_path: str) -> dict[str, Any]:
        """Bytes of the bodies measured: the history page nearest 5 KB (its limit chosen
        here, from a reader's real messages) and the largest page, raw and gzipped."""
        base = self.stack.url

        def get(path: str, headers: dict, user: User | None = reader) -> bytes:
            reply = http("GET", base + path, None, {**(auth(user) if user else {}), **headers})
            assert reply.status == 200, (path, reply.status, reply.body[:200])
            return reply.body

        probe = get(f"/api/v1/chat/messages?limit={LARGEST_LIMIT}", IDENTITY)
        count = len(json.loads(probe)["messages"]) or 1
        limit = max(1, min(LARGEST_LIMIT, round(count * TARGET_BODY / len(probe))))
        page = f"/api/v1/chat/messages?limit={limit}"
        largest = f"/api/v1/chat/messages?limit={LARGEST_LIMIT}"
        return {
            "page_limit": limit,
            "page_raw": len(get(page, IDENTITY)),
            "page_gzip": len(get(page, GZIP)),
            "largest_messages": count,
            "largest_raw": len(probe),
            "largest_gzip": len(get(largest, GZIP)),
            "child_summary_raw": len(get(child_path, IDENTITY)),
            "static_raw": len(get(STATIC_FILE, IDENTITY, None)),
            "openapi_raw": len(get(PUBLIC_GET, IDENTITY, None)),
        }


def print_step_header() -> None:
    print(
        f"  {'route':<20} {'offered':>7} {'achieved':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'refused':>8} {'locks':>5}  errors by status"
    )


def print_step(step: Step) -> None:
    refused = f"{100 * step.refused / step.sent:.1f}%" if step.sent else "-"
    print(
        f"  {step.label:<20} {step.offered:>7g} {step.achieved:>8.1f} {fmt_ms(step.p(50)):>7}"
        f" {fmt_ms(step.p(99)):>7} {refused:>8} {step.lock_expiries:>5}  {step.error_summary()}"
        + ("" if step.clean else "  (not clean)")
        + (f"  [generator lag p99 {step.send_lag_ms:.0f} ms]" if step.send_lag_ms > 50 else "")
        + (f"  [{step.log_errors} error lines in the logs]" if step.log_errors else "")
        + (
            f"  [/health not 200: {step.health_failed}/{step.health_polls} polls]"
            if step.health_polls
            else ""
        ),
        flush=True,
    )


# --- the cache layer -----------------------------------------------------------------------------
CACHED = "cached read"  # GET /api/v1/children/{id}, the child summary, response cache on
UNCACHED = "uncached read"  # the same, both instances restarted with CACHE_ENABLED=0
LIVEZ_NO_METRICS = "/livez, metrics off"  # both instances restarted with METRICS_ENABLED=0
METRICS_ROUNDS = 3  # alternating on/off closed-loop rounds for the metrics cost
STATIC = "static (nginx)"  # the web page's script, from nginx's proxy_cache after the first
PUBLIC = "public GET (nginx)"  # the OpenAPI document, micro-cached by nginx the same way
STATIC_FILE = "/static/chat.js"
PUBLIC_GET = "/api/v1/openapi.json"
ROUTE_NAMES = {
    "/livez": "GET /livez",
    LIVEZ_NO_METRICS: "GET /livez, metrics off (`METRICS_ENABLED=0`)",
    CACHED: "cached read: child summary (`GET /api/v1/children/{id}`), warmed",
    UNCACHED: "the same read, every cache off (`CACHE_ENABLED=0`)",
    STATIC: f"static file from nginx's cache (`GET {STATIC_FILE}`)",
    PUBLIC: f"micro-cached public GET (`GET {PUBLIC_GET}`)",
}
TARGET_BODY = 5 * 1024  # the issue's "5 KB JSON body": a history page of about that size
LARGEST_LIMIT = 100  # the history page's maximum limit: the largest per-user response
# Both variants ask for gzip explicitly (Go then leaves the body alone); the second opts out.
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "gzip", "X-No-Compression": "1"}
P99_AT_CONNECTIONS_MS = 50
# What the app's counters mean (chatbot/cache.py, chatbot/http_cache.py), said with them.
TIER_NOTE = (
    "memory: every look-up in the workers' memory tier (responses, compressed bodies);"
    " redis: every cached value the tier's reads asked for (the response version counters"
    " read with the user are not counted); response: the Redis look-ups of"
    " responses, made after a memory miss"
)
_CACHE_LINE = re.compile(r"^chatbot_cache_requests_total\{([^}]*)\}\s+(\S+)", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def auth(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.token}"}


def ladder_summary(steps: list[Step]) -> dict[str, Any]:
    """A route's ladder: peak achieved rate, latency at the highest clean rate (else at the
    peak), errors by rate."""
    clean = [s for s in steps if s.clean]
    at = max(clean, key=lambda s: s.offered) if clean else max(steps, key=lambda s: s.achieved)
    nginx_cache: Counter = Counter()
    for s in steps:
        nginx_cache.update(s.cache_status)
    return {
        "peak_achieved": round(max(s.achieved for s in steps), 1),
        "highest_clean": at.offered if clean else 0,
        "latency_at": at.offered,
        "p50_ms": rnd(at.p(50)),
        "p99_ms": rnd(at.p(99)),
        "sent": sum(s.sent for s in steps),
        "errors": sum(s.errors for s in steps),
        "errors_by_rate": "; ".join(
            f"{s.offered:g}/s: {s.error_summary()}" for s in steps if s.errors
        ),
        "nginx_cache": dict(nginx_cache),
        "steps": [s.summary() for s in steps],
    }


def closed_summary(step: Step) -> dict[str, Any]:
    return {
        "workers": step.workers,
        "seconds": step.seconds,
        "achieved": round(step.achieved, 1),
        "p50_ms": rnd(step.p(50)),
        "p99_ms": rnd(step.p(99)),
        "sent": step.sent,
        "errors": step.errors,
        "errors_by_status": step.error_summary(),
    }


def parse_cache_counts(text: str) -> dict[str, dict[str, float]]:
    """chatbot_cache_requests_total{tier, outcome} from a page in the Prometheus format."""
    counts: dict[str, dict[str, float]] = {}
    for labels, value in _CACHE_LINE.findall(text):
        found = dict(_LABEL.findall(labels))
        tier, outcome = found.get("tier"), found.get("outcome")
        if tier and outcome:
            counts.setdefault(tier, {}).setdefault(outcome, 0.0)
            counts[tier][outcome] += float(value)
    return counts


def scrape_cache_counts(stack: Stack) -> tuple[dict[str, dict[str, float]] | None, str]:
    """Both instances' cache counters added up, from each one's /metrics asked directly on
    loopback (as a Prometheus on the host would); (None, why) when there are none."""
    total: dict[str, dict[str, float]] = {}
    for app in stack.apps:
        reply = http("GET", f"http://127.0.0.1:{app.port}/metrics", timeout=5)
        if reply.status != 200:
            return None, f"GET /metrics answers {reply.status} (on {app.instance_id})"
        counts = parse_cache_counts(reply.body.decode(errors="replace"))
        if not counts:
            return None, f"/metrics of {app.instance_id} has no chatbot_cache_requests_total"
        for tier, outcomes in counts.items():
            for outcome, n in outcomes.items():
                total.setdefault(tier, {}).setdefault(outcome, 0.0)
                total[tier][outcome] += n
    return total, ""


def hit_rates(
    before: dict[str, dict[str, float]] | None,
    after: dict[str, dict[str, float]] | None,
    reads: int,
    why: str,
) -> dict[str, Any]:
    """Per tier: hits / (hits + misses) over the cache section, and since the instances
    started (the whole run until then). The response cache's own rate: a read runs its view
    only on a miss in both tiers (the `response` tier counts the Redis look-ups, made after
    a memory miss), so 1 - response misses / cached-view answers."""
    if before is None or after is None:
        return {"available": False, "why": why}

    def rates(counts: dict[str, dict[str, float]]) -> dict[str, Any]:
        table = {}
        for tier, outcomes in sorted(counts.items()):
            hits, misses = outcomes.get("hit", 0.0), outcomes.get("miss", 0.0)
            table[tier] = {
                "hit": int(hits),
                "miss": int(misses),
                "error": int(outcomes.get("error", 0.0)),
                "rate": hits / (hits + misses) if hits + misses else None,
            }
        return table

    section = {
        tier: {o: n - before.get(tier, {}).get(o, 0.0) for o, n in outcomes.items()}
        for tier, outcomes in after.items()
    }
    misses = section.get("response", {}).get("miss", 0.0)
    return {
        "available": True,
        "section": rates(section),
        "whole_run": rates(after),
        "response_reads": reads,
        "response_hit_rate": max(0.0, 1 - misses / reads) if reads else None,
    }


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def compression_cost(cache: dict[str, Any]) -> dict[str, Any]:
    """Throughput lost to compression: 1 - gzip / X-No-Compression (peak req/s; for the
    largest page, req/s at the closed loop's connections)."""
    comp = cache["compression"]
    page_gzip, page_off = comp["gzip"]["peak_achieved"], comp["X-No-Compression"]["peak_achieved"]
    big_gzip = comp["largest gzip"]["achieved"]
    big_off = comp["largest X-No-Compression"]["achieved"]
    return {
        "page": 1 - page_gzip / page_off if page_off else None,
        "largest": 1 - big_gzip / big_off if big_off else None,
        "page_rates": (page_gzip, page_off),
        "largest_rates": (big_gzip, big_off),
    }


def nginx_hits(route: dict[str, Any]) -> str:
    seen = route.get("nginx_cache") or {}
    total = sum(seen.values())
    return f"{100 * seen.get('HIT', 0) / total:.1f}% HIT" if total else "-"


def print_cache_layer(out: dict[str, Any], cfg: Config) -> None:
    routes, closed, sizes = out["routes"], out["closed"], out["sizes"]
    print(
        f"\n  cache layer ({out['seconds']} s): peak achieved rate (2xx/s);"
        " latency at the highest clean rate"
    )
    print(
        f"    {'route':<20} {'peak /s':>8} {'clean /s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        "  errors (by rate)"
    )
    for name in ("/livez", LIVEZ_NO_METRICS, CACHED, UNCACHED, STATIC, PUBLIC):
        if name not in routes:
            continue
        r = routes[name]
        extra = f"  [nginx cache: {nginx_hits(r)}]" if r["nginx_cache"] else ""
        print(
            f"    {name:<20} {r['peak_achieved']:>8.0f} {r['highest_clean']:>8g}"
            f" {fmt_ms(r['p50_ms']):>7} {fmt_ms(r['p99_ms']):>7}  {r['errors_by_rate'] or '-'}"
            + extra
        )
    print(
        f"  at {cfg.closed_workers} connections (closed loop: vegeta -rate=0"
        f" -max-workers={cfg.closed_workers}, {cfg.closed_seconds:g} s; latency from the send):"
    )
    for name, c in closed.items():
        print(
            f"    {name:<20} {c['achieved']:>8.0f} /s  p50 {fmt_ms(c['p50_ms']):>6} ms"
            f"  p99 {fmt_ms(c['p99_ms']):>6} ms  errors {c['errors_by_status']}"
        )
    livez, cached = routes["/livez"]["peak_achieved"], routes[CACHED]["peak_achieved"]
    uncached = routes[UNCACHED]["peak_achieved"]
    print(
        f"  cached / /livez {cached / (livez or 1):.3f}x (goal >= 0.8x);"
        f" cached / uncached {cached / (uncached or 1):.2f}x (goal >= 5x)"
        "  [uncached: every cache off, CACHE_ENABLED=0]"
    )
    cost = compression_cost(out)
    comp = out["compression"]
    print(
        f"  compression, {comp['page']} ({sizes['page_raw']:,} B -> {sizes['page_gzip']:,} B):"
        f" gzip {cost['page_rates'][0]:.0f} /s vs X-No-Compression {cost['page_rates'][1]:.0f} /s"
        f" (peak): cost {pct(cost['page'])} (goal <= 15%)"
    )
    print(
        f"  compression, largest {comp['largest']} ({sizes['largest_raw']:,} B ->"
        f" {sizes['largest_gzip']:,} B): gzip {cost['largest_rates'][0]:.0f} /s vs"
        f" X-No-Compression {cost['largest_rates'][1]:.0f} /s at {cfg.closed_workers}"
        f" connections: cost {pct(cost['largest'])}"
    )
    print(
        f"  other bodies: child summary {sizes['child_summary_raw']:,} B, {STATIC_FILE}"
        f" {sizes['static_raw']:,} B, {PUBLIC_GET} {sizes['openapi_raw']:,} B (nginx-cached)"
    )
    hits = out["hit_rates"]
    if not hits["available"]:
        print(f"  cache hit rates: not available until /metrics lands ({hits['why']})")
        return
    print("  cache hit rates per tier, hits / (hits + misses), both instances' /metrics:")
    print(f"    ({TIER_NOTE})")
    print(f"    {'tier':<10} {'this section':>13} {'whole run':>10}   hits/misses/errors (section)")
    for tier, row in hits["section"].items():
        whole = hits["whole_run"].get(tier, {})
        print(
            f"    {tier:<10} {pct(row['rate']):>13} {pct(whole.get('rate')):>10}"
            f"   {row['hit']}/{row['miss']}/{row['error']}"
        )
    print(
        f"    response cache, either tier: {pct(hits['response_hit_rate'])} of"
        f" {hits['response_reads']} cached-view answers (goal >= 95%)"
    )


def cache_goals(cache: dict[str, Any] | None, cfg: Config) -> list[dict[str, Any]]:
    if not cache:
        return []
    rows: list[dict[str, Any]] = []

    def add(name: str, value: str, target: str, ok: bool | None, note: str = "") -> None:
        rows.append({"goal": name, "measured": value, "target": target, "pass": ok, "note": note})

    routes, closed = cache["routes"], cache["closed"]
    livez, cached = routes["/livez"]["peak_achieved"], routes[CACHED]["peak_achieved"]
    uncached = routes[UNCACHED]["peak_achieved"]
    add("cached read vs /livez (cache section, peak req/s)",
        f"{cached / (livez or 1):.3f}x ({cached:.0f} / {livez:.0f})", ">= 0.8x",
        cached >= 0.8 * livez)  # fmt: skip
    add("cached read vs the same read uncached",
        f"{cached / (uncached or 1):.2f}x ({cached:.0f} / {uncached:.0f})", ">= 5x",
        cached >= 5 * uncached, "uncached: CACHE_ENABLED=0")  # fmt: skip
    for name in ("/livez", CACHED):
        p99 = closed[name]["p99_ms"]
        add(f"{name} p99 at {cfg.closed_workers} connections (closed loop)",
            f"{fmt_ms(p99)} ms ({closed[name]['achieved']:.0f}/s, errors"
            f" {closed[name]['errors']})", f"<= {P99_AT_CONNECTIONS_MS} ms",
            p99 is not None and p99 <= P99_AT_CONNECTIONS_MS
            and not closed[name]["errors"])  # fmt: skip
    rounds = cache.get("metrics_rounds")
    if rounds and rounds["on"] and rounds["off"]:
        on_rate, off_rate = statistics.median(rounds["on"]), statistics.median(rounds["off"])
        ratio = on_rate / (off_rate or 1)
        off = routes[LIVEZ_NO_METRICS]["peak_achieved"]
        add(f"metrics cost on /livez ({len(rounds['on'])} alternating rounds on/off, median req/s)",
            f"{pct(1 - ratio)} ({on_rate:.0f} on / {off_rate:.0f} off; rounds on"
            f" {rounds['on']}, off {rounds['off']})", "<= 5%", ratio >= 0.95,
            f"the two ladders' peaks, minutes apart: {livez:.0f} on / {off:.0f} off")  # fmt: skip
    cost = compression_cost(cache)
    gzip_rate, off_rate = cost["page_rates"]
    add(f"compression cost, {cache['sizes']['page_raw']:,} B JSON (peak req/s)",
        f"{pct(cost['page'])} ({gzip_rate:.0f} gzip / {off_rate:.0f} without)", "<= 15%",
        cost["page"] is not None and cost["page"] <= 0.15)  # fmt: skip
    hits = cache["hit_rates"]
    if hits["available"] and hits["response_hit_rate"] is not None:
        rate = hits["response_hit_rate"]
        add("response cache hit rate (cache section's reads)",
            f"{pct(rate)} of {hits['response_reads']}", ">= 95%", rate >= 0.95)  # fmt: skip
    else:
        add("cache hit rate on the read mix", "not measured", ">= 95%", None,
            "not available until /metrics lands")  # fmt: skip
    return rows


# --- goals -----------------------------------------------------------------------------------
def goals(
    results: dict[str, Any],
    caps: dict[str, float],
    db_rate: float,
    chat_steps: list[Step],
    probes: dict[int, dict[str, Step]],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: str, target: str, ok: bool | None, note: str = "") -> None:
        rows.append({"goal": name, "measured": value, "target": target, "pass": ok, "note": note})

    livez = caps.get("/livez") or 1
    chat_peak = max((s.achieved for s in chat_steps), default=0.0)
    results["chat_peak_achieved"] = round(chat_peak, 1)
    add("chat turn vs /livez (peak req/s)", f"{chat_peak / livez:.3f}x "
        f"({chat_peak:.0f} / {livez:.0f})", ">= 0.3x", chat_peak / livez >= 0.3)  # fmt: skip
    add("chat turn vs database only", f"{chat_peak / (db_rate or 1):.2f}x "
        f"({chat_peak:.0f} / {db_rate:.0f})", ">= 0.5x", chat_peak >= 0.5 * db_rate)  # fmt: skip
    for name in ("first history page", "child summary"):
        ratio = caps[name] / livez
        add(f"{name} vs /livez", f"{ratio:.3f}x ({caps[name]:.0f} / {livez:.0f})", ">= 0.5x",
            ratio >= 0.5)  # fmt: skip
    small, large = sorted(probes)
    for path in probes[small]:
        a, b = probes[small][path].p(50), probes[large][path].p(50)
        if a is None or b is None:
            add(f"{path}: p50 at {large:,} vs {small:,}", "no answers", "<= 1.3x", False)
            continue
        add(f"{path}: p50 at {large:,} vs {small:,}",
            f"{b / a:.2f}x ({fmt_ms(b)} / {fmt_ms(a)} ms)", "<= 1.3x", b <= 1.3 * a)  # fmt: skip

    clean = [s for s in chat_steps if s.clean]
    best = max((s.offered for s in clean), default=None)
    at = next((s for s in chat_steps if best and s.offered == 2 * best), None)
    if at is None:
        why = "no chat rate was served without error" if best is None else "not measured"
        add("at twice the highest clean rate", why, "measured", False)
    else:
        where = f"at {at.offered:g}/s (2 x {best:g}/s)"
        p99 = at.p(99)
        add(f"accepted p99 {where}", f"{fmt_ms(p99)} ms", "<= 1000 ms",
            p99 is not None and p99 <= 1000)  # fmt: skip
        rp99 = at.p(99, at.refused_ms)
        add(f"refused p99 {where}",
            f"{fmt_ms(rp99)} ms ({at.refused} refused, {100 * at.refused / at.sent:.1f}%)",
            "<= 100 ms", rp99 is None or rp99 <= 100,
            "none refused at this rate" if not at.refused else "")  # fmt: skip
        add(f"lock expiries {where}", str(at.lock_expiries), "0", at.lock_expiries == 0)
        bad_5xx = sum(n for c, n in at.codes.items() if c >= 500 and c != 503)
        bad_5xx += at.refused_no_retry_after
        other = at.error_summary()
        add(f"5xx other than 503 + Retry-After {where}", f"{bad_5xx} (errors: {other})", "0",
            bad_5xx == 0)  # fmt: skip
        flaps = sum(s.health_failed for s in chat_steps)
        polls = sum(s.health_polls for s in chat_steps)
        add("/health not 200 during the chat load (all rates)", f"{flaps} of {polls} polls", "0",
            flaps == 0, "the database is busy, not down")  # fmt: skip
    integrity = results["integrity"]
    add("lost (whole run)", str(integrity["lost"]), "0", integrity["lost"] == 0)
    add("duplicated (whole run)", str(integrity["duplicated"]), "0", integrity["duplicated"] == 0)
    return rows


def print_goals(rows: list[dict[str, Any]]) -> None:
    print("\ngoals (ratios from this one run):")
    for row in rows:
        verdict = verdict_of(row)
        note = f"  ({row['note']})" if row["note"] else ""
        print(f"  {verdict}  {row['goal']:<58} {row['measured']:<34} {row['target']}{note}")
    passed = sum(1 for r in rows if r["pass"])
    unmeasured = sum(1 for r in rows if r["pass"] is None)
    print(
        f"  {passed} of {len(rows) - unmeasured} goals met"
        + (f" ({unmeasured} not measured)" if unmeasured else "")
    )


def verdict_of(row: dict[str, Any]) -> str:
    return "PASS" if row["pass"] else "n/a " if row["pass"] is None else "MISS"


# --- docs and plot ----------------------------------------------------------------------------
BEGIN, END = "<!-- bench:begin (written by devtools/bench.py) -->", "<!-- bench:end -->"


def cache_docs(cache: dict[str, Any], cfg: Config) -> list[str]:
    """The cache layer's part of docs/benchmarks.md."""
    routes, closed, sizes = cache["routes"], cache["closed"], cache["sizes"]
    comp = cache["compression"]
    lines = [
        f"### Cache layer ({cfg.get_seconds:g} s per rate, at the end of the run)",
        "",
        "Peak achieved rate over rising rates; p50/p99 at the highest rate served without"
        " error; errors at each rate that had any. The uncached read is the same request after"
        " both instances were restarted with `CACHE_ENABLED=0` (same ports, nginx, Redis"
        " and data; every cache off). `/livez, metrics off` is `/livez` after a restart with"
        " `METRICS_ENABLED=0`. The metrics cost goal compares neither ladder (minutes apart,"
        " their peaks move with the generator's lag) but alternating closed-loop rounds,"
        " metrics on then off, each after a restart of both instances.",
        "",
        "| route | peak achieved /s | highest clean rate /s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("/livez", LIVEZ_NO_METRICS, CACHED, UNCACHED, STATIC, PUBLIC):
        if name not in routes:
            continue
        r = routes[name]
        extra = f" (nginx cache: {nginx_hits(r)})" if r["nginx_cache"] else ""
        lines.append(
            f"| {ROUTE_NAMES[name]} | {r['peak_achieved']:.0f} | {r['highest_clean']:g} "
            f"| {fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} "
            f"| {r['errors_by_rate'] or '-'}{extra} |"
        )
    livez, cached = routes["/livez"]["peak_achieved"], routes[CACHED]["peak_achieved"]
    uncached = routes[UNCACHED]["peak_achieved"]
    lines += [
        "",
        f"Cached read vs /livez: **{cached / (livez or 1):.3f}x**; cached vs uncached:"
        f" **{cached / (uncached or 1):.2f}x**.",
        "",
        f"At {cfg.closed_workers} connections (vegeta's closed loop, `-rate=0 -max-workers="
        f"{cfg.closed_workers}`, {cfg.closed_seconds:g} s; latency from each request's send):",
        "",
        "| route | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
    ]
    for name, c in closed.items():
        lines.append(
            f"| {name} | {c['achieved']:.0f} | {fmt_ms(c['p50_ms'])} | {fmt_ms(c['p99_ms'])} "
            f"| {c['errors_by_status']} |"
        )
    cost = compression_cost(cache)
    g, o = comp["gzip"], comp["X-No-Compression"]
    bg, bo = comp["largest gzip"], comp["largest X-No-Compression"]
    lines += [
        "",
        "Compression (gzip level 6 in the app, compressed bodies kept per worker by ETag; the"
        " same cached history page asked with `Accept-Encoding: gzip`, and with"
        " `X-No-Compression: 1` added):",
        "",
        "| body | bytes (gzipped) | gzip /s | p99 ms | without /s | p99 ms | cost |",
        "|---|---|---|---|---|---|---|",
        f"| `GET {comp['page']}` (peak, rising rates) | {sizes['page_raw']:,}"
        f" ({sizes['page_gzip']:,}) | {g['peak_achieved']:.0f} | {fmt_ms(g['p99_ms'])}"
        f" | {o['peak_achieved']:.0f} | {fmt_ms(o['p99_ms'])} | {pct(cost['page'])} |",
        f"| `GET {comp['largest']}`, the largest per-user response"
        f" ({cfg.closed_workers} connections) | {sizes['largest_raw']:,}"
        f" ({sizes['largest_gzip']:,}) | {bg['achieved']:.0f} | {fmt_ms(bg['p99_ms'])}"
        f" | {bo['achieved']:.0f} | {fmt_ms(bo['p99_ms'])} | {pct(cost['largest'])} |",
        "",
        f"Other bodies: the child summary {sizes['child_summary_raw']:,} B"
        + (" (under 1 KiB: not compressed)" if sizes["child_summary_raw"] < 1024 else "")
        + f", `{STATIC_FILE}` {sizes['static_raw']:,} B, `{PUBLIC_GET}`"
        f" {sizes['openapi_raw']:,} B (nginx-cached).",
        "",
    ]
    hits = cache["hit_rates"]
    if not hits["available"]:
        lines.append(
            f"Cache hit rates per tier: not available until /metrics lands ({hits['why']})."
        )
        return lines
    lines += [
        "Cache hit rates per tier, hits / (hits + misses), both instances' `/metrics`"
        f" ({TIER_NOTE}):",
        "",
        "| tier | cache section | hits / misses / errors | whole run until the restart |",
        "|---|---|---|---|",
    ]
    for tier, row in hits["section"].items():
        whole = hits["whole_run"].get(tier, {})
        lines.append(
            f"| {tier} | {pct(row['rate'])} | {row['hit']} / {row['miss']} / {row['error']} "
            f"| {pct(whole.get('rate'))} |"
        )
    lines += [
        "",
        f"The response cache, either tier: **{pct(hits['response_hit_rate'])}** of the"
        f" {hits['response_reads']} answers of cached views in the section.",
    ]
    return lines


def write_docs(results: dict[str, Any], cfg: Config) -> None:
    lines = [BEGIN, ""]
    lines.append(
        f"Run of {results['date']} on this machine ({os.cpu_count()} cores), "
        f"`{results['command']}`, {results['minutes']:.1f} minutes"
        + (" — **a `--quick` smoke run, not a measurement**" if cfg.quick else "")
        + "."
    )
    lines += ["", "### Goals", "", "| | goal | measured | target |", "|---|---|---|---|"]
    for row in results["goals"]:
        verdict = {"PASS": "PASS", "MISS": "**MISS**"}.get(verdict_of(row), "not measured")
        note = f" ({row['note']})" if row["note"] else ""
        lines.append(f"| {verdict} | {row['goal']} | {row['measured']}{note} | {row['target']} |")
    small, large = (str(s) for s in cfg.sizes)
    lines += [
        "",
        f"### Hot paths at {int(small):,} and {int(large):,} stored messages "
        f"({cfg.probe_rate}/s, {cfg.probe_seconds:g} s each)",
        "",
        f"| hot path | p50 at {int(small):,} | p50 at {int(large):,} | ratio "
        f"| p99 at {int(small):,} | p99 at {int(large):,} |",
        "|---|---|---|---|---|---|",
    ]
    for path, a in results["probes"][small].items():
        b = results["probes"][large][path]
        ratio = (b["p50_ms"] or 0) / (a["p50_ms"] or 1)
        lines.append(
            f"| {path} | {fmt_ms(a['p50_ms'])} ms | {fmt_ms(b['p50_ms'])} ms | {ratio:.2f}x "
            f"| {fmt_ms(a['p99_ms'])} ms | {fmt_ms(b['p99_ms'])} ms |"
        )
    counts = results["probes_stored_before_after"]
    lines += [
        "",
        "Stored messages during each stage (its chat turns add some): "
        + "; ".join(f"{a:,} → {b:,}" for a, b in counts.values())
        + ".",
        "",
        f"### Chat turns at rising rates ({cfg.users} users, {cfg.seconds:g} s per rate)",
        "",
        "| offered /s | achieved /s | p50 ms | p99 ms | refused (503) | lock expiries "
        "| errors by status | clean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results["chat"]:
        share = f"{100 * s['refused'] / s['sent']:.1f}%" if s["sent"] else "-"
        errors = " ".join(
            [f"{c}: {n}" for c, n in s["codes"].items() if not c.startswith("2")]
            + [f"{k}: {n}" for k, n in s["transport_errors"].items()]
        )
        lines.append(
            f"| {s['offered']:g} | {s['achieved']:.1f} | {fmt_ms(s['p50_ms'])} "
            f"| {fmt_ms(s['p99_ms'])} | {share} | {s['lock_expiries']} | {errors or '-'} "
            f"| {'yes' if s['clean'] else 'no'} |"
        )
    integ = results["integrity"]
    lines += [
        "",
        f"After the run: {integ['accepted']} accepted messages checked in the database "
        f"({integ['resends_answered_200']} of them resends answered 200): **lost "
        f"{integ['lost']}, duplicated {integ['duplicated']}** (stored twice "
        f"{integ['stored_twice']}, processed twice {integ['processed_twice']}, resend with "
        f"other replies {integ['resend_with_other_replies']}).",
        "",
        f"### Capacity ({cfg.get_seconds:g} s per rate) and the database's own limit",
        "",
        "| route | peak achieved /s | highest clean rate /s | ratio to /livez |",
        "|---|---|---|---|",
    ]
    livez = results["capacity"]["/livez"]["peak_achieved"] or 1
    for name, cap in results["capacity"].items():
        lines.append(
            f"| {name} | {cap['peak_achieved']:.0f} | {cap['highest_clean']:g} "
            f"| {cap['peak_achieved'] / livez:.3f}x |"
        )
    lines.append(
        f"| chat turn | {results['chat_peak_achieved']:.0f} | "
        f"{max((s['offered'] for s in results['chat'] if s['clean']), default=0):g} "
        f"| {results['chat_peak_achieved'] / livez:.3f}x |"
    )
    db = results["db_only"]
    lines += [
        "",
        f"Database only (a recorded answer turn's {db['commands_per_turn']} commands —"
        f" {db['commands']} — replayed with PyMongo by {db['concurrency']} threads):"
        f" **{db['turns_per_s']:.0f} turns/s**.",
        "",
        f"![latency and achieved rate against the offered rate]({PLOT.name})",
        "",
    ]
    if results.get("cache"):
        lines += [*cache_docs(results["cache"], cfg), ""]
    if results.get("whatsapp"):
        lines += [*bench_whatsapp.docs(results["whatsapp"]), ""]
    if results.get("followup"):
        lines += [*bench_followup.docs(results["followup"]), ""]
    lines.append(END)
    section = "\n".join(lines)
    text = DOCS.read_text() if DOCS.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOCS.write_text(text)
    print(f"\nwrote {os.path.relpath(DOCS, ROOT)}")


def write_plot(results: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (devtools/bench_setup.sh installs it): no plot")
        return
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    chat = results["chat"]
    offered = [s["offered"] for s in chat]
    broken = [s for s in chat if not s["clean"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(offered, [s["p50_ms"] for s in chat], "o-", label="p50 (accepted)")
    left.plot(offered, [s["p99_ms"] for s in chat], "s-", label="p99 (accepted)")
    left.axhline(1000, color="grey", linestyle=":", label="1 s")
    left.set_yscale("log")
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.set_ylabel("latency from the intended send time, ms")
    left.set_title("chat turn latency")
    right.plot(offered, [s["achieved"] for s in chat], "o-", label="achieved (2xx/s)")
    right.plot(offered, offered, ":", color="grey", label="offered")
    right.plot(
        offered,
        [s["refused"] / s["seconds"] for s in chat],
        "v-",
        color="tab:red",
        label="refused (503/s)",
    )
    right.set_ylim(bottom=0)
    right.set_ylabel("turns /s")
    right.set_title("achieved vs offered")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(offered))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("offered chat turns /s")
        for s in broken:
            ax.axvspan(s["offered"] / 1.15, s["offered"] * 1.15, color="red", alpha=0.08)
        ax.legend(title="red: not served without error" if broken else None)
    fig.suptitle(f"chatbot, nginx -> 2 instances, {results['date']}")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)
    plt.close(fig)
    print(f"wrote {os.path.relpath(PLOT, ROOT)}")


# --- main --------------------------------------------------------------------------------------
def parse_args() -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (~1.5 minutes)")
    parser.add_argument("--rates", help="chat-turn rates per second, e.g. 25,50,100,200,400")
    parser.add_argument("--seconds", type=float, help="seconds per chat-turn rate")
    parser.add_argument("--get-seconds", type=float, help="seconds per GET rate")
    parser.add_argument("--users", type=int)
    parser.add_argument("--sizes", help="the two message counts compared, e.g. 1000,50000")
    parser.add_argument(
        "--cache-layer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the cache layer at the end (default: yes)",
    )
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write docs/benchmarks.md and the plot (default: yes, except with --quick)",
    )
    parser.add_argument(
        "--whatsapp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the WhatsApp webhook and queue at the end (default: yes)",
    )
    parser.add_argument(
        "--followup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the reminders and the health workers' page at the end (default: yes)",
    )
    parser.add_argument(
        "--followup-only",
        action="store_true",
        help="set up the users, then only the follow-up section",
    )
    parser.add_argument(
        "--whatsapp-only",
        action="store_true",
        help="set up the users, then only the WhatsApp section",
    )
    args = parser.parse_args()
    cfg = quick_config() if args.quick else Config()
    cfg.whatsapp = args.whatsapp
    cfg.whatsapp_only = args.whatsapp_only
    cfg.followup = args.followup
    cfg.followup_only = args.followup_only
    if args.rates:
        cfg.rates = [int(r) for r in args.rates.split(",")]
        cfg.max_rate = max(cfg.max_rate, max(cfg.rates))
    if args.seconds:
        cfg.seconds = args.seconds
    if args.get_seconds:
        cfg.get_seconds = args.get_seconds
    if args.users:
        cfg.users = args.users
    if args.sizes:
        small, large = (int(s) for s in args.sizes.split(","))
        cfg.sizes = (small, large)
    cfg.cache_layer = args.cache_layer
    if args.docs is None:
        args.docs = not cfg.quick and not cfg.whatsapp_only and not cfg.followup_only
    return cfg, args


def main() -> None:
    cfg, args = parse_args()
    # TERM (e.g. a timeout) must still run the clean-up below, or servers outlive the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if not VEGETA.exists():
        raise SystemExit("vegeta is needed: bash devtools/bench_setup.sh")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chatbot-bench-") as tmp:
        stack = Stack(Path(tmp) / "stack")
        bench = Bench(cfg, stack, Path(tmp))
        try:
            stack.start()
            print(
                f"nginx -> {INSTANCES} instances x {WORKERS} workers x {THREADS} threads;"
                f" vegeta {VEGETA.relative_to(ROOT)}, open loop\n",
                flush=True,
            )
            bench.run()
        except BaseException:
            print("\n--- service logs ---\n" + stack.logs_tail(), file=sys.stderr)
            raise
        finally:
            stack.stop()
    results = bench.results
    results["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    results["minutes"] = (time.monotonic() - started) / 60
    results["command"] = (
        "make bench" if sys.argv[1:] == [] else "devtools/bench.py " + " ".join(sys.argv[1:])
    )
    results["config"] = vars(cfg)
    RAW.parent.mkdir(exist_ok=True)
    RAW.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nraw figures: {RAW.relative_to(ROOT)}; {results['minutes']:.1f} minutes")
    if args.docs:
        write_docs(results, cfg)
        write_plot(results)
        if results.get("whatsapp"):
            bench_whatsapp.plot(
                results["whatsapp"], DOCS.parent / bench_whatsapp.PLOT_NAME, results["date"]
            )


if __name__ == "__main__":
    main()
