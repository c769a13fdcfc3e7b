"""The instance's collector: every METRICS_INTERVAL_S, one saved snapshot and the alerts.

One per instance, however many workers: the gunicorn master starts it once it is ready
(`chatbot.metrics.start_collector`) as `python -m chatbot.collector --master-pid N`, and
it exits when that master is gone. Each run it

1. reads the instance's metric files (`PROMETHEUS_MULTIPROC_DIR`: every worker's, the
   totals of workers that have exited included) and takes the differences with the
   previous run: requests, errors, response time (average and percentiles), cache,
   database and Redis calls over the interval;
2. asks psutil about the master and its children: CPU over the interval as a share of
   the whole machine, each worker's resident memory, the instance's uptime;
3. saves that snapshot to `metrics`, opens or resolves the three alerts in `alerts`
   (logging a structured line, and posting to ALERT_WEBHOOK_URL when set), and now and
   then deletes snapshots and resolved alerts past their retention.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psutil
from prometheus_client import multiprocess

from chatbot.db import DatabaseError, Mongo, deadline
from chatbot.db.metrics import AlertRepository, MetricsRepository
from chatbot.db.whatsapp import WhatsAppInbox, WhatsAppOutbox
from chatbot.logs import configure_logging
from chatbot.metrics import CACHE_OUTCOMES, CACHE_TIERS, SHED_REASONS
from chatbot.metrics_dir import ENV_DIR
from chatbot.settings import Settings

log = logging.getLogger("chatbot.collector")

MEMORY, CPU, RESPONSE_TIME = "high_memory_usage", "high_cpu_usage", "high_response_time"
# The WhatsApp queue's oldest unfinished work (only with WHATSAPP_ENABLED=1).
WHATSAPP_QUEUE_AGE = "whatsapp_queue_stalled"
ALERT_KINDS = (MEMORY, CPU, RESPONSE_TIME, WHATSAPP_QUEUE_AGE)
# Old snapshots and alerts are deleted about every 10 minutes, not every run: on
# FerretDB (no index use) each delete scans the collection.
PRUNE_EVERY_S = 600
# The database calls of one run must finish within this (seconds).
RUN_DEADLINE_S = 10.0


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- reading the metric files ----------------------------------------------------


@dataclass
class Reading:
    """Cumulative figures of the whole instance at one moment."""

    by_status: dict[str, float] = field(default_factory=dict)
    # Response time histogram: cumulative counts per upper bound (seconds, +Inf last).
    bounds: list[float] = field(default_factory=list)
    buckets: list[float] = field(default_factory=list)
    time_sum: float = 0.0
    in_flight: float = 0.0
    cache: dict[tuple[str, str], float] = field(default_factory=dict)
    mongo_calls: float = 0.0
    mongo_seconds: float = 0.0
    mongo_errors: float = 0.0
    redis_calls: float = 0.0
    redis_seconds: float = 0.0
    redis_errors: float = 0.0
    shed: dict[str, float] = field(default_factory=dict)
    workers: float = 0.0

    @property
    def requests(self) -> float:
        return sum(self.by_status.values())


def read_registry(path: str) -> Reading:
    """Add up every worker's metric files in `path` (prometheus_client's multiprocess files)."""
    reading = Reading()
    buckets: dict[float, float] = {}
    for metric in multiprocess.MultiProcessCollector(None, path).collect():
        for s in metric.samples:
            _add_sample(reading, buckets, s.name, s.labels, s.value)
    for bound in sorted(buckets):
        reading.bounds.append(bound)
        reading.buckets.append(buckets[bound])
    return reading


# Samples added up as they are: metric name -> Reading attribute.
_SUMS = {
    "chatbot_http_response_time_seconds_sum": "time_sum",
    "chatbot_http_requests_in_flight": "in_flight",
    "chatbot_mongodb_command_duration_seconds_count": "mongo_calls",
    "chatbot_mongodb_command_duration_seconds_sum": "mongo_seconds",
    "chatbot_mongodb_command_errors_total": "mongo_errors",
    "chatbot_redis_call_duration_seconds_count": "redis_calls",
    "chatbot_redis_call_duration_seconds_sum": "redis_seconds",
    "chatbot_redis_errors_total": "redis_errors",
    "chatbot_instance_workers": "workers",
}


def _add_sample(
    r: Reading, buckets: dict[float, float], name: str, labels: dict[str, str], value: float
) -> None:
    attr = _SUMS.get(name)
    if attr is not None:
        setattr(r, attr, getattr(r, attr) + value)
    elif name == "chatbot_http_requests_total":
        r.by_status[labels["status"]] = r.by_status.get(labels["status"], 0.0) + value
    elif name == "chatbot_http_response_time_seconds_bucket":
        bound = float(labels["le"])  # "+Inf" parses as inf
        buckets[bound] = buckets.get(bound, 0.0) + value
    elif name == "chatbot_cache_requests_total":
        key = (labels["tier"], labels["outcome"])
        r.cache[key] = r.cache.get(key, 0.0) + value
    elif name == "chatbot_http_shed_total":
        r.shed[labels["reason"]] = r.shed.get(labels["reason"], 0.0) + value


def quantile(bounds: list[float], cumulative: list[float], q: float) -> float | None:
    """The q-quantile of a histogram (Prometheus's histogram_quantile), None when empty.

    Linear inside the bucket; beyond the last finite bound, that bound.
    """
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


# --- processes -----------------------------------------------------------------------


class ProcessWatch:
    """CPU and memory of the master and everything it started, over each interval."""

    def __init__(self, master_pid: int) -> None:
        self.master = psutil.Process(master_pid)
        self.cores = psutil.cpu_count() or 1
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (create_time, cpu seconds)
        self._at = time.time()
        self.sample()

    def sample(self) -> dict[str, Any]:
        now = time.time()
        elapsed = max(now - self._at, 1e-6)
        processes = [self.master, *self.master.children(recursive=True)]
        worker_pids = {p.pid for p in self.master.children()} - {os.getpid()}
        cpu: dict[int, tuple[float, float]] = {}
        used = 0.0
        workers = []
        total_rss = 0
        for p in processes:
            try:
                with p.oneshot():
                    created = p.create_time()
                    t = p.cpu_times()
                    rss = p.memory_info().rss
            except psutil.Error:  # exited meanwhile
                continue
            seconds = t.user + t.system
            cpu[p.pid] = (created, seconds)
            before = self._cpu.get(p.pid)
            if before is not None and before[0] == created:
                delta = seconds - before[1]
            elif created >= self._at:  # started during the interval
                delta = seconds
            else:
                delta = 0.0
            used += max(delta, 0.0)
            total_rss += rss
            if p.pid in worker_pids:
                workers.append(
                    {"pid": p.pid, "rss": rss, "cpu": round(100 * max(delta, 0.0) / elapsed, 1)}
                )
        self._cpu, self._at = cpu, now
        return {
            "cpuPercent": round(100 * used / (elapsed * self.cores), 1),
            "cores": self.cores,
            "rss": total_rss,
            "workers": sorted(workers, key=lambda w: w["pid"]),
            "uptime": round(now - self.master.create_time(), 1),
        }


# --- the snapshot ---------------------------------------------------------------------


def _delta(now: float, before: float) -> float:
    # Never negative: a counter only goes back if its files were removed under us.
    return max(now - before, 0.0)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _rate(hits: float, total: float) -> float | None:
    return round(hits / total, 4) if total else None


def build_snapshot(
    instance: str,
    now: datetime,
    elapsed_s: float,
    before: Reading,
    current: Reading,
    processes: dict[str, Any],
) -> dict[str, Any]:
    """The design's snapshot of one interval, from two readings and a process sample."""
    statuses = {
        code: int(_delta(n, before.by_status.get(code, 0.0)))
        for code, n in sorted(current.by_status.items())
    }
    requests = sum(statuses.values())
    client = sum(n for code, n in statuses.items() if code.startswith("4"))
    server = sum(n for code, n in statuses.items() if code.startswith("5"))
    previous = dict(zip(before.bounds, before.buckets, strict=True))
    cumulative = [
        _delta(n, previous.get(b, 0.0))
        for b, n in zip(current.bounds, current.buckets, strict=True)
    ]
    timed = cumulative[-1] if cumulative else 0.0
    average = _delta(current.time_sum, before.time_sum) / timed if timed else None
    cache = {}
    for tier in CACHE_TIERS:
        counts = {
            o: int(_delta(current.cache.get((tier, o), 0.0), before.cache.get((tier, o), 0.0)))
            for o in CACHE_OUTCOMES
        }
        looked = counts["hit"] + counts["miss"] + counts["error"]
        cache[tier] = {
            "hits": counts["hit"],
            "misses": counts["miss"],
            "errors": counts["error"],
            "hitRate": _rate(counts["hit"], looked),
        }

    def calls(n: float, b: float, s: float, bs: float, e: float, be: float) -> dict[str, Any]:
        count = _delta(n, b)
        return {
            "calls": int(count),
            "errors": int(_delta(e, be)),
            "averageMs": _ms(_delta(s, bs) / count) if count else None,
        }

    workers = processes["workers"]
    return {
        "timestamp": now,
        "instance": instance,
        "intervalSeconds": round(elapsed_s, 3),
        "uptime": processes["uptime"],
        "memory": {
            "rss": processes["rss"],
            "maxWorkerRss": max((w["rss"] for w in workers), default=0),
            "workers": workers,
        },
        "cpu": {"percent": processes["cpuPercent"], "cores": processes["cores"]},
        "activeConnections": int(current.in_flight),
        "requestCount": requests,
        "errorCount": client + server,
        "clientErrorCount": client,
        "serverErrorCount": server,
        "errorsByStatus": {code: n for code, n in statuses.items() if code >= "400" and n},
        "throughput": round(requests / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "responseTime": {
            "average": _ms(average),
            "p50": _ms(quantile(current.bounds, cumulative, 0.50)),
            "p95": _ms(quantile(current.bounds, cumulative, 0.95)),
            "p99": _ms(quantile(current.bounds, cumulative, 0.99)),
        },
        "cache": cache,
        "mongodb": calls(
            current.mongo_calls,
            before.mongo_calls,
            current.mongo_seconds,
            before.mongo_seconds,
            current.mongo_errors,
            before.mongo_errors,
        ),
        "redis": calls(
            current.redis_calls,
            before.redis_calls,
            current.redis_seconds,
            before.redis_seconds,
            current.redis_errors,
            before.redis_errors,
        ),
        "shed": {
            reason: int(_delta(current.shed.get(reason, 0.0), before.shed.get(reason, 0.0)))
            for reason in SHED_REASONS.values()
        },
        "totals": {
            "requests": int(current.requests),
            "errors": int(sum(n for code, n in current.by_status.items() if code >= "400")),
        },
    }


# --- alerts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    memory_bytes: int
    cpu_percent: float
    response_time_ms: float
    whatsapp_queue_age_s: float = 60.0

    @classmethod
    def from_settings(cls, s: Settings) -> Thresholds:
        return cls(
            s.alert_memory_mb * 2**20,
            s.alert_cpu_percent,
            s.alert_response_time_ms,
            s.whatsapp_queue_age_alert_s,
        )


@dataclass(frozen=True)
class Condition:
    firing: bool
    value: float | None
    threshold: float
    message: str
    details: dict[str, Any]


def conditions(snapshot: dict[str, Any], t: Thresholds) -> dict[str, Condition]:
    """The three alert conditions of the design, for one snapshot."""
    workers = snapshot["memory"]["workers"]
    biggest = max(workers, key=lambda w: w["rss"], default=None)
    rss = biggest["rss"] if biggest else 0
    cpu = snapshot["cpu"]["percent"]
    rt = snapshot["responseTime"]
    p95, average = rt["p95"], rt["average"]
    slowest = max((v for v in (p95, average) if v is not None), default=None)
    found = {
        MEMORY: Condition(
            rss > t.memory_bytes,
            rss,
            t.memory_bytes,
            f"a worker uses {rss / 2**20:.0f} MiB (limit {t.memory_bytes / 2**20:.0f} MiB)",
            {"pid": biggest["pid"] if biggest else None, "rssMb": round(rss / 2**20, 1)},
        ),
        CPU: Condition(
            cpu > t.cpu_percent,
            cpu,
            t.cpu_percent,
            f"the instance used {cpu:.1f} % of the machine's CPU (limit {t.cpu_percent:g} %)",
            {"cores": snapshot["cpu"]["cores"]},
        ),
        # No request in the interval: no response time, so nothing to alert about.
        RESPONSE_TIME: Condition(
            slowest is not None and slowest > t.response_time_ms,
            slowest,
            t.response_time_ms,
            f"response time p95 {p95} ms, average {average} ms (limit {t.response_time_ms:g} ms)",
            {"p95Ms": p95, "averageMs": average, "requests": snapshot["requestCount"]},
        ),
    }
    whatsapp = snapshot.get("whatsapp")
    if whatsapp is not None:
        age = whatsapp["oldestWorkS"]
        found[WHATSAPP_QUEUE_AGE] = Condition(
            age > t.whatsapp_queue_age_s,
            age,
            t.whatsapp_queue_age_s,
            f"the oldest WhatsApp message or reply has waited {age:.0f} s "
            f"(limit {t.whatsapp_queue_age_s:g} s): are the queue workers running?",
            {"inbox": whatsapp["inbox"], "outbox": whatsapp["outbox"]},
        )
    return found


class AlertStore(Protocol):
    """Where alerts are kept: chatbot.db.metrics.AlertRepository (see it for the contract)."""

    def find_open(self, kind: str, instance: str) -> dict[str, Any] | None: ...
    def open(self, alert: dict[str, Any]) -> tuple[dict[str, Any], bool]: ...
    def still_open(self, alert_id: str, now: datetime, value: float, details: Any) -> None: ...
    def resolve(
        self, alert_id: str, now: datetime, value: float | None
    ) -> dict[str, Any] | None: ...


class Alerter:
    """Opens an alert when its condition holds, resolves it when it clears; one open per kind."""

    def __init__(
        self,
        alerts: AlertStore,
        instance: str,
        thresholds: Thresholds,
        notify: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.alerts = alerts
        self.instance = instance
        self.thresholds = thresholds
        self.notify = notify

    def evaluate(self, snapshot: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """Apply one snapshot; answer the events (opened/resolved alerts)."""
        events = []
        for kind, c in conditions(snapshot, self.thresholds).items():
            current = self.alerts.find_open(kind, self.instance)
            if c.firing and current is None:
                alert, new = self.alerts.open(
                    {
                        "kind": kind,
                        "instance": self.instance,
                        "openedAt": now,
                        "lastSeenAt": now,
                        "value": c.value,
                        "peak": c.value,
                        "threshold": c.threshold,
                        "message": c.message,
                        "details": c.details,
                    }
                )
                if new:
                    events.append(self._event("opened", alert))
            elif c.firing:
                assert current is not None  # the branch above took the other case
                assert c.value is not None  # a firing condition was measured
                self.alerts.still_open(current["id"], now, c.value, c.details)
            elif current is not None:
                resolved = self.alerts.resolve(current["id"], now, c.value)
                if resolved is not None:
                    events.append(self._event("resolved", resolved))
        return events

    def _event(self, what: str, alert: dict[str, Any]) -> dict[str, Any]:
        level = logging.WARNING if what == "opened" else logging.INFO
        log.log(
            level,
            "alert %s: %s on %s: %s",
            what,
            alert["kind"],
            alert["instance"],
            alert["message"],
            extra={
                "event": f"alert_{what}",
                "alert_id": alert["id"],
                "alert_kind": alert["kind"],
                "alert_state": alert["state"],
                "alert_value": alert.get("value"),
                "alert_threshold": alert.get("threshold"),
            },
        )
        event = {"event": f"alert.{what}", "alert": alert}
        if self.notify is not None:
            self.notify(event)
        return event


class Webhook:
    """Posts alert events as JSON to a URL, from a thread of its own, with retries.

    Each event is tried 1 + `retries` times (waiting 1 s, 2 s, 4 s... between tries), each
    try within `timeout_s`; a 2xx answer is success. Events wait in a bounded queue, so
    a dead receiver never holds up the snapshots.
    """

    def __init__(self, url: str, timeout_s: float, retries: int, backoff_s: float = 1.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        threading.Thread(target=self._run, name="alert-webhook", daemon=True).start()

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            log.warning("alert webhook queue full; event dropped")

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            try:
                self.deliver(event)
            finally:
                self.queue.task_done()

    def deliver(self, event: dict[str, Any]) -> bool:
        body = json.dumps(event, default=_json_default).encode()
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(  # noqa: S310 -- the operator's configured URL
                self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as answer:  # noqa: S310
                    if 200 <= answer.status < 300:
                        return True
                    problem = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
                problem = type(exc).__name__
        log.warning(
            "alert webhook failed after %d tries: %s",
            self.retries + 1,
            problem,
            extra={"event": "alert_webhook_failed"},
        )
        return False


def _json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# --- the loop ---------------------------------------------------------------------------


class Collector:
    """One instance's collector: `run_once` every interval while the master lives."""

    def __init__(
        self,
        settings: Settings,
        db: Any,  # pymongo Database, only handed to the repositories
        path: str,
        master_pid: int,
        notify: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.path = path
        self.master_pid = master_pid
        self.db = db
        self.snapshots = MetricsRepository(db)
        self.alerts = AlertRepository(db)
        self.alerter = Alerter(
            self.alerts, settings.instance_id, Thresholds.from_settings(settings), notify
        )
        self.processes = ProcessWatch(master_pid)
        # Zero, not a first reading: the master emptied the directory just before starting
        # this process, so whatever is there already was served since the instance started
        # and belongs in the first interval.
        self.previous = Reading()
        self.previous_at = time.monotonic()
        self.pruned_at = 0.0

    def master_alive(self) -> bool:
        return os.getppid() == self.master_pid and psutil.pid_exists(self.master_pid)

    def run_once(self) -> dict[str, Any]:
        """Take one snapshot, save it and apply the alerts; answer the snapshot."""
        current = read_registry(self.path)
        at = time.monotonic()
        snapshot = build_snapshot(
            self.settings.instance_id,
            utcnow(),
            at - self.previous_at,
            self.previous,
            current,
            self.processes.sample(),
        )
        # The interval is over whether or not it is saved: never counted twice.
        self.previous, self.previous_at = current, at
        try:
            with deadline(RUN_DEADLINE_S):
                if self.settings.whatsapp_enabled:
                    snapshot["whatsapp"] = self.whatsapp_queue(snapshot["timestamp"])
                self.snapshots.save(snapshot)
                self.alerter.evaluate(snapshot, snapshot["timestamp"])
                if at - self.pruned_at >= PRUNE_EVERY_S or not self.pruned_at:
                    self.prune(snapshot["timestamp"])
                    self.pruned_at = at
        except DatabaseError as exc:
            log.warning("metrics snapshot not saved: %s", type(exc).__name__)
        return snapshot

    def whatsapp_queue(self, now: datetime) -> dict[str, Any]:
        """The WhatsApp queue's unfinished work (deployment-wide: the inbox and the outbox
        hold only that, so these reads stay small)."""
        inbox, outbox = WhatsAppInbox(self.db), WhatsAppOutbox(self.db)
        found = [t for t in (inbox.oldest(), outbox.oldest()) if t is not None]
        age = max(((now - t).total_seconds() for t in found), default=0.0)
        return {"inbox": inbox.depth(), "outbox": outbox.depth(), "oldestWorkS": round(age, 1)}

    def prune(self, now: datetime) -> None:
        s = self.settings
        self.snapshots.delete_before(now - timedelta(hours=s.metrics_retention_hours))
        self.alerts.delete_resolved_before(now - timedelta(days=s.alert_retention_days))

    def run_forever(self) -> None:
        interval = self.settings.metrics_interval_s
        due = time.monotonic() + interval
        while self.master_alive():
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 1.0))
                continue
            try:
                self.run_once()
            except Exception:  # one bad run must not end the collector
                log.exception("metrics collection failed")
            # Keep the beat; after a long stall, start again from now.
            due += interval
            if due < time.monotonic():
                due = time.monotonic() + interval


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the master dies, however it dies (else we poll every second)."""
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatbot.collector", description=__doc__)
    parser.add_argument("--master-pid", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.instance_id)
    path = os.environ.get(ENV_DIR)
    if not path:
        log.error("%s is not set; the collector has nothing to read", ENV_DIR)
        return 2
    mongo = Mongo()
    mongo.init_app(settings)
    notify = None
    if settings.alert_webhook_url:
        notify = Webhook(
            settings.alert_webhook_url,
            settings.alert_webhook_timeout_s,
            settings.alert_webhook_retries,
        )
    collector = Collector(settings, mongo.db, path, args.master_pid, notify)
    log.info(
        "metrics collector running every %d s",
        settings.metrics_interval_s,
        extra={"event": "collector_started", "master_pid": args.master_pid},
    )
    try:
        collector.run_forever()
    finally:
        mongo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
