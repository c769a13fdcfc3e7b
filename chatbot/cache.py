"""The cache service: a memory tier per worker process and a Redis tier shared by all.

The design's two caches (../shared/docs/performance-design.md):
- **memory** (`MemoryCache`): per worker process, bounded (LRU) and TTL-based (600 s by
  default), thread-safe under gthread; an expired entry is never served (cachetools
  checks the time on every read). It only holds values under keys that name their
  version (e.g. a response under the user's current response version), so a write
  elsewhere never leaves it stale: the next read asks for a new key.
- **Redis** (`RedisCache`): `get` answers the value or None, `set`/`delete` answer
  True/False; values are JSON (never pickle: readable by any worker version and by an
  operator with redis-cli), dates surviving as tagged strings. A Redis error is logged
  at most once per interval per process and the call degrades; the shared pool's
  circuit breaker keeps an outage at one short timeout per interval
  (chatbot/redis_store.py).

Hits, misses and errors are counted per tier (`stats`) and reported to the metrics.
An invalidation that fails because Redis is unreachable is remembered and replayed as
soon as Redis answers again, so a write made during an outage is visible after it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import cachetools
import redis

from chatbot.redis_store import RedisStore

log = logging.getLogger(__name__)

T = TypeVar("T")

LOG_EVERY_S = 30.0
# Written over a key by `invalidate`: read as a miss, and it keeps a reader that loaded
# the old value just before the write from putting it back (see `invalidate`).
TOMBSTONE = "\x00invalidated"
_TOMBSTONE = TOMBSTONE.encode()
# Invalidations waiting for Redis to come back, per process; beyond this many the
# oldest are dropped and every response is invalidated instead (see `_replay`).
MAX_PENDING = 10_000


def _not_observed(tier: str, outcome: str) -> None:
    return None


# Told (tier, outcome) of every look-up: chatbot/metrics.py sets it when the app counts
# them (as it sets BreakerConnection.observer), so this layer never imports the web's.
observer: Callable[[str, str], None] = _not_observed


def record_tier(tier: str, outcome: str) -> None:
    """Tell the metrics, if they listen."""
    observer(tier, outcome)


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


class MemoryCache:
    """A bounded LRU with a TTL, one per worker process (cachetools.TTLCache + a lock)."""

    def __init__(self, maxsize: int = 4096, ttl_s: float = 600, enabled: bool = True) -> None:
        self._data: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=maxsize, ttl=ttl_s)
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.enabled = enabled  # False: every read a miss, nothing kept (CACHE_ENABLED=0)

    def get(self, key: str) -> Any:
        if not self.enabled:
            return None
        with self._lock:
            value = self._data.get(key)
        outcome = "miss" if value is None else "hit"
        self.stats[outcome] += 1
        record_tier("memory", outcome)
        return value

    def set(self, key: str, value: Any) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._data[key] = value

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class CacheMode:
    """What the Redis tier may trust, as the outage watch knows it (chatbot/chat/locks.py).

    While some instance cannot reach Redis it writes to MongoDB alone, and Redis cannot
    be told: `suspended` turns every Redis read into a miss and every value write into
    nothing (invalidations and counters still go) for as long as that lasts. `epoch`
    counts those windows and names the cached keys (`f{epoch}:` after the prefix), so a
    value cached before a window is never read after it, whoever missed an invalidation.
    Set by one thread, read by all: two plain attributes, each replaced whole.
    """

    def __init__(self, suspended: bool = False) -> None:
        self.epoch = 0
        self.suspended = suspended

    def namespace(self) -> tuple[str, ...]:
        """The key parts that come first: none until the first outage window."""
        return (f"f{self.epoch}",) if self.epoch else ()


class RedisCache:
    """get / set / delete of JSON values under the app's key prefix."""

    def __init__(
        self,
        store: RedisStore,
        default_ttl_s: int = 3600,
        enabled: bool = True,
        mode: CacheMode | None = None,
    ) -> None:
        self.store = store
        self.default_ttl_s = default_ttl_s
        # False (CACHE_ENABLED=0): reads miss and values are not stored; invalidations and
        # counters still work, so turning the cache back on serves nothing stale.
        self.configured = enabled
        self.mode = mode or CacheMode()
        self.stats: Counter[str] = Counter()
        self._last_logged = 0.0
        self._lock = threading.Lock()
        # Keys to tombstone and counters to bump once Redis answers again.
        self._pending: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        """Whether values may be read and kept now (configured, and no outage window)."""
        return self.configured and not self.mode.suspended

    def key(self, *parts: str) -> str:
        return self.store.key(*self.mode.namespace(), *parts)

    @property
    def client(self) -> redis.Redis:
        assert self.store.client is not None, "RedisStore.init_app was not called"
        return self.store.client

    # --- reads --------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        values = self.get_many([key])
        return None if values is None else values[0]

    def get_many(self, keys: list[str], counted: int | None = None) -> list[Any] | None:
        """Values of `keys` in one round trip (MGET), None for a miss; None for the whole
        list when Redis cannot be reached (the error counted once). Only the first
        `counted` keys (default all) count as cache hits or misses: the others are
        counters read along (e.g. response versions), not cached values."""
        if not self.enabled:
            return [None] * len(keys)
        raws = self._mget(keys)
        if raws is None:
            return None
        values = []
        for n, raw in enumerate(raws):
            if raw == _TOMBSTONE:
                raw = None
            if counted is None or n < counted:
                self._count("miss" if raw is None else "hit")
            values.append(None if raw is None else loads(raw))
        return values

    def get_or_load(self, key: str, load: Callable[[], T], ttl_s: int | None = None) -> T:
        """Read-through: the cached value, else `load()` (cached unless None).

        Cached with only_if_absent, so a load that raced a write's tombstone is not kept.
        """
        value: T | None = self.get(key)  # what an earlier load() gave, back from JSON
        if value is None:
            value = load()
            if value is not None:
                self.set(key, value, ttl_s, only_if_absent=True)
        return value

    def get_counters(self, keys: list[str]) -> list[int] | None:
        """Integer counters (missing = 0) in one round trip; None when Redis is down."""
        if not self.enabled:
            return None
        raws = self._mget(keys)
        return None if raws is None else [int(r) if r is not None else 0 for r in raws]

    def _mget(self, keys: list[str]) -> list[bytes | str | None] | None:
        """The raw values of `keys` (one MGET, after any pending invalidations), or None."""
        try:
            self._replay()
            return self.client.mget([self.key(k) for k in keys])
        except redis.RedisError as exc:
            self._failed("get", exc)
            return None

    # --- writes -------------------------------------------------------------------------
    def set(
        self, key: str, value: Any, ttl_s: int | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store `value`; with only_if_absent, never over a newer value or a tombstone."""
        if not self.enabled:
            return False
        try:
            self._replay()
            done = self.client.set(
                self.key(key), dumps(value), ex=ttl_s or self.default_ttl_s, nx=only_if_absent
            )
        except redis.RedisError as exc:
            self._failed("set", exc)
            return False
        return bool(done)

    def delete(self, *keys: str) -> bool:
        try:
            self.client.delete(*(self.key(k) for k in keys))
        except redis.RedisError as exc:
            self._failed("delete", exc)
            return False
        return True

    def invalidate(self, key: str, hold_s: int = 5) -> bool:
        """Drop `key` after a write to its source, so the next read goes to the database.

        A tombstone rather than a delete: a reader that read the database just before
        the write and caches with only_if_absent=True cannot put the old value back.
        `hold_s` must outlast a request's database deadline. If Redis cannot be
        reached, the invalidation is replayed when it can.
        """
        try:
            self._replay()
            self.client.set(self.key(key), TOMBSTONE, ex=hold_s)
        except redis.RedisError as exc:
            self._failed("invalidate", exc)
            self._remember(key, "tombstone")
            return False
        return True

    def bump(self, *counters: str) -> bool:
        """Increment version counters (one round trip); replayed later if Redis is down."""
        try:
            self._replay()
            with self.client.pipeline(transaction=False) as pipe:
                for counter in counters:
                    pipe.incr(self.key(counter))
                pipe.execute()
        except redis.RedisError as exc:
            self._failed("bump", exc)
            for counter in counters:
                self._remember(counter, "bump")
            return False
        return True

    def update(self, key: str, fields: dict[str, Any], ttl_s: int | None = None) -> bool:
        """Merge `fields` into a cached dict, only if it is cached and not invalidated.

        WATCH makes it atomic against a concurrent `invalidate`: the merge is dropped
        instead of resurrecting a value that another writer just made stale.
        """
        if not self.enabled:
            return False
        full = self.key(key)
        try:
            with self.client.pipeline() as pipe:
                pipe.watch(full)
                raw = pipe.get(full)
                if raw is None or raw == _TOMBSTONE:
                    return False
                value = {**loads(raw), **fields}
                pipe.multi()
                pipe.set(full, dumps(value), ex=ttl_s or self.default_ttl_s)
                pipe.execute()
        except redis.WatchError:
            return False
        except redis.RedisError as exc:
            self._failed("update", exc)
            self._remember(key, "tombstone")  # the cached copy is now behind MongoDB
            return False
        return True

    # --- outages ------------------------------------------------------------------------
    def _remember(self, key: str, action: str) -> None:
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                # Too much to replay one by one: invalidate every cached response instead.
                self._pending.clear()
                self._pending[RESPONSE_EPOCH] = "bump"
            self._pending[key] = action

    def _replay(self) -> None:
        """Apply the invalidations that failed while Redis was unreachable (may raise)."""
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = self._pending, {}
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key, action in pending.items():
                    if action == "bump":
                        pipe.incr(self.key(key))
                    else:
                        pipe.set(self.key(key), TOMBSTONE, ex=5)
                pipe.execute()
        except redis.RedisError:
            with self._lock:
                self._pending = {**pending, **self._pending}
            raise
        log.warning("replayed %d cache invalidations after a Redis outage", len(pending))

    def _count(self, outcome: str) -> None:
        self.stats[outcome] += 1
        record_tier("redis", outcome)

    def _failed(self, op: str, exc: redis.RedisError) -> None:
        # An outage would otherwise log one line per request (measured: megabytes a second).
        self._count("error")
        now = time.monotonic()
        with self._lock:
            if now - self._last_logged < LOG_EVERY_S:
                return
            self._last_logged = now
        log.warning("cache %s failed, answering a miss: %s", op, type(exc).__name__)


# The response cache's global version (chatbot/http_cache.py): bumping it makes every
# cached response unreachable.
RESPONSE_EPOCH = "response:epoch"
