"""Readiness against the real FerretDB and Redis, including real outages."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from chatbot import create_app
from tests.harness import ROOT, FerretDB, Redis, free_port, wait_for_port

pytestmark = pytest.mark.integration


def test_health_ok_reports_each_dependency(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["instance"] == "test"
    assert body["version"]
    for name in ("mongodb", "redis"):
        assert body["checks"][name]["status"] == "up"
        # Measured, and within the ping budget (a loopback ping takes about a millisecond).
        assert (
            0
            < body["checks"][name]["latency_ms"]
            < 1000 * client.application.config["HEALTH_TIMEOUT_S"]
        )
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def own_redis(tmp_path):
    server = Redis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_ferretdb(tmp_path):
    server = FerretDB(tmp_path / "ferretdb")
    server.start()
    yield server
    server.stop()


def test_redis_outage_degrades_then_recovers(settings, own_redis):
    app = create_app(replace(settings, redis_url=own_redis.url, redis_breaker_reset_s=0.2))
    client = app.test_client()
    assert client.get("/health").get_json()["status"] == "ok"

    own_redis.stop()
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["mongodb"]["status"] == "up"

    own_redis.start()
    time.sleep(0.3)  # past the breaker's reset interval
    assert client.get("/health").get_json()["status"] == "ok"


def test_database_outage_answers_503_quickly_then_recovers(settings, own_ferretdb):
    app = create_app(replace(settings, mongo_uri=own_ferretdb.uri))
    client = app.test_client()
    assert client.get("/health").status_code == 200

    own_ferretdb.stop()
    started = time.monotonic()
    response = client.get("/health")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["mongodb"]["status"] == "down"
    # Probes need an answer, not a 30-second server-selection wait.
    assert elapsed < 1.0

    own_ferretdb.start()
    deadline = time.monotonic() + 10
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "health did not recover after the database returned"
        time.sleep(0.1)


def test_health_body_names_no_addresses(settings):
    app = create_app(replace(settings, mongo_uri="mongodb://127.0.0.1:9/"))
    body = app.test_client().get("/health").get_data(as_text=True)
    assert "127.0.0.1" not in body
    assert "refused" not in body  # no driver message either


def test_a_frozen_database_answers_503_within_the_budget(settings, own_ferretdb):
    app = create_app(replace(settings, mongo_uri=own_ferretdb.uri))
    client = app.test_client()
    assert client.get("/health").status_code == 200
    budget = settings.health_timeout_s

    os.kill(own_ferretdb.proc.pid, signal.SIGSTOP)  # a hung database: connected, silent
    try:
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
    finally:
        os.kill(own_ferretdb.proc.pid, signal.SIGCONT)
    print(f"frozen database: /health {response.status_code} after {elapsed:.2f} s")
    assert response.status_code == 503
    assert response.get_json()["checks"]["mongodb"]["status"] == "down"
    # It waited for its budget, not for a socket or server-selection timeout.
    assert budget - 0.1 <= elapsed < budget + 1.0
    assert client.get("/health").status_code == 200  # thawed


@pytest.fixture
def slow_database(own_ferretdb):
    """own_ferretdb behind devtools/delay_proxy.py: every reply arrives 0.6 s late."""
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, str(ROOT / "devtools" / "delay_proxy.py"), "--listen",
         f"127.0.0.1:{port}", "--target", f"127.0.0.1:{own_ferretdb.port}", "--delay-ms", "600"]
    )  # fmt: skip
    try:
        wait_for_port(port, proc=proxy)
        yield f"mongodb://127.0.0.1:{port}/"
    finally:
        proxy.terminate()
        proxy.wait(10)


def test_a_slow_database_is_up_not_down(settings, slow_database):
    """A database that answers, late, keeps /health at 200 (0.3 s budget made it flap)."""
    client = create_app(replace(settings, mongo_uri=slow_database)).test_client()
    # The first ping also pays for discovering the server and opening a connection.
    deadline = time.monotonic() + 15
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "health never answered through the slow proxy"
    for _ in range(3):
        response = client.get("/health")
        mongodb = response.get_json()["checks"]["mongodb"]
        assert response.status_code == 200, mongodb
        assert mongodb["status"] == "up"
        assert mongodb["latency_ms"] >= 600
