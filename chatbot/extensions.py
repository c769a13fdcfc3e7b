"""Extension objects, created unbound here and bound in `create_app`.

Connections and Flask extensions only; the application services are chatbot/services.py.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from cachelib.serializers import RedisSerializer
from flask import Flask
from flask_caching import Cache
from flask_caching.backends.rediscache import RedisCache as FlaskRedisCache
from flask_compress import Compress

from chatbot.cache import dumps, loads
from chatbot.db import Mongo
from chatbot.redis_store import RedisStore

mongo = Mongo()
redis_store = RedisStore()
cache = Cache()
compress = Compress()


class JsonRedisSerializer(RedisSerializer):
    """flask-caching's Redis backend pickles by default; the app's values are JSON."""

    def dumps(self, value: Any, protocol: int | None = None) -> bytes:
        return dumps(value).encode()

    def loads(self, value: bytes | None) -> Any:
        return None if value is None else loads(value)


def redis_cache_factory(
    app: Flask, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
) -> FlaskRedisCache:
    """Build flask-caching's Redis backend on the shared, breaker-guarded pool."""
    kwargs.update(
        host=redis_store.client,
        key_prefix=config["CACHE_KEY_PREFIX"],
        default_timeout=config["CACHE_DEFAULT_TIMEOUT"],
    )
    backend = FlaskRedisCache(*args, **kwargs)
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
