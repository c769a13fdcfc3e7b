"""The first page of each user's history, kept in Redis so it costs no database scan.

`history:{userId}` is a Redis list of the user's newest messages, newest first, as
the history API shows them. A chat turn pushes its messages onto it only if it
exists (LPUSHX); a read that misses rebuilds it from MongoDB. `history:v:{userId}`
counts turns: a rebuild is dropped (WATCH) if a turn landed while it read MongoDB,
so the list never misses a message. Redis errors make every call a miss.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis

from chatbot.cache import RedisCache, dumps, loads
from chatbot.redis_store import RedisStore

log = logging.getLogger(__name__)

# One more than the largest page (limit 100), so a full first page knows if a next exists.
KEEP = 101


class HistoryCache:
    def __init__(self, store: RedisStore, ttl_s: int, cache: RedisCache) -> None:
        self.store = store
        self.ttl_s = ttl_s
        # Its keys and whether it may be used follow the value cache's: CACHE_ENABLED=0,
        # or an outage window (chatbot/cache.py CacheMode), means always MongoDB.
        self.cache = cache

    @property
    def enabled(self) -> bool:
        return self.cache.enabled

    @property
    def client(self) -> redis.Redis:
        assert self.store.client is not None, "RedisStore.init_app was not called"
        return self.store.client

    def _keys(self, user_id: str) -> tuple[str, str]:
        return self.cache.key("history", user_id), self.cache.key("history", "v", user_id)

    def _sent_key(self, user_id: str) -> str:
        return self.cache.key("history", "sent", user_id)

    def push(self, user_id: str, messages: list[dict[str, Any]]) -> None:
        """Add a turn's messages (oldest first) to a cached list; bump the turn counter."""
        if not self.enabled:
            self.drop(user_id)  # nothing left behind to be stale if caching comes back
            return
        items, version = self._keys(user_id)
        try:
            pipe = self.client.pipeline(transaction=True)
            if messages:
                pipe.lpushx(items, *(dumps(m) for m in messages))
                pipe.ltrim(items, 0, KEEP - 1)
                pipe.expire(items, self.ttl_s)
            sent = [
                m["id"] for m in messages if m["direction"] == "outbound" and m["status"] == "sent"
            ]
            if sent:  # for the receipt that confirms them (take_sent_replies)
                pipe.sadd(self._sent_key(user_id), *sent)
                pipe.expire(self._sent_key(user_id), self.ttl_s)
            pipe.incr(version)
            pipe.expire(version, self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            # The list may now miss this turn: drop it (if Redis is back) so it is rebuilt.
            log.debug("history push failed: %s", type(exc).__name__)
            self.drop(user_id)

    def first_page(
        self, user_id: str, limit: int, load: Callable[[int], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Up to `limit + 1` newest messages: from Redis, else from `load(KEEP)`, cached."""
        if not self.enabled:
            return load(limit + 1)
        items, version = self._keys(user_id)
        client = self.client
        try:
            cached = client.lrange(items, 0, limit)
            if cached:
                return [loads(m) for m in cached]
            before = client.get(version)
        except redis.RedisError:
            return load(limit + 1)
        messages = load(KEEP)
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.watch(version)
                if pipe.get(version) != before:
                    return messages[: limit + 1]  # a turn landed meanwhile: do not cache
                pipe.multi()
                pipe.delete(items)
                if messages:
                    pipe.rpush(items, *(dumps(m) for m in messages))
                    pipe.expire(items, self.ttl_s)
                pipe.execute()
        except (redis.WatchError, redis.RedisError):
            pass
        return messages[: limit + 1]

    def take_sent_replies(self, user_id: str, ids: set[str]) -> set[str] | None:
        """Take `ids` off the set of the user's replies still `sent`, if all are on it.

        A turn adds its replies to `history:sent:{userId}` (push). A receipt for them
        takes them off atomically, so two copies of one receipt count them once. None
        when not every id was on it (another user's, an old reply, a second receipt,
        the set expired or Redis failed): then the database must decide.
        """
        if not self.enabled or not ids:
            return None
        wanted = sorted(ids)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.smismember(self._sent_key(user_id), wanted)
                pipe.srem(self._sent_key(user_id), *wanted)
                held, _ = pipe.execute()
        except redis.RedisError:
            return None
        taken = {i for i, on in zip(wanted, held, strict=True) if on}
        return taken if len(taken) == len(ids) else None

    def update_status(self, user_id: str, ids: set[str], status: str) -> None:
        """Set `status` on cached messages in `ids` (delivery receipts); drop the list on a race."""
        items, _ = self._keys(user_id)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(items)
                cached = [loads(m) for m in pipe.lrange(items, 0, -1)]
                if not cached:
                    return
                for message in cached:
                    if message["id"] in ids and message["status"] == "sent":
                        message["status"] = status
                ttl = pipe.ttl(items)
                pipe.multi()
                pipe.delete(items)
                pipe.rpush(items, *(dumps(m) for m in cached))
                pipe.expire(items, ttl if ttl and ttl > 0 else self.ttl_s)
                pipe.execute()
        except (redis.WatchError, redis.RedisError):
            self.drop(user_id)

    def drop(self, user_id: str) -> None:
        items, _ = self._keys(user_id)
        with contextlib.suppress(redis.RedisError):
            self.client.delete(items)
