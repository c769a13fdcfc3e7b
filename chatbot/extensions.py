"""Extension objects, created unbound here and bound in `create_app`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask
from flask_caching import Cache
from flask_compress import Compress
from flask_limiter import Limiter

from chatbot.chat.banks import BankRegistry
from chatbot.db import Mongo
from chatbot.redis_store import RedisStore
from chatbot.settings import Settings

mongo = Mongo()
redis_store = RedisStore()
banks = BankRegistry(lambda: mongo.db)
cache = Cache()
compress = Compress()


def make_limiter(app: Flask, settings: Settings, key_func: Callable[[], str]) -> Limiter:
    """Bind a rate limiter to `app`, its counters in Redis on the shared pool.

    One Limiter per app: flask-limiter keeps the first app's storage and limits
    on the object, so a module-level one cannot serve several apps (the tests make many).
    While Redis is down it counts in process memory instead of failing requests.
    """
    return Limiter(
        key_func=key_func,
        app=app,
        storage_uri=settings.redis_url,
        # The storage's own prefix (not flask-limiter's) decides the Redis key names.
        storage_options={
            "connection_pool": redis_store.pool,
            "key_prefix": settings.redis_key_prefix + "rl",
        },
        default_limits=[settings.rate_limit_default],
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )


def redis_cache_factory(app, config, args, kwargs):
    """Build flask-caching's Redis backend on the shared, breaker-guarded pool."""
    from flask_caching.backends.rediscache import RedisCache

    from chatbot.cache import JsonRedisSerializer

    kwargs.update(
        host=redis_store.client,
        key_prefix=config["CACHE_KEY_PREFIX"],
        default_timeout=config["CACHE_DEFAULT_TIMEOUT"],
    )
    backend = RedisCache(*args, **kwargs)
    backend.serializer = JsonRedisSerializer()  # JSON, never pickle, for what the app stores
    return backend


def safe_cache_get(key: str) -> Any:
    """cache.get that treats a Redis outage as a miss.

    flask-caching swallows backend errors only inside its decorators; a direct
    get would raise during an outage.
    """
    try:
        return cache.get(key)
    except redis.RedisError:
        return None


def safe_cache_set(key: str, value: Any, timeout: int) -> None:
    """cache.set that skips caching during a Redis outage (the cache is an optimisation)."""
    with contextlib.suppress(redis.RedisError):
        cache.set(key, value, timeout=timeout)
