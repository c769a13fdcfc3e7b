"""Request, cache, database and process metrics in the Prometheus format, across gunicorn workers.

Every worker process writes its figures to files in `PROMETHEUS_MULTIPROC_DIR`
(prometheus_client's multiprocess mode, one directory per instance); `/metrics` and the
instance's collector (chatbot/collector.py) add up the files of all its workers.
prometheus_client decides at import time whether to use such files: gunicorn.conf.py
chooses the directory (chatbot/metrics_dir.py) before it imports this module. Without
the directory (tests, `flask run`) the figures are those of the one process.

The request path only adds to dicts under one lock; each worker's sampler thread writes
the sums to the files every second (and at exit), so /metrics and the collector see a
worker's figures at most a second late.

See docs/monitoring.md for the metric names, the scrape configuration and the costs.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any, TypeVar

import psutil
from flask import Blueprint, Flask, Request, Response, current_app, request
from flask.typing import ResponseReturnValue
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics import MetricWrapperBase

from chatbot import cache, limits, metrics_dir
from chatbot.api.auth import auth_required
from chatbot.db import DatabaseError
from chatbot.db.metrics import CommandTimer
from chatbot.extensions import mongo
from chatbot.metrics_dir import ENV_DIR
from chatbot.redis_store import BreakerConnection
from chatbot.services import services
from chatbot.tasks import SEND_BUCKETS

log = logging.getLogger(__name__)

M = TypeVar("M", bound=MetricWrapperBase)

UNMATCHED = "<unmatched>"
CACHE_TIERS = ("memory", "redis", "response")
CACHE_OUTCOMES = ("hit", "miss", "error")
# Refusals the app itself makes under overload or outage (nginx's own 503s never reach
# it: they are in nginx's access log with an empty upstream_status).
SHED_REASONS = {429: "rate_limited", 503: "unavailable"}
# Per-route response time (seconds): coarse, for dashboards and per-route alerts.
ROUTE_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# All requests of the instance, for its percentiles: bounds 10 % apart from 0.5 ms to
# about 60 s, so a percentile interpolated inside a bucket is off by less than 10 %.
PERCENTILE_BUCKETS = tuple(round(0.0005 * 1.1**i, 7) for i in range(124))
# How often each worker writes what it recorded to the metric files, and how often it
# samples its own memory and CPU.
FLUSH_S = 1.0
PROCESS_SAMPLE_S = 5.0


class _Metrics:
    """The process's metric objects, made once (prometheus_client registers them globally)."""

    def __init__(self) -> None:
        self.requests = Counter(
            "chatbot_http_requests_total",
            "Requests answered, by route (the URL rule), method and status code.",
            ["route", "method", "status"],
        )
        self.duration = Histogram(
            "chatbot_http_request_duration_seconds",
            "Time from routing to the response leaving the app, by route and method.",
            ["route", "method"],
            buckets=ROUTE_BUCKETS,
        )
        self.response_time = Histogram(
            "chatbot_http_response_time_seconds",
            "The same time for every request, in fine buckets (the instance's percentiles).",
            buckets=PERCENTILE_BUCKETS,
        )
        self.in_flight = Gauge(
            "chatbot_http_requests_in_flight",
            "Requests being served now, by route (summed over live workers).",
            ["route"],
            multiprocess_mode="livesum",
        )
        self.shed = Counter(
            "chatbot_http_shed_total",
            "Requests the app refused under load or outage: rate_limited (429), unavailable (503).",
            ["reason"],
        )
        self.queue = Histogram(
            "chatbot_http_request_queue_seconds",
            "Time between nginx receiving a request and the app starting it "
            "(only when nginx sends X-Request-Start).",
            buckets=ROUTE_BUCKETS,
        )
        self.cache = Counter(
            "chatbot_cache_requests_total",
            "Cache look-ups by tier (memory, redis, response) and outcome (hit, miss, error).",
            ["tier", "outcome"],
        )
        self.mongo = Histogram(
            "chatbot_mongodb_command_duration_seconds",
            "MongoDB command round trips (PyMongo command monitoring), by command.",
            ["command"],
            buckets=ROUTE_BUCKETS,
        )
        self.mongo_errors = Counter(
            "chatbot_mongodb_command_errors_total",
            "MongoDB commands that failed, by command and error code name.",
            ["command", "error"],
        )
        self.redis = Histogram(
            "chatbot_redis_call_duration_seconds",
            "Redis round trips (a command and its reply; a pipeline counts once).",
            buckets=ROUTE_BUCKETS,
        )
        self.redis_errors = Counter(
            "chatbot_redis_errors_total",
            "Redis calls that failed, by exception class.",
            ["error"],
        )
        # Process gauges: psutil samples, since prometheus_client's own process
        # collector does not work in multiprocess mode. liveall keeps one series per
        # live worker (a `pid` label is added); a dead worker's series go at its exit.
        self.rss = Gauge(
            "chatbot_process_resident_memory_bytes",
            "Resident memory of each worker process.",
            multiprocess_mode="liveall",
        )
        self.cpu = Gauge(
            "chatbot_process_cpu_percent",
            "CPU of each worker over the last sample, in % of one core.",
            multiprocess_mode="liveall",
        )
        self.uptime = Gauge(
            "chatbot_process_uptime_seconds",
            "Seconds since each worker process started.",
            multiprocess_mode="liveall",
        )
        self.instance_rss = Gauge(
            "chatbot_instance_workers_resident_memory_bytes",
            "Resident memory of all live workers together.",
            multiprocess_mode="livesum",
        )
        self.workers = Gauge(
            "chatbot_instance_workers",
            "Live worker processes.",
            multiprocess_mode="livesum",
        )
        self.whatsapp_webhooks = Counter(
            "chatbot_whatsapp_webhooks_total",
            "WhatsApp webhook POSTs by outcome: accepted, empty, duplicate (messages seen "
            "before), bad_signature, malformed.",
            ["outcome"],
        )
        self.started = Gauge(
            "chatbot_instance_start_time_seconds",
            "When the instance (its gunicorn master) started, Unix time.",
            multiprocess_mode="livemax",
        )
        # Label children are looked up once: .labels() costs more than the increment.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}  # -> metric.labels(...)
        self._per_request: dict[
            tuple[str, str, int], tuple[Counter, Gauge, Histogram, Counter | None]
        ] = {}
        self._cache = {
            (tier, outcome): self.cache.labels(tier, outcome)
            for tier in CACHE_TIERS
            for outcome in CACHE_OUTCOMES
        }
        # What was recorded since the last flush, in plain Python: the request path
        # takes one lock and adds to dicts; the sampler thread writes the sums to the
        # metric files every FLUSH_S (a file write costs several times a dict update,
        # and prometheus_client's multiprocess values share one lock per process).
        self._pending = threading.Lock()
        self._counts: dict[Counter | Gauge, float] = {}  # child -> amount
        self._observed: dict[Histogram, list[float]] = {}  # child -> [per bucket..., sum]
        self._flushing = threading.Lock()
        self._sampler_pid = 0
        self._lock = threading.Lock()

    def child(self, metric: M, *labels: str) -> M:
        key = (id(metric), labels)
        found: M | None = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def add(self, child: Counter | Gauge, amount: float = 1.0) -> None:
        """Add `amount` to a counter or gauge child, at the next flush."""
        with self._pending:
            self._counts[child] = self._counts.get(child, 0.0) + amount

    def observe(self, histogram: Histogram, seconds: float) -> None:
        """Observe `seconds` in a histogram (or histogram child), at the next flush."""
        bucket = bisect_left(histogram._upper_bounds, seconds)
        with self._pending:
            self._observe(histogram, bucket, seconds)

    def _observe(self, histogram: Histogram, bucket: int, seconds: float) -> None:
        row = self._observed.get(histogram)
        if row is None:
            row = self._observed[histogram] = [0.0] * (len(histogram._upper_bounds) + 1)
        row[bucket] += 1
        row[-1] += seconds

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Everything one finished request adds, under one lock."""
        key = (route, method, status)
        found = self._per_request.get(key)
        if found is None:
            reason = SHED_REASONS.get(status)
            found = self._per_request[key] = (
                self.child(self.requests, route, method, str(status)),
                self.child(self.in_flight, route),
                self.child(self.duration, route, method),
                self.child(self.shed, reason) if reason else None,
            )
        total, flight, duration, shed = found
        fine = self.response_time
        coarse_bucket = bisect_left(duration._upper_bounds, seconds)
        fine_bucket = bisect_left(fine._upper_bounds, seconds)
        with self._pending:
            counts = self._counts  # read under the lock: flush() swaps it
            counts[total] = counts.get(total, 0.0) + 1
            counts[flight] = counts.get(flight, 0.0) - 1
            if shed is not None:
                counts[shed] = counts.get(shed, 0.0) + 1
            self._observe(duration, coarse_bucket, seconds)
            self._observe(fine, fine_bucket, seconds)

    def flush(self) -> None:
        """Write what was recorded since the last flush to the metric files (or memory).

        Histograms are added to bucket by bucket, as observe() would have: this relies
        on prometheus_client's Histogram internals (_upper_bounds, _buckets, _sum) of the
        pinned version; tests/integration/test_metrics.py checks the result.
        """
        with self._flushing:
            with self._pending:
                counts, self._counts = self._counts, {}
                observed, self._observed = self._observed, {}
            for child, amount in counts.items():
                if amount:
                    child.inc(amount)
            for histogram, row in observed.items():
                for value, n in zip(histogram._buckets, row, strict=False):
                    if n:
                        value.inc(n)
                histogram._sum.inc(row[-1])

    def ensure_sampler(self) -> None:
        """Start this process's flusher and memory/CPU sampler once (gunicorn forks
        workers after import), and flush once more when the process exits."""
        pid = os.getpid()
        if self._sampler_pid == pid:
            return
        with self._lock:
            if self._sampler_pid == pid:
                return
            self._sampler_pid = pid
            atexit.register(self.flush)
            threading.Thread(
                target=self._sample_forever, name="metrics-sampler", daemon=True
            ).start()

    def _sample_forever(self) -> None:
        process = psutil.Process()
        process.cpu_percent(None)  # the first call only starts the measurement
        self.workers.set(1)
        try:
            self.started.set(psutil.Process(os.getppid()).create_time())
        except psutil.Error:
            self.started.set(process.create_time())
        sampled = 0.0
        while True:
            try:
                self.flush()
                now = time.monotonic()
                if now - sampled >= PROCESS_SAMPLE_S:
                    sampled = now
                    rss = process.memory_info().rss
                    self.rss.set(rss)
                    self.instance_rss.set(rss)
                    self.cpu.set(process.cpu_percent(None))
                    self.uptime.set(time.time() - process.create_time())
            except Exception:  # a sampler must never die of one bad sample
                log.debug("metrics flush or sample failed", exc_info=True)
            time.sleep(FLUSH_S)


_metrics: _Metrics | None = None
_made = threading.Lock()


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _made:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def record_cache(tier: str, outcome: str) -> None:
    """Count one cache look-up: tier memory/redis/response, outcome hit/miss/error.

    Cheap, thread-safe, and a no-op until the app enabled metrics (or for unknown names).
    """
    m = _metrics
    if m is None:
        return
    child = m._cache.get((tier, outcome))
    if child is not None:
        m.add(child)


def count_whatsapp_webhook(outcome: str, amount: int = 1) -> None:
    """Count WhatsApp webhooks (or the duplicate messages in one) by outcome."""
    m = _metrics
    if m is not None:
        m.add(m.child(m.whatsapp_webhooks, outcome), amount)


# --- requests -----------------------------------------------------------------

_STATE = "chatbot.metrics"


def _request_started() -> None:
    m = _metrics
    if m is None:
        return
    m.ensure_sampler()
    # One proxy lookup, not five. Flask annotates its `request` proxy as the Request itself,
    # so the proxy's own method is unknown to mypy.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    rule = req.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    environ = req.environ
    environ[_STATE] = (time.perf_counter(), route, environ.get("REQUEST_METHOD", "GET"))
    m.add(m.child(m.in_flight, route))
    started = environ.get("HTTP_X_REQUEST_START")
    if started:
        _observe_queue(m, started)


def _observe_queue(m: _Metrics, header: str) -> None:
    """X-Request-Start: "t=<seconds since the epoch, with milliseconds>" (nginx's $msec)."""
    try:
        waited = time.time() - float(header.removeprefix("t="))
    except ValueError:
        return
    if 0 <= waited < 3600:
        m.observe(m.queue, waited)


def _request_finished(response: Response) -> Response:
    _record(request.environ.pop(_STATE, None), response.status_code)
    return response


def _request_torn_down(_exc: BaseException | None) -> None:
    # Only when after_request never ran (an exception escaped every handler).
    _record(request.environ.pop(_STATE, None), 500)


def _record(state: tuple[float, str, str] | None, status: int) -> None:
    m = _metrics
    if state is None or m is None:
        return
    started, route, method = state
    m.request_done(route, method, status, time.perf_counter() - started)


# --- MongoDB and Redis -----------------------------------------------------------


def _mongo_observed(command: str, seconds: float, error: str | None) -> None:
    m = _metrics
    if m is None:
        return
    m.observe(m.child(m.mongo, command), seconds)
    if error is not None:
        m.add(m.child(m.mongo_errors, command, error))


def _redis_observed(seconds: float, error: BaseException | None) -> None:
    m = _metrics
    if m is None:
        return
    if error is None:
        m.observe(m.redis, seconds)
    else:
        m.add(m.child(m.redis_errors, type(error).__name__))


_hooked = False


def _hook_clients() -> None:
    """Watch the process's MongoDB and Redis clients (once per process)."""
    global _hooked
    if _hooked:
        return
    cache.observer = record_cache
    mongo.add_listener(CommandTimer(_mongo_observed))
    BreakerConnection.observer = staticmethod(_redis_observed)
    _hooked = True


# --- /metrics ------------------------------------------------------------------

bp = Blueprint("metrics", __name__)
limits.exempt(bp)  # scrapes come every few seconds from one address
_LOOPBACK = ("127.0.0.1", "::1")


def _direct_from_loopback() -> bool:
    """A client on this host talking to gunicorn directly, not through nginx.

    nginx always adds X-Forwarded-For; ProxyFix keeps the real peer address aside.
    """
    environ = request.environ
    if "HTTP_X_FORWARDED_FOR" in environ:
        return False
    peer = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR", environ.get("REMOTE_ADDR"))
    return peer in _LOOPBACK


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """The instance's metrics in the Prometheus text format, for operators only.

    Answered to a client on the same host that talks to the instance directly (a
    Prometheus or agent scraping 127.0.0.1:<port>), or to an admin token (then from any
    one instance, the one named by X-Instance-Id).
    """
    if "Authorization" in request.headers or not _direct_from_loopback():
        auth_required("admin")(lambda: None)()
    if _metrics is not None:  # this worker's own latest figures (the others' are <= 1 s old)
        _metrics.flush()
    registry = REGISTRY
    path = os.environ.get(ENV_DIR)
    if path and os.path.isdir(path):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)
    body = generate_latest(registry)
    settings = current_app.config["SETTINGS"]
    if settings.whatsapp_enabled:
        body += whatsapp_metrics()
    response = Response(body, mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


class _WhatsAppCollector:
    """The WhatsApp queue's figures, deployment-wide: the sends every worker counted in
    Redis (chatbot/tasks.py record_send) and the queue's depth in MongoDB and the broker.
    Every instance shows the same values: take one instance's, never their sum."""

    def __init__(self, stats: dict[str, float], depth: dict[str, float], oldest: float) -> None:
        self.stats, self.depth, self.oldest = stats, depth, oldest

    def collect(self) -> Any:
        sends = CounterMetricFamily(
            "chatbot_whatsapp_sends",
            "WhatsApp sends by outcome (sent, failed, throttled, retried, unconfirmed, "
            "outside_window) and Meta's error code, all workers together.",
            labels=["outcome", "code"],
        )
        buckets: dict[str, float] = {}
        for key, value in self.stats.items():
            kind, _, rest = key.partition("|")
            if kind == "sends":
                outcome, _, code = rest.partition("|")
                sends.add_metric([outcome, code], value)
            elif kind == "latency":
                buckets[rest] = value
        yield sends
        cumulative, rows = 0.0, []
        for bound in (*SEND_BUCKETS, "inf"):
            cumulative += buckets.get(str(bound), 0.0)
            rows.append(("+Inf" if bound == "inf" else str(bound), cumulative))
        yield HistogramMetricFamily(
            "chatbot_whatsapp_send_seconds",
            "Graph API call time of WhatsApp sends, all workers together.",
            buckets=rows,
            sum_value=self.stats.get("latency_sum", 0.0),
        )
        depth = GaugeMetricFamily(
            "chatbot_whatsapp_queue_depth",
            "WhatsApp work waiting: messages in the inbox, turns in the outbox (MongoDB), "
            "tasks queued and delayed in the broker (Redis; -1 when unreachable).",
            labels=["queue"],
        )
        for name, value in self.depth.items():
            depth.add_metric([name], value)
        yield depth
        yield GaugeMetricFamily(
            "chatbot_whatsapp_oldest_work_seconds",
            "Age of the oldest unfinished WhatsApp work (inbox message or outbox turn).",
            value=self.oldest,
        )


def whatsapp_metrics() -> bytes:
    """The WhatsApp collector's text, or nothing if the database does not answer."""
    found = services()
    tasks, channel = found.tasks, found.whatsapp
    try:
        depth = {"inbox": float(channel.inbox.depth()), "outbox": float(channel.outbox.depth())}
        oldest = channel.oldest_work_age()
    except DatabaseError:
        return b""
    depth |= {name: float(n) for name, n in tasks.stats().items()}
    registry = CollectorRegistry()
    registry.register(_WhatsAppCollector(tasks.send_stats(), depth, oldest))
    return bytes(generate_latest(registry))


def init_app(app: Flask, enabled: bool = True) -> None:
    """Count every request of `app`; serve /metrics. Disabled: /metrics answers 404."""
    if not enabled:
        return
    m = _get()
    _hook_clients()
    if os.environ.get(ENV_DIR):  # a gunicorn worker: report memory and CPU even when idle
        m.ensure_sampler()
    # First before_request: a request refused by an earlier hook (the rate limiter's
    # 429) is still counted. Inserted at 0 of after_request: it runs last, after
    # compression. teardown catches a request whose after_request never ran.
    app.before_request_funcs.setdefault(None, []).insert(0, _request_started)
    app.after_request_funcs.setdefault(None, []).insert(0, _request_finished)
    app.teardown_request(_request_torn_down)
    app.register_blueprint(bp)


# --- gunicorn hooks (see gunicorn.conf.py) ---------------------------------------


def on_starting(server: Any) -> None:
    """Master, before any worker: empty the instance's metrics directory.

    gunicorn.conf.py chose it (metrics_dir.choose) before prometheus_client was imported.
    """
    path = os.environ.get(ENV_DIR)
    if not metrics_dir.enabled() or not path:
        return
    if metrics_dir.late:
        server.log.warning(
            "prometheus_client was imported before the metrics directory was chosen: "
            "metrics stay per process"
        )
    # The figures of a previous run (or a crashed one) would be added to this one's.
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Master, after a worker exited: drop its live gauges (in flight, memory, CPU).

    Its counters and histograms stay: totals never go backwards.
    """
    path = os.environ.get(ENV_DIR)
    if path and os.path.isdir(path):
        multiprocess.mark_process_dead(worker.pid, path)


_collector: subprocess.Popen[bytes] | None = None


def start_collector(server: Any) -> None:
    """Master, once ready: start the instance's one snapshot collector (chatbot/collector.py).

    A process of its own, not a thread in the master: the master forks workers, and a
    thread holding a lock (PyMongo's, logging's) at a fork can deadlock the child.
    It exits by itself when the master is gone. It is not restarted if killed: it
    catches its own errors, so only a signal ends it (restart the instance then).
    """
    global _collector
    if not metrics_dir.enabled() or not os.environ.get(ENV_DIR):
        return
    if _collector is not None and _collector.poll() is None:
        return
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "chatbot.collector", "--master-pid", str(os.getpid())]
    # Background work at a lower priority: at start-up its imports must not slow the
    # workers' boot, and under load the requests come first.
    nice = shutil.which("nice")
    if nice:
        command = [nice, "-n", "10", *command]
    _collector = subprocess.Popen(command, env=env, cwd=root)
    server.log.info("metrics collector started (pid %s)", _collector.pid)


def on_exit(server: Any) -> None:
    """Master, at shutdown: stop the collector, remove the default directory.

    An operator's own PROMETHEUS_MULTIPROC_DIR is left in place (emptied at next start).
    """
    if _collector is not None and _collector.poll() is None:
        _collector.terminate()
        # Half a second, not more: its snapshots are written whole or not at all, and the
        # instance's stop (supervisord stops the stack one program at a time) waits on it.
        try:
            _collector.wait(0.5)
        except subprocess.TimeoutExpired:
            _collector.kill()
    if metrics_dir.own_dir:
        shutil.rmtree(metrics_dir.own_dir, ignore_errors=True)
