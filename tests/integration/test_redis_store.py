"""The shared Redis pool, its circuit breaker, the cache and the rate limiter on real Redis."""

import time
from dataclasses import replace

import pytest
import redis
from flask import Blueprint

from chatbot import create_app
from chatbot.extensions import cache, redis_store
from tests.harness import Redis

pytestmark = pytest.mark.integration


def test_cache_round_trips_through_redis_with_prefix(app, settings, redis_url):
    with app.app_context():
        cache.set("greeting", {"text": "halo"})
        assert cache.get("greeting") == {"text": "halo"}
    raw = redis.Redis.from_url(redis_url)
    assert raw.exists(f"{settings.redis_key_prefix}cache:greeting")


def test_rate_limit_answers_429_envelope_with_headers(settings, redis_url):
    app = create_app(replace(settings, rate_limit_default="3 per minute"))
    bp = Blueprint("limited", __name__)
    bp.get("/limited")(lambda: {"ok": True})
    app.register_blueprint(bp)
    client = app.test_client()

    statuses = [client.get("/limited").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = client.get("/limited")
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-RateLimit-Limit"] == "3"
    # The counter lives in Redis under this test's prefix, shared by every worker.
    assert list(redis.Redis.from_url(redis_url).scan_iter(f"{settings.redis_key_prefix}rl*"))


def test_code_guessing_is_rate_limited_per_address(settings):
    app = create_app(replace(settings, verify_rate_limit="3 per minute"))
    client = app.test_client()
    body = {"challengeId": "x" * 20, "code": "123456"}
    statuses = [client.post("/api/v1/chat/verify", json=body).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


def test_code_verification_has_its_own_limit_instead_of_the_chat_limit(settings):
    # Declared on the view (chatbot/api/chat.py): VERIFY_RATE_LIMIT, not CHAT_RATE_LIMIT.
    limits = {"chat_rate_limit": "2 per minute", "verify_rate_limit": "4 per minute"}
    client = create_app(replace(settings, **limits)).test_client()
    body = {"challengeId": "x" * 20, "code": "123456"}
    responses = [client.post("/api/v1/chat/verify", json=body) for _ in range(5)]
    assert [r.status_code for r in responses] == [400, 400, 400, 400, 429]
    assert responses[-1].headers["X-RateLimit-Limit"] == "4"
    # ...and the chat routes keep their own allowance.
    assert client.post("/api/v1/chat/start", json={"phoneNumber": "x"}).status_code == 400


def test_chat_is_rate_limited_per_token_not_per_address(settings):
    from tests.support import ApiChat

    app = create_app(replace(settings, chat_rate_limit="3 per minute"))
    with app.app_context():
        from chatbot.db.indexes import ensure_indexes
        from chatbot.extensions import mongo

        ensure_indexes(mongo.db)
    client = app.test_client()
    first = ApiChat(client, "081700000001")
    second = ApiChat(client, "081700000002")  # same address; its own allowance
    assert [first.send("halo").status_code for _ in range(3)] == [201, 201, 201]
    limited = first.send("halo")
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert second.send("halo").status_code == 201


def test_made_up_tokens_do_not_buy_fresh_allowances(settings):
    app = create_app(replace(settings, chat_rate_limit="2 per minute"))
    with app.app_context():
        from chatbot.db.indexes import ensure_indexes
        from chatbot.extensions import mongo

        ensure_indexes(mongo.db)
    client = app.test_client()
    statuses = [
        client.post(
            "/api/v1/chat/start",
            json={"phoneNumber": f"08170000010{n}"},
            headers={"Authorization": f"Bearer forged-{n}-{'x' * 40}"},
        ).status_code
        for n in range(3)
    ]
    assert statuses == [201, 201, 429]


def test_breaker_makes_an_outage_cost_no_timeouts(settings, tmp_path):
    server = Redis(tmp_path / "redis")
    server.start()
    try:
        create_app(replace(settings, redis_url=server.url, redis_breaker_reset_s=30))
        redis_store.client.ping()
        server.stop()
        with pytest.raises(redis.ConnectionError):
            redis_store.client.ping()  # the failure that opens the breaker
        started = time.perf_counter()
        for _ in range(100):
            with pytest.raises(redis.ConnectionError, match="circuit open"):
                redis_store.client.get("k")
        # 100 calls while open: none waits on a socket.
        assert time.perf_counter() - started < 0.5
    finally:
        server.stop()


def test_breaker_closes_when_redis_returns(settings, tmp_path):
    server = Redis(tmp_path / "redis")
    server.start()
    try:
        create_app(replace(settings, redis_url=server.url, redis_breaker_reset_s=0.2))
        server.stop()
        with pytest.raises(redis.ConnectionError):
            redis_store.client.ping()
        server.start()
        time.sleep(0.25)
        assert redis_store.client.ping() is True
        assert redis_store.breaker.current_state == "closed"
    finally:
        server.stop()


def test_command_errors_do_not_trip_the_breaker(app):
    redis_store.client.set(redis_store.key("str"), "x")
    with pytest.raises(redis.ResponseError):
        redis_store.client.lpush(redis_store.key("str"), "y")  # WRONGTYPE
    assert redis_store.breaker.current_state == "closed"
