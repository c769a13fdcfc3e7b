"""What a cached read costs: no database command, and few Redis round trips.

Counted at the two clients: PyMongo's command monitoring and every send of the
Redis connections the app uses (one send is one round trip: a pipeline or a script
goes in one). With warm caches a per-user GET reads the user with the response
cache's counters (one MGET), takes its rate-limit hit, and serves the body from the
worker's memory tier.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from chatbot.extensions import mongo
from chatbot.limits import OneTripRedisStorage
from chatbot.redis_store import BreakerConnection
from tests.support import TODDLER, ApiChat, Commands

pytestmark = pytest.mark.integration

# The rate limiter's hit (with its window's count and expiry for the X-RateLimit-*
# headers) and the user read with the response counters.
REDIS_ROUND_TRIPS = 2


@pytest.fixture
def sends(monkeypatch):
    count = [0]
    send = BreakerConnection.send_packed_command

    def counted(self, *args, **kwargs):
        count[0] += 1
        return send(self, *args, **kwargs)

    monkeypatch.setattr(BreakerConnection, "send_packed_command", counted)
    return count


def test_a_cached_read_makes_no_database_call_and_two_redis_round_trips(app, sends):
    commands = Commands()
    mongo.add_listener(commands)
    chat = ApiChat(app.test_client(), "081300000201")
    chat.register_with_child("Budi", TODDLER)
    child_id = chat.get("/api/v1/children").get_json()["children"][0]["id"]
    paths = ["/api/v1/children", f"/api/v1/children/{child_id}", "/api/v1/chat/messages?limit=20"]
    for path in paths:
        assert chat.get(path).status_code == 200  # warms the caches
    costs = {}
    for path in paths:
        commands.take()
        sends[0] = 0
        response = chat.get(path)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Remaining"].isdigit()
        costs[path] = (commands.take()[2], sends[0])
    print("\ncached reads (database commands, Redis round trips):", costs)
    for path, (database, redis_trips) in costs.items():
        assert database == {}, path
        assert redis_trips <= REDIS_ROUND_TRIPS, (path, redis_trips)


def test_the_rate_limit_headers_count_every_hit(app):
    chat = ApiChat(app.test_client(), "081300000202")
    seen = []
    for _ in range(3):
        response = chat.get("/api/v1/children")
        assert response.status_code == 200
        seen.append(response.headers)
    limit = int(seen[0]["X-RateLimit-Limit"])
    remaining = [int(h["X-RateLimit-Remaining"]) for h in seen]
    assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]
    assert remaining[0] < limit  # /chat/start was counted in the same window
    reset_in = int(seen[-1]["X-RateLimit-Reset"]) - time.time()
    assert 0 <= reset_in <= 61


def test_the_one_trip_storage_answers_only_the_same_threads_latest_hit(redis_url, monkeypatch):
    pool = redis.ConnectionPool.from_url(redis_url)
    storage = OneTripRedisStorage("chatbot+redis://", connection_pool=pool, key_prefix="t-rb")
    other = redis.Redis(connection_pool=pool)
    try:
        storage.clear("a")
        storage.clear("b")
        assert storage.incr("a", 60) == 1
        assert storage.incr("a", 60) == 2
        other.incrby(storage.prefixed_key("a"), 5)  # another worker's hits
        assert storage.get("a") == 2  # this request's own count, read with its hit
        assert 59 <= storage.get_expiry("a") - time.time() <= 60
        assert storage.get("b") == 0  # another key: asked of Redis
        seen = []
        thread = threading.Thread(target=lambda: seen.append(storage.get("a")))
        thread.start()
        thread.join()
        assert seen == [7]  # another thread: asked of Redis
        monkeypatch.setattr(OneTripRedisStorage, "FRESH_S", 0.0)
        assert storage.get("a") == 7  # a later request: asked of Redis
    finally:
        storage.clear("a")
        other.close()
        pool.disconnect()
