"""The collector against real metric files and FerretDB: snapshots, alerts, retention."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chatbot.collector import CPU, MEMORY, RESPONSE_TIME, Alerter, Collector, Thresholds
from chatbot.db.indexes import ensure_indexes
from chatbot.db.metrics import AlertRepository, MetricsRepository
from chatbot.extensions import mongo
from tests.harness import ROOT

pytestmark = pytest.mark.integration


def write_metrics(path, requests: int, seconds: float, status: int = 200) -> None:
    """A separate process (a worker) records `requests` answered in `seconds` each."""
    script = textwrap.dedent(
        f"""
        from chatbot import metrics
        m = metrics._get()
        for _ in range({requests}):
            m.add(m.child(m.in_flight, "/livez"))  # as a request starts
            m.request_done("/livez", "GET", {status}, {seconds})
        metrics.record_cache("redis", "hit")
        m.add(m.child(m.in_flight, "/livez"))  # one still in flight
        m.flush()  # what the sampler thread does every second, and at exit
        """
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(path), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True)


@pytest.fixture
def db(app):
    with app.app_context():
        yield mongo.db


def test_run_once_saves_the_intervals_figures_and_applies_the_alerts(settings, db, tmp_path):
    import os

    # Only the response-time alert is under test: the CPU one is out of reach (a share of
    # the machine never exceeds 100 %), else this busy test process could open it.
    s = replace(
        settings,
        instance_id="app9",
        alert_response_time_ms=100.0,
        alert_memory_mb=10**6,
        alert_cpu_percent=101.0,
    )
    collector = Collector(s, db, str(tmp_path), master_pid=os.getpid())
    write_metrics(tmp_path, requests=30, seconds=0.02)
    write_metrics(tmp_path, requests=10, seconds=0.3, status=503)  # another worker
    first = collector.run_once()
    assert first["requestCount"] == 40 and first["serverErrorCount"] == 10
    assert first["responseTime"]["p50"] == pytest.approx(20, rel=0.1)
    assert first["responseTime"]["p95"] == pytest.approx(300, rel=0.1)
    assert first["cache"]["redis"]["hits"] == 2
    assert first["activeConnections"] == 2  # livesum over both "workers"
    assert first["shed"]["unavailable"] == 10
    # Nothing new: the next interval is empty, its response time unknown.
    second = collector.run_once()
    assert second["requestCount"] == 0 and second["responseTime"]["p95"] is None

    saved = MetricsRepository(db).history(
        datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC)
    )
    assert [x["requestCount"] for x in saved] == [40, 0]
    alerts = AlertRepository(db).list()
    # This test process is the "master": its RSS is far above 1 MiB, but it has no
    # workers, so no worker is over the memory threshold. Response time opened, then
    # resolved in the idle interval.
    kinds = {(a["kind"], a["state"]) for a in alerts}
    assert kinds == {(RESPONSE_TIME, "resolved")}


def test_one_open_alert_per_kind_and_instance(db, caplog):
    repo = AlertRepository(db)
    ensure_indexes(db)
    notified = []
    alerter = Alerter(repo, "app1", Thresholds(2**30, 80.0, 1000.0), notified.append)
    other = Alerter(repo, "app2", Thresholds(2**30, 80.0, 1000.0))
    t0 = datetime.now(UTC).replace(microsecond=0)

    def snap(cpu: float) -> dict:
        return {
            "memory": {"workers": [{"pid": 1, "rss": 2**20, "cpu": 1.0}]},
            "cpu": {"percent": cpu, "cores": 2},
            "responseTime": {"p95": None, "average": None},
            "requestCount": 0,
        }

    caplog.set_level(logging.INFO, logger="chatbot.collector")
    assert [e["event"] for e in alerter.evaluate(snap(95.0), t0)] == ["alert.opened"]
    assert alerter.evaluate(snap(97.0), t0 + timedelta(seconds=30)) == []  # still the same one
    other.evaluate(snap(99.0), t0)  # another instance has its own
    open_ = repo.list(state="open")
    assert sorted(a["instance"] for a in open_) == ["app1", "app2"]
    mine = repo.find_open(CPU, "app1")
    assert mine["peak"] == 97.0 and mine["lastSeenAt"] > mine["openedAt"]

    # The unique index refuses a second open one, even from a racing writer.
    again, new = repo.open({"kind": CPU, "instance": "app1", "openedAt": t0})
    assert not new and again["id"] == mine["id"]

    events = alerter.evaluate(snap(10.0), t0 + timedelta(seconds=60))
    assert [e["event"] for e in events] == ["alert.resolved"]
    assert repo.find_open(CPU, "app1") is None
    # Open again later: a new alert; the resolved one stays in the history.
    alerter.evaluate(snap(90.0), t0 + timedelta(seconds=90))
    history = repo.list(instance="app1")
    assert [a["state"] for a in history] == ["open", "resolved"]
    assert [e["event"] for e in notified] == ["alert.opened", "alert.resolved", "alert.opened"]
    assert MEMORY not in {a["kind"] for a in history}

    # One structured line per event, with the alert's fields.
    records = [r for r in caplog.records if getattr(r, "event", "").startswith("alert_")]
    assert [(r.event, r.alert_kind, r.getMessage().split(" on ")[1][:4]) for r in records] == [
        ("alert_opened", CPU, "app1"),
        ("alert_opened", CPU, "app2"),
        ("alert_resolved", CPU, "app1"),
        ("alert_opened", CPU, "app1"),
    ]
    assert all(isinstance(r.alert_id, str) and r.alert_threshold == 80.0 for r in records)


def test_retention_deletes_old_snapshots_and_resolved_alerts(settings, db, tmp_path):
    import os

    now = datetime.now(UTC)
    snapshots, alerts = MetricsRepository(db), AlertRepository(db)
    ensure_indexes(db)
    for age in (timedelta(days=8), timedelta(days=6), timedelta(minutes=1)):
        snapshots.save({"instance": "app1", "timestamp": now - age})
    old, _ = alerts.open({"kind": CPU, "instance": "app1", "openedAt": now - timedelta(days=100)})
    alerts.resolve(old["id"], now - timedelta(days=95), 1.0)
    ancient_open, _ = alerts.open(
        {"kind": MEMORY, "instance": "app1", "openedAt": now - timedelta(days=100)}
    )
    collector = Collector(settings, db, str(tmp_path), master_pid=os.getpid())
    collector.prune(now)  # 7 days of snapshots, 90 days of resolved alerts
    left = snapshots.history(now - timedelta(days=30), now)
    assert len(left) == 2
    assert [a["id"] for a in alerts.list()] == [ancient_open["id"]]  # open ones are kept


def test_a_stalled_whatsapp_queue_opens_its_alert_and_work_done_resolves_it(settings, db, tmp_path):
    import os

    from chatbot.collector import WHATSAPP_QUEUE_AGE
    from chatbot.db.whatsapp import WhatsAppInbox

    s = replace(
        settings, instance_id="app8", whatsapp_enabled=True, whatsapp_queue_age_alert_s=5.0,
        alert_response_time_ms=10**6, alert_memory_mb=10**6, alert_cpu_percent=101.0,
    ).checked()  # fmt: skip
    ensure_indexes(db)
    collector = Collector(s, db, str(tmp_path), master_pid=os.getpid())
    inbox = WhatsAppInbox(db)
    stuck = datetime.now(UTC) - timedelta(seconds=30)  # no worker took it for 30 s
    inbox.record({"wamid": "wamid.stuck", "waId": "628", "timestamp": stuck}, stuck)
    snapshot = collector.run_once()
    assert snapshot["whatsapp"]["inbox"] == 1 and snapshot["whatsapp"]["oldestWorkS"] >= 30
    alert = AlertRepository(db).find_open(WHATSAPP_QUEUE_AGE, "app8")
    assert alert is not None and "queue workers" in alert["message"]
    inbox.done("wamid.stuck")
    collector.run_once()
    assert AlertRepository(db).find_open(WHATSAPP_QUEUE_AGE, "app8") is None
