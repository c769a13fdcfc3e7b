"""The memory tier: bounded, expiring, thread-safe."""

from __future__ import annotations

import threading
import time

from chatbot.cache import MemoryCache, dumps, loads


def test_an_expired_entry_is_never_served():
    cache = MemoryCache(maxsize=10, ttl_s=0.05)
    cache.set("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    time.sleep(0.08)
    assert cache.get("k") is None
    assert cache.stats == {"hit": 1, "miss": 1}


def test_the_least_recently_used_entry_goes_first_when_full():
    cache = MemoryCache(maxsize=2, ttl_s=60)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # b is now the least recently used
    cache.set("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    assert len(cache) == 2


def test_many_threads_share_one_tier_safely():
    cache = MemoryCache(maxsize=100, ttl_s=60)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(2000):
                cache.set(f"{n}:{i % 150}", i)
                cache.get(f"{(n + 1) % 8}:{i % 150}")
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) <= 100


def test_values_round_trip_as_json_with_dates():
    from datetime import UTC, date, datetime

    value = {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "born": date(2025, 1, 1), "n": [1]}
    raw = dumps(value)
    assert '"$dt"' in raw and '"$date"' in raw
    assert loads(raw) == value
