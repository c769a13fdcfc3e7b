"""Extension objects, created unbound here and bound in `create_app`."""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from flask import Flask, current_app, request
from flask_caching import Cache
from flask_compress import Compress
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from chatbot.chat.banks import BankRegistry
from chatbot.db import Mongo
from chatbot.errors import ApiError
from chatbot.redis_store import RedisStore
from chatbot.settings import Settings

mongo = Mongo()
redis_store = RedisStore()
banks = BankRegistry(lambda: mongo.db)
cache = Cache()
compress = Compress()


def client_key() -> str:
    """Rate-limit per user when the request carries a genuine token (a clinic's parents
    share one address), else per client address (nginx's X-Forwarded-For via ProxyFix).

    Only a correctly signed token counts: made-up tokens must not buy fresh allowances.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        try:
            user_id, _ = current_app.extensions["chatbot.tokens"].read(token.strip())
        except ApiError:
            pass
        else:
            return "u:" + user_id
    return "ip:" + get_remote_address()


def make_limiter(app: Flask, settings: Settings) -> Limiter:
    """Bind a rate limiter to `app`, its counters in Redis on the shared pool.

    One Limiter per app: flask-limiter keeps the first app's storage and limits
    on the object, so a module-level one cannot serve several apps (the tests make many).
    While Redis is down it counts in process memory instead of failing requests.
    """
    return Limiter(
        key_func=client_key,
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

    kwargs.update(
        host=redis_store.client,
        key_prefix=config["CACHE_KEY_PREFIX"],
        default_timeout=config["CACHE_DEFAULT_TIMEOUT"],
    )
    return RedisCache(*args, **kwargs)


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
