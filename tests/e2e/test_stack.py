"""Through nginx to both gunicorn instances, and /health across real outages."""

import time
import uuid

import pytest

from tests.harness import http

pytestmark = pytest.mark.e2e


def test_nginx_round_robins_over_both_instances(stack):
    seen = {http("GET", stack.url + "/livez").headers["X-Instance-Id"] for _ in range(20)}
    assert seen == {"app1", "app2"}


def test_health_through_nginx_from_both_instances(stack):
    answers = [http("GET", stack.url + "/health") for _ in range(20)]
    assert {a.status for a in answers} == {200}
    assert {a.json()["instance"] for a in answers} == {"app1", "app2"}
    assert all(a.json()["status"] == "ok" for a in answers)


def test_request_id_from_nginx_reaches_app_logs(stack):
    reply = http("GET", stack.url + f"/no-such-page-{uuid.uuid4().hex}")
    assert reply.status == 404
    rid = reply.headers["X-Request-Id"]
    assert len(rid) == 32  # nginx's $request_id
    assert reply.json()["error"]["request_id"] == rid


def test_nginx_413_uses_the_error_envelope(stack):
    reply = http("POST", stack.url + "/livez", body={"x": "y" * 100_000})
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "payload_too_large"


def poll_health(stack, want_status: int, want_body_status: str, timeout: float = 15.0):
    """Poll /health through nginx until it answers as wanted; return that reply."""
    deadline = time.monotonic() + timeout
    while True:
        started = time.monotonic()
        reply = http("GET", stack.url + "/health", timeout=5)
        elapsed = time.monotonic() - started
        if reply.status == want_status and reply.json()["status"] == want_body_status:
            return reply, elapsed
        assert time.monotonic() < deadline, f"/health stuck at {reply.status} {reply.body!r}"
        time.sleep(0.1)


def test_health_goes_ok_degraded_unavailable_ok(stack):
    if stack.ferretdb is None:
        pytest.skip("MONGO_URI points at an outside server the harness cannot stop")
    poll_health(stack, 200, "ok")
    try:
        stack.redis.stop()
        reply, _ = poll_health(stack, 200, "degraded")
        assert reply.json()["checks"]["redis"]["status"] == "down"

        stack.ferretdb.stop()
        reply, _ = poll_health(stack, 503, "unavailable")
        # A refused connection is reported in 0.5 s (Mongo.ping), well inside the
        # 1.5 s budget (HEALTH_TIMEOUT_S) that a frozen database would take.
        for _ in range(6):
            started = time.monotonic()
            reply = http("GET", stack.url + "/health", timeout=5)
            assert time.monotonic() - started < 1.4
            assert reply.status == 503
            assert reply.json()["checks"]["mongodb"]["status"] == "down"
    finally:
        stack.ferretdb.start()
        stack.redis.start()
    poll_health(stack, 200, "ok")
