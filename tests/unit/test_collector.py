"""The collector's arithmetic: percentiles from buckets, the snapshot, the alert conditions,
and the webhook's retries and timeout against a local receiver."""

from __future__ import annotations

import bisect
import http.server as httpserver
import json
import random
import threading
import time
from datetime import UTC, datetime

import pytest

from chatbot.collector import (
    CPU,
    MEMORY,
    RESPONSE_TIME,
    WHATSAPP_QUEUE_AGE,
    Reading,
    Thresholds,
    Webhook,
    build_snapshot,
    conditions,
    quantile,
)
from chatbot.metrics import PERCENTILE_BUCKETS

BOUNDS = [*PERCENTILE_BUCKETS, float("inf")]


def histogram(values: list[float]) -> list[float]:
    """Cumulative counts per bound, as prometheus_client exposes them."""
    counts = [0.0] * len(BOUNDS)
    for v in values:
        counts[bisect.bisect_left(BOUNDS, v)] += 1
    total, cumulative = 0.0, []
    for c in counts:
        total += c
        cumulative.append(total)
    return cumulative


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_from_the_buckets_are_within_10_percent(seed):
    rng = random.Random(seed)
    # Response times spread over three orders of magnitude (log-normal, 2 ms .. 2 s).
    values = [rng.lognormvariate(-3.5, 1.2) for _ in range(5000)]
    values.sort()
    cumulative = histogram(values)
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * len(values)) - 1]
        assert quantile(BOUNDS, cumulative, q) == pytest.approx(exact, rel=0.10)


def test_quantile_edges():
    assert quantile(BOUNDS, [0.0] * len(BOUNDS), 0.95) is None
    assert quantile([0.1, float("inf")], [0, 4], 0.5) == 0.1  # all beyond the last bound
    assert quantile([0.1, 0.2, float("inf")], [0, 10, 10], 0.5) == pytest.approx(0.15)


PROCESSES = {
    "cpuPercent": 40.0,
    "cores": 2,
    "rss": 900 * 2**20,
    "workers": [
        {"pid": 7, "rss": 300 * 2**20, "cpu": 50.0},
        {"pid": 8, "rss": 500 * 2**20, "cpu": 30.0},
    ],
    "uptime": 120.0,
}


def reading(statuses: dict[str, float], times: list[float], **more) -> Reading:
    r = Reading(by_status=statuses, bounds=list(BOUNDS), buckets=histogram(times))
    r.time_sum = sum(times)
    for k, v in more.items():
        setattr(r, k, v)
    return r


def test_a_snapshot_is_the_difference_of_two_readings():
    before = reading({"200": 100, "404": 5}, [0.01] * 105)
    before.cache = {("redis", "hit"): 10, ("redis", "miss"): 10}
    now_times = [0.01] * 105 + [0.02] * 90 + [1.5] * 10
    after = reading(
        {"200": 190, "404": 7, "503": 3, "429": 5},
        now_times,
        in_flight=4,
        mongo_calls=20,
        mongo_seconds=0.2,
        redis_errors=2,
    )
    after.cache = {("redis", "hit"): 40, ("redis", "miss"): 20, ("memory", "hit"): 5}
    after.shed = {"unavailable": 3, "rate_limited": 5}
    at = datetime(2026, 1, 1, tzinfo=UTC)
    snap = build_snapshot("app1", at, 10.0, before, after, PROCESSES)
    assert snap["requestCount"] == 100
    assert (snap["errorCount"], snap["clientErrorCount"], snap["serverErrorCount"]) == (10, 7, 3)
    assert snap["errorsByStatus"] == {"404": 2, "429": 5, "503": 3}
    assert snap["throughput"] == 10.0
    assert snap["activeConnections"] == 4
    rt = snap["responseTime"]
    assert rt["average"] == pytest.approx((90 * 20 + 10 * 1500) / 100, rel=0.01)
    assert rt["p50"] == pytest.approx(20, rel=0.1)
    assert rt["p95"] == pytest.approx(1500, rel=0.1)
    assert snap["cache"]["redis"] == {"hits": 30, "misses": 10, "errors": 0, "hitRate": 0.75}
    assert snap["cache"]["memory"]["hitRate"] == 1.0
    assert snap["cache"]["response"]["hitRate"] is None
    assert snap["mongodb"] == {"calls": 20, "errors": 0, "averageMs": 10.0}
    assert snap["redis"]["errors"] == 2 and snap["redis"]["averageMs"] is None
    assert snap["shed"] == {"rate_limited": 5, "unavailable": 3}
    assert snap["memory"]["maxWorkerRss"] == 500 * 2**20
    assert snap["totals"] == {"requests": 205, "errors": 15}
    for key in ("timestamp", "instance", "memory", "cpu", "uptime", "activeConnections",
                "requestCount", "errorCount", "responseTime"):  # fmt: skip
        assert key in snap  # the design's snapshot


def test_an_idle_interval_has_no_response_time():
    r = reading({"200": 3}, [0.01] * 3)
    snap = build_snapshot("app1", datetime.now(UTC), 30.0, r, r, PROCESSES)
    assert snap["requestCount"] == 0
    assert snap["responseTime"] == {"average": None, "p50": None, "p95": None, "p99": None}


def snap_with(rss_mb=100, cpu=10.0, p95=None, average=None):
    return {
        "memory": {"workers": [{"pid": 9, "rss": rss_mb * 2**20, "cpu": 1.0}]},
        "cpu": {"percent": cpu, "cores": 2},
        "responseTime": {"p95": p95, "average": average},
        "requestCount": 1 if p95 is not None else 0,
    }


DESIGN = Thresholds(memory_bytes=2**30, cpu_percent=80.0, response_time_ms=1000.0)


def test_the_designs_three_conditions():
    calm = conditions(snap_with(rss_mb=1000, cpu=79.9, p95=999, average=500), DESIGN)
    assert not any(c.firing for c in calm.values())
    hot = conditions(snap_with(rss_mb=1025, cpu=80.5, p95=1001, average=200), DESIGN)
    assert all(hot[k].firing for k in (MEMORY, CPU, RESPONSE_TIME))
    assert hot[MEMORY].details["pid"] == 9
    # The average alone is enough, and an idle interval never fires.
    assert conditions(snap_with(p95=900, average=1200), DESIGN)[RESPONSE_TIME].firing
    assert not conditions(snap_with(), DESIGN)[RESPONSE_TIME].firing


def test_the_whatsapp_queue_alert_fires_past_its_age_and_only_with_the_channel():
    assert WHATSAPP_QUEUE_AGE not in conditions(snap_with(), DESIGN)  # channel off: no such data
    waiting = {**snap_with(), "whatsapp": {"inbox": 3, "outbox": 1, "oldestWorkS": 60.5}}
    fired = conditions(waiting, DESIGN)[WHATSAPP_QUEUE_AGE]
    assert fired.firing and fired.value == 60.5 and fired.details == {"inbox": 3, "outbox": 1}
    waiting["whatsapp"]["oldestWorkS"] = 59.0
    assert not conditions(waiting, DESIGN)[WHATSAPP_QUEUE_AGE].firing


class Receiver(httpserver.ThreadingHTTPServer):
    def __init__(self, answers: list[int], delay_s: float = 0.0) -> None:
        self.answers = answers
        self.delay_s = delay_s
        self.bodies: list[dict] = []
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class Handler(httpserver.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server = self.server
        assert isinstance(server, Receiver)
        server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        time.sleep(server.delay_s)
        status = server.answers.pop(0) if server.answers else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver_factory():
    made = []

    def make(answers, delay_s=0.0):
        made.append(Receiver(answers, delay_s))
        return made[-1]

    yield make
    for r in made:
        r.shutdown()
        r.server_close()


EVENT = {
    "event": "alert.opened",
    "alert": {"kind": CPU, "openedAt": datetime(2026, 1, 1, tzinfo=UTC)},
}


def test_the_webhook_retries_until_a_2xx(receiver_factory):
    receiver = receiver_factory([500, 503, 204])
    hook = Webhook(receiver.url, timeout_s=2, retries=3, backoff_s=0.01)
    assert hook.deliver(EVENT) is True
    assert len(receiver.bodies) == 3
    assert receiver.bodies[0]["alert"]["openedAt"] == "2026-01-01T00:00:00+00:00"


def test_the_webhook_gives_up_after_its_retries(receiver_factory, caplog):
    receiver = receiver_factory([500] * 10)
    hook = Webhook(receiver.url, timeout_s=2, retries=2, backoff_s=0.01)
    assert hook.deliver(EVENT) is False
    assert len(receiver.bodies) == 3
    assert "alert webhook failed after 3 tries: HTTP 500" in caplog.text


def test_a_slow_receiver_times_out(receiver_factory):
    receiver = receiver_factory([], delay_s=0.5)
    hook = Webhook(receiver.url, timeout_s=0.1, retries=1, backoff_s=0.01)
    started = time.monotonic()
    assert hook.deliver(EVENT) is False
    assert time.monotonic() - started < 0.5 + 0.3  # two tries of 0.1 s, not two of 0.5 s
    assert len(receiver.bodies) == 2


def test_events_are_posted_from_a_thread_of_their_own(receiver_factory):
    receiver = receiver_factory([])
    hook = Webhook(receiver.url, timeout_s=2, retries=0)
    hook(EVENT)  # returns at once
    hook.queue.join()
    assert len(receiver.bodies) == 1
