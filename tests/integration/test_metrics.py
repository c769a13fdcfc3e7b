"""Request, cache and database metrics in one process, /metrics access, the admin API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from chatbot import metrics
from chatbot.api import admin
from chatbot.collector import Reading, build_snapshot
from chatbot.db.indexes import ensure_indexes
from chatbot.db.metrics import AlertRepository, MetricsRepository
from chatbot.extensions import mongo
from tests.support import ApiChat

pytestmark = pytest.mark.integration


def scrape(client, **headers) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name{labels...}` in the exposition text (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        series, _, number = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(number)
    return total


def admin_chat(app, client, phone: str) -> ApiChat:
    chat = ApiChat(client, phone)
    result = app.test_cli_runner().invoke(args=["chatbot", "grant-role", phone, "admin"])
    assert result.exit_code == 0, result.output
    return chat


def test_requests_are_counted_by_route_status_and_time(client):
    before = scrape(client)
    for _ in range(7):
        assert client.get("/livez").status_code == 200
    for _ in range(3):
        assert client.get("/no/such/page").status_code == 404
    client.get("/api/v1/children/abc")  # 401: labelled by its rule, not its path
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("chatbot_http_requests_total", route="/livez", method="GET", status="200") == 7
    assert delta("chatbot_http_requests_total", route="<unmatched>", status="404") == 3
    assert delta("chatbot_http_requests_total", route="/api/v1/children/<child_id>") == 1
    assert "/api/v1/children/abc" not in after
    assert delta("chatbot_http_request_duration_seconds_count", route="/livez") == 7
    # The scrape in between counts too (it is a request): 7 + 3 + 1 + 1.
    assert delta("chatbot_http_response_time_seconds_count") == 12
    assert value(after, "chatbot_http_requests_in_flight", route="/livez") == 0
    # The request serving /metrics is in flight while it renders.
    assert value(after, "chatbot_http_requests_in_flight", route="/metrics") == 1


def test_cache_database_and_redis_calls_are_counted(app, client):
    before = scrape(client)
    metrics.record_cache("redis", "hit")
    metrics.record_cache("memory", "miss")
    metrics.record_cache("nonsense", "hit")  # unknown names are ignored, never raise
    chat = ApiChat(client, "081300009001")
    chat.say("halo")
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("chatbot_cache_requests_total", tier="redis", outcome="hit") >= 1
    assert delta("chatbot_cache_requests_total", tier="memory", outcome="miss") >= 1
    assert "nonsense" not in after
    assert delta("chatbot_mongodb_command_duration_seconds_count", command="insert") >= 2
    assert delta("chatbot_redis_call_duration_seconds_count") >= 2


def test_redis_errors_are_counted(app, client, redis_server):
    if redis_server is None:
        pytest.skip("REDIS_URL points at an outside server the test cannot stop")
    before = scrape(client)
    redis_server.stop()
    try:
        client.get("/health")  # pings Redis: refused
    finally:
        redis_server.start()
    after = scrape(client)
    assert value(after, "chatbot_redis_errors_total", error="ConnectionError") > value(
        before, "chatbot_redis_errors_total", error="ConnectionError"
    )


def test_metrics_are_for_operators_only(app, client):
    # Through nginx (X-Forwarded-For) without a token: refused.
    proxied = {"X-Forwarded-For": "203.0.113.9"}
    assert client.get("/metrics", headers=proxied).status_code == 401
    parent = ApiChat(client, "081300009002")
    assert client.get("/metrics", headers={**proxied, **parent.headers}).status_code == 403
    boss = admin_chat(app, client, "081300009003")
    assert client.get("/metrics", headers={**proxied, **boss.headers}).status_code == 200
    # Directly on the instance's loopback port (the scrape): no token needed.
    assert client.get("/metrics").status_code == 200


def test_metrics_can_be_turned_off(settings):
    from dataclasses import replace

    from chatbot import create_app

    app = create_app(replace(settings, metrics_enabled=False))
    assert app.test_client().get("/metrics").status_code == 404


def snapshot(instance: str, at: datetime, p95: float | None = 12.0) -> dict:
    current = Reading(by_status={"200": 10, "503": 1}, bounds=[0.01, float("inf")])
    current.buckets = [11, 11]
    current.time_sum = 0.05
    processes = {
        "cpuPercent": 12.5,
        "cores": 2,
        "rss": 300 * 2**20,
        "workers": [{"pid": 11, "rss": 100 * 2**20, "cpu": 3.0}],
        "uptime": 60.0,
    }
    snap = build_snapshot(instance, at, 30.0, Reading(), current, processes)
    snap["responseTime"]["p95"] = p95
    return snap


def test_admin_api_current_history_and_alerts(app, client):
    now = datetime.now(UTC).replace(microsecond=0)
    with app.app_context():
        snapshots = MetricsRepository(mongo.db)
        ensure_indexes(mongo.db)
        snapshots.save(snapshot("app1", now - timedelta(hours=2)))
        snapshots.save(snapshot("app1", now - timedelta(seconds=40)))
        snapshots.save(snapshot("app1", now - timedelta(seconds=5)))
        snapshots.save(snapshot("app2", now - timedelta(seconds=3)))
        snapshots.save(snapshot("gone", now - timedelta(minutes=30)))
        alerts = AlertRepository(mongo.db)
        opened, _ = alerts.open(
            {
                "kind": "high_cpu_usage",
                "instance": "app1",
                "openedAt": now,
                "lastSeenAt": now,
                "value": 95.0,
                "threshold": 80.0,
                "message": "hot",
                "details": {},
            }
        )
        old, _ = alerts.open(
            {
                "kind": "high_memory_usage",
                "instance": "app2",
                "openedAt": now - timedelta(hours=1),
                "lastSeenAt": now - timedelta(hours=1),
                "value": 2.0,
                "threshold": 1.0,
                "message": "big",
                "details": {},
            }
        )
        alerts.resolve(old["id"], now - timedelta(minutes=50), 0.5)

    parent = ApiChat(client, "081300009004")
    assert parent.get("/api/v1/admin/metrics/current").status_code == 403
    boss = admin_chat(app, client, "081300009005")

    current = boss.get("/api/v1/admin/metrics/current").get_json()
    admin.CurrentMetrics.model_validate(current)
    assert [i["instance"] for i in current["instances"]] == ["app1", "app2"]
    assert current["total"]["requestCount"] == 22
    assert current["total"]["errorCount"] == 2

    history = boss.get("/api/v1/admin/metrics/history").get_json()
    admin.MetricsHistory.model_validate(history)
    assert len(history["snapshots"]) == 4  # the last hour, oldest first
    stamps = [s["timestamp"] for s in history["snapshots"]]
    assert stamps == sorted(stamps)
    since = quote((now - timedelta(hours=3)).isoformat())
    only = boss.get(f"/api/v1/admin/metrics/history?from={since}&instance=app1").get_json()
    assert len(only["snapshots"]) == 3
    bad = boss.get("/api/v1/admin/metrics/history?from=yesterday")
    assert bad.status_code == 400
    # A number is not read as Unix seconds (from=2026 would have meant 1970).
    for query in ("from=2026", "to=0.5"):
        bad = boss.get(f"/api/v1/admin/metrics/history?{query}")
        assert bad.status_code == 400, query
        assert bad.get_json()["error"]["code"] == "validation_error"

    both = boss.get("/api/v1/admin/alerts").get_json()
    admin.Alerts.model_validate(both)
    assert [(a["kind"], a["state"]) for a in both["alerts"]] == [
        ("high_cpu_usage", "open"),
        ("high_memory_usage", "resolved"),
    ]
    open_only = boss.get("/api/v1/admin/alerts?state=open").get_json()["alerts"]
    assert [a["id"] for a in open_only] == [opened["id"]]
    resolved = boss.get("/api/v1/admin/alerts?state=resolved").get_json()["alerts"]
    assert resolved[0]["resolvedAt"] and resolved[0]["clearedValue"] == 0.5


def test_the_dashboard_page_and_its_files_are_served(client):
    with client.get("/admin/") as page:
        assert page.status_code == 200 and b"chatbot operations" in page.data
        assert page.headers["Cache-Control"] == "no-cache"
    with client.get("/admin/static/dashboard.js") as script:
        assert script.status_code == 200
