"""The Redis cache tier: JSON values with a TTL, and a miss (never an error) when Redis is down.

The design's cache service: `get` answers the value or None, `set`/`delete` answer
True/False. Values are JSON (never pickle: what the app stores must be readable by
any worker version and by an operator with redis-cli); dates and datetimes survive
the round trip as tagged strings. A Redis error is logged at most once per interval
per process and the call degrades; the shared pool's circuit breaker keeps an outage
at one short timeout per interval (chatbot/redis_store.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import date, datetime
from typing import Any

import redis

from chatbot.redis_store import RedisStore

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0
# Written over a key by `invalidate`: read as a miss, and it keeps a reader that loaded
# the old value just before the write from putting it back (see `invalidate`).
TOMBSTONE = "\x00invalidated"


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return {"$dt": o.isoformat()}
    if isinstance(o, date):
        return {"$date": o.isoformat()}
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _hook(d: dict[str, Any]) -> Any:
    if len(d) == 1:
        if "$dt" in d:
            return datetime.fromisoformat(d["$dt"])
        if "$date" in d:
            return date.fromisoformat(d["$date"])
    return d


def dumps(value: Any) -> str:
    """JSON with tagged dates: {"$dt": iso} for datetimes, {"$date": iso} for dates."""
    return json.dumps(value, default=_default, separators=(",", ":"))


def loads(raw: str | bytes) -> Any:
    return json.loads(raw, object_hook=_hook)


class RedisCache:
    """get / set / delete of JSON values under the app's key prefix."""

    def __init__(self, store: RedisStore, default_ttl_s: int = 3600) -> None:
        self.store = store
        self.default_ttl_s = default_ttl_s
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._last_logged = 0.0
        self._lock = threading.Lock()

    def key(self, *parts: str) -> str:
        return self.store.key(*parts)

    def get(self, key: str) -> Any:
        try:
            raw = self.store.client.get(self.key(key))  # type: ignore[union-attr]
        except redis.RedisError as exc:
            self._failed("get", exc)
            return None
        if raw is None or raw == TOMBSTONE.encode():
            self.misses += 1
            return None
        self.hits += 1
        return loads(raw)

    def set(
        self, key: str, value: Any, ttl_s: int | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store `value`; with only_if_absent, never over a newer value or a tombstone."""
        try:
            done = self.store.client.set(  # type: ignore[union-attr]
                self.key(key), dumps(value), ex=ttl_s or self.default_ttl_s, nx=only_if_absent
            )
        except redis.RedisError as exc:
            self._failed("set", exc)
            return False
        return bool(done)

    def invalidate(self, key: str, hold_s: int = 5) -> bool:
        """Drop `key` after a write to its source, so the next read goes to the database.

        A tombstone rather than a delete: a reader that read the database just before
        the write and caches with only_if_absent=True cannot put the old value back.
        `hold_s` must outlast a request's database deadline.
        """
        try:
            self.store.client.set(self.key(key), TOMBSTONE, ex=hold_s)  # type: ignore[union-attr]
        except redis.RedisError as exc:
            self._failed("invalidate", exc)
            return False
        return True

    def update(self, key: str, fields: dict[str, Any], ttl_s: int | None = None) -> bool:
        """Merge `fields` into a cached dict, only if it is cached and not invalidated.

        WATCH makes it atomic against a concurrent `invalidate`: the merge is dropped
        instead of resurrecting a value that another writer just made stale.
        """
        full = self.key(key)
        try:
            with self.store.client.pipeline() as pipe:  # type: ignore[union-attr]
                pipe.watch(full)
                raw = pipe.get(full)
                if raw is None or raw == TOMBSTONE.encode():
                    return False
                value = {**loads(raw), **fields}
                pipe.multi()
                pipe.set(full, dumps(value), ex=ttl_s or self.default_ttl_s)
                pipe.execute()
        except redis.WatchError:
            return False
        except redis.RedisError as exc:
            self._failed("update", exc)
            return False
        return True

    def delete(self, *keys: str) -> bool:
        try:
            self.store.client.delete(*(self.key(k) for k in keys))  # type: ignore[union-attr]
        except redis.RedisError as exc:
            self._failed("delete", exc)
            return False
        return True

    def _failed(self, op: str, exc: redis.RedisError) -> None:
        # An outage would otherwise log one line per request (measured: megabytes a second).
        self.errors += 1
        now = time.monotonic()
        with self._lock:
            if now - self._last_logged < LOG_EVERY_S:
                return
            self._last_logged = now
        log.warning("cache %s failed, answering a miss: %s", op, type(exc).__name__)
