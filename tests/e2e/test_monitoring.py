"""Monitoring on a real gunicorn instance: one collector, snapshots, alerts, the dashboard.

The instance runs 3 workers with a 1 s metrics interval and thresholds set so that the
memory alert is always on and the response-time alert follows the traffic; a local
HTTP receiver stands in for the alert webhook (it refuses the first delivery).
"""

from __future__ import annotations

import http.server as httpserver
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pymongo
import pytest

from tests.harness import ROOT, Gunicorn, http, init_db
from tests.support import HttpChat

pytestmark = pytest.mark.e2e

INTERVAL_S = 1.0
WORKERS = 3


class Receiver(httpserver.ThreadingHTTPServer):
    """Records the JSON posted to it; answers 500 to the very first post (a retry follows)."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.attempts = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(httpserver.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        assert isinstance(server, Receiver)
        server.attempts += 1
        if server.attempts == 1:
            self.send_response(500)
        else:
            server.events.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class Instance:
    """One gunicorn instance, and every HTTP request the tests send to it (counted)."""

    def __init__(self, app: Gunicorn, env: dict[str, str], mongo_uri: str) -> None:
        self.app = app
        self.env = env
        self.url = f"http://127.0.0.1:{app.port}"
        self.sent: dict[int, int] = {}
        self.lock = threading.Lock()
        self.db = pymongo.MongoClient(mongo_uri, tz_aware=True)[env["MONGO_DB"]]

    def get(self, path: str, **kwargs):
        reply = http("GET", self.url + path, **kwargs)
        with self.lock:
            self.sent[reply.status] = self.sent.get(reply.status, 0) + 1
        return reply

    def total(self) -> int:
        return sum(self.sent.values())

    def master(self) -> psutil.Process:
        assert self.app.proc is not None
        return psutil.Process(self.app.proc.pid)

    def children(self, collector: bool) -> list[psutil.Process]:
        """The master's workers, or its collector(s); a process exiting now is left out."""
        found = []
        for p in self.master().children():
            try:
                if ("chatbot.collector" in " ".join(p.cmdline())) == collector:
                    found.append(p)
            except psutil.Error:
                continue
        return found

    def workers(self) -> list[psutil.Process]:
        return self.children(collector=False)

    def snapshots(self) -> list[dict]:
        return list(self.db.metrics.find({"instance": "mon1"}).sort("timestamp", 1))


def wait_for(condition, timeout: float = 10.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def instance(tmp_path_factory, mongo_uri, redis_url, receiver):
    tag = uuid.uuid4().hex[:10]
    env = {
        "CHATBOT_ENV": "testing",
        "MONGO_URI": mongo_uri,
        "MONGO_DB": f"mon_{tag}",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"mon:{tag}:",
        "WEB_CONCURRENCY": str(WORKERS),
        "GUNICORN_THREADS": "4",
        "RATE_LIMIT_DEFAULT": "100000 per minute",
        "METRICS_INTERVAL_S": str(int(INTERVAL_S)),
        "ALERT_MEMORY_MB": "1",  # every worker uses more: always open
        "ALERT_RESPONSE_TIME_MS": "0",  # open while requests come, resolved when none do
        "ALERT_WEBHOOK_URL": receiver.url,
        "ALERT_WEBHOOK_RETRIES": "2",
        "ALERT_WEBHOOK_TIMEOUT_S": "2",
        "LOG_LEVEL": "INFO",
    }
    init_db(env)
    app = Gunicorn(tmp_path_factory.mktemp("monitoring"), "mon1", env)
    app.start()
    inst = Instance(app, env, mongo_uri)
    try:
        wait_for(lambda: len(inst.workers()) == WORKERS)
        yield inst
    finally:
        app.stop()
        inst.db.client.drop_database(env["MONGO_DB"])
        inst.db.client.close()


def test_one_collector_per_instance_saves_a_snapshot_every_interval(instance):
    collectors = instance.children(collector=True)
    assert len(collectors) == 1, "exactly one collector, however many workers"
    assert len(instance.workers()) == WORKERS
    wait_for(lambda: len(instance.snapshots()) >= 2)
    start = len(instance.snapshots())
    time.sleep(3.2)
    stamps = [s["timestamp"] for s in instance.snapshots()[start - 1 :]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    # One per interval, not one per worker (three workers would give ~3 per second).
    assert 2 <= len(gaps) <= 4, gaps
    assert all(0.7 <= g <= 1.5 for g in gaps), gaps
    last = instance.snapshots()[-1]
    assert len(last["memory"]["workers"]) == WORKERS
    assert last["uptime"] > 0 and last["cpu"]["cores"] >= 1


def test_metrics_agree_with_the_requests_sent(instance):
    def one(i: int):
        if i % 10 == 0:
            return instance.get("/nope")  # 404
        if i % 25 == 1:
            return instance.get("/api/v1/children")  # 401
        return instance.get("/livez")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(400)))
    sent = dict(instance.sent)
    assert sent[404] == 40 and sent[401] == 16

    # The instance's own /metrics (a scrape on its loopback port: no token), once every
    # worker has written its figures (each does every second).
    time.sleep(1.5)
    text = instance.get("/metrics").body.decode()
    total = 0.0
    errors: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("chatbot_http_requests_total{"):
            count = float(line.rsplit(" ", 1)[1])
            total += count
            status = line.split('status="')[1].split('"')[0]
            errors[status] = errors.get(status, 0) + count
    # Every request sent so far, the scrape itself not yet (counted when it ends).
    assert total == instance.total() - 1
    assert errors["404"] == sent[404] and errors["401"] == sent[401]

    # The snapshots add up to the same, interval by interval (after a quiet interval).
    expected = instance.total()
    time.sleep(2.5 * INTERVAL_S)
    snapshots = instance.snapshots()
    assert sum(s["requestCount"] for s in snapshots) == expected
    assert sum(s["clientErrorCount"] for s in snapshots) == sent[404] + sent[401]
    assert snapshots[-1]["totals"]["requests"] == expected
    busy = [s for s in snapshots if s["requestCount"]]
    assert all(s["responseTime"]["p95"] is not None for s in busy)
    assert all(s["responseTime"]["p95"] >= s["responseTime"]["p50"] for s in busy)


def test_alerts_open_and_resolve_once_each_and_reach_the_webhook(instance, receiver):
    def alerts(kind: str, state: str | None = None) -> list[dict]:
        query = {"kind": kind, "instance": "mon1"} | ({"state": state} if state else {})
        return list(instance.db.alerts.find(query))

    # Memory: over its 1 MiB threshold since start, one open alert however many intervals.
    wait_for(lambda: alerts("high_memory_usage", "open"))
    time.sleep(2 * INTERVAL_S)
    assert len(alerts("high_memory_usage")) == 1
    assert alerts("high_memory_usage")[0]["lastSeenAt"] > alerts("high_memory_usage")[0]["openedAt"]

    # Response time (threshold 0 ms): open while requests come, resolved once none do.
    time.sleep(2.5 * INTERVAL_S)  # no requests: resolved (or never opened)
    before = len(alerts("high_response_time"))
    assert not alerts("high_response_time", "open")
    sent_at = time.monotonic()
    for _ in range(5):
        instance.get("/livez")
    wait_for(lambda: alerts("high_response_time", "open"), timeout=3 * INTERVAL_S)
    opened_after = time.monotonic() - sent_at
    assert opened_after <= 2 * INTERVAL_S + 0.5  # within one interval (+ the one in progress)
    resolved = wait_for(
        lambda: alerts("high_response_time", "resolved")[before:],
        timeout=3 * INTERVAL_S,
    )
    assert resolved and len(alerts("high_response_time")) == before + 1

    # The webhook got both events (the first delivery of all was refused, then retried).
    def delivered():
        kinds = [(e["event"], e["alert"]["kind"]) for e in receiver.events]
        return ("alert.opened", "high_response_time") in kinds and (
            "alert.resolved",
            "high_response_time",
        ) in kinds

    wait_for(delivered, timeout=5)
    assert receiver.attempts == len(receiver.events) + 1
    assert ("alert.opened", "high_memory_usage") in [
        (e["event"], e["alert"]["kind"]) for e in receiver.events
    ]
    # And a structured log line per event.
    lines = [
        json.loads(x) for x in instance.app.log_path.read_text().splitlines() if '"alert_' in x
    ]
    events = {(line.get("event"), line.get("alert_kind")) for line in lines}
    assert ("alert_opened", "high_response_time") in events
    assert ("alert_resolved", "high_response_time") in events


def test_a_dead_workers_live_gauges_are_dropped(instance):
    # The master sets the directory after its start; the collector it started shows it.
    (collector,) = instance.children(collector=True)
    path = Path(collector.environ()["PROMETHEUS_MULTIPROC_DIR"])
    victim = instance.workers()[0]
    assert list(path.glob(f"gauge_live*_{victim.pid}.db"))
    os.kill(victim.pid, signal.SIGKILL)
    wait_for(
        lambda: (
            victim.pid not in {p.pid for p in instance.workers()}
            and len(instance.workers()) == WORKERS
        )
    )
    wait_for(lambda: not list(path.glob(f"gauge_live*_{victim.pid}.db")))
    # Its counters and histograms stay: totals never go back.
    assert list(path.glob(f"histogram_{victim.pid}.db"))

    def live_workers() -> float:
        for line in instance.get("/metrics").body.decode().splitlines():
            if line.startswith("chatbot_instance_workers "):
                return float(line.split()[1])
        return 0.0

    assert wait_for(lambda: live_workers() == WORKERS)


def grant_admin(instance: Instance, phone: str) -> str:
    chat = HttpChat(instance.url, phone)
    env = {**os.environ, **instance.env}
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "chatbot", "grant-role", phone, "admin"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return chat.token


def test_the_dashboard_in_chromium(instance, tmp_path, browser):
    vendor = ROOT / "chatbot" / "web" / "dashboard" / "vendor" / "uPlot.iife.min.js"
    assert vendor.exists(), "make setup installs the charting library"
    token = grant_admin(instance, "081700000001")
    from playwright.sync_api import expect

    # Offline: anything but the instance itself (a CDN) would fail the page.
    context = browser.new_context()
    try:
        context.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(instance.url) else route.abort()
            ),
        )
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(instance.url + "/admin/")
        assert page.is_visible("#signin")  # no token, no figures
        # A parent's token: the admin API refuses it, the page says so.
        parent = HttpChat(instance.url, "081700000002").token
        page.evaluate(f"sessionStorage.setItem('chatbot.adminToken', {json.dumps(parent)})")
        page.reload()
        page.wait_for_selector("#signin-error:text('not an admin')")
        assert not page.is_visible("#board")
        page.evaluate(f"sessionStorage.setItem('chatbot.adminToken', {json.dumps(token)})")
        page.reload()
        page.wait_for_selector("body[data-loaded='1']")
        page.wait_for_selector("#chart-throughput canvas")
        assert page.locator(".charts canvas").count() >= 7  # the WhatsApp queue's too
        assert "high_memory_usage" in page.inner_text("#open-alerts")
        assert "mon1" in page.inner_text("#instances")
        # It refreshes itself: the status line changes with the next interval.
        first = page.inner_text("#status")
        # expect, not wait_for_function: the page's CSP refuses the eval that one needs.
        expect(page.locator("#status")).not_to_have_text(first, timeout=12_000)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        context.close()
