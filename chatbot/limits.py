"""Rate limits: declared beside the routes they limit, enforced by one limiter per app.

Where a route is defined, its module says how it is limited, naming the setting that
holds the value (docs/configuration.md):

- `limit_blueprint(bp, "chat_rate_limit")`: every route of the blueprint;
- `@limit("verify_rate_limit")` on a view: that route's own limit, instead of its
  blueprint's;
- `exempt(bp)`: never limited (probes, static pages, metrics scrapes);
- any other route: RATE_LIMIT_DEFAULT.

Counts are kept per user for a genuine token, else per client address
(chatbot/api/auth.py `client_key`), in Redis. A refused request answers 429 in the
error envelope, with Retry-After (chatbot/envelope.py).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, current_app, request
from flask_limiter import Limiter
from limits.storage import RedisStorage

from chatbot.api.auth import client_key
from chatbot.extensions import redis_store
from chatbot.settings import Settings

V = TypeVar("V", bound=Callable[..., Any])

# Marks set where the limits are declared, read by `apply`.
_SETTING = "rate_limit_setting"
_EXEMPT = "rate_limit_exempt"
_VIEW = "rate_limited_view"  # the view under `limit`'s wrapper
# The app's checked views: endpoint -> flask-limiter's wrapper of the view.
_CHECKED = "chatbot.limited_views"


def limit_blueprint(bp: Blueprint, setting: str) -> None:
    """Limit every route of `bp` by the value of Settings.<setting>."""
    setattr(bp, _SETTING, setting)


def exempt(bp: Blueprint) -> None:
    """Never rate-limit the routes of `bp`."""
    setattr(bp, _EXEMPT, True)


def limit(setting: str) -> Callable[[V], V]:
    """Limit this route by the value of Settings.<setting>, instead of its blueprint's limit."""

    def decorator(view: V) -> V:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            # flask-limiter checks a route's own limit in a wrapper made by the app's
            # limiter (`apply`), which only exists per app.
            return current_app.extensions[_CHECKED][request.endpoint](*args, **kwargs)

        setattr(limited, _SETTING, setting)
        setattr(limited, _VIEW, view)
        return cast(V, limited)  # functools.wraps keeps the view's signature

    return decorator


class OneTripRedisStorage(RedisStorage):
    """limits' Redis storage, with a request's hit and its window read in one round trip.

    flask-limiter counts a hit (INCRBY, and EXPIRE on a new window: one script) and then,
    for the X-RateLimit-* headers, reads the window's count (GET) and expiry (TTL): three
    round trips, half of a cached read's. Here the script also answers the count and
    TTL, and the headers of the same request, on the same thread, read them from there.
    Anything else (another key, a later request) asks Redis as before.
    """

    STORAGE_SCHEME = ["chatbot+redis"]  # noqa: RUF012 -- limits' registry reads this list

    # limits' incr_expire.lua, answering the TTL beside the count.
    SCRIPT_INCR_EXPIRE_TTL = b"""
local amount = tonumber(ARGV[2])
local current = redis.call("incrby", KEYS[1], amount)
if tonumber(current) == amount then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""
    # How long a hit's answer serves the same thread's reads of its window: the rest
    # of one request (the headers are written right after the view).
    FRESH_S = 1.0

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_incr_expire_ttl = self.get_connection().register_script(
            self.SCRIPT_INCR_EXPIRE_TTL
        )
        self._last = threading.local()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        current, ttl = self.lua_incr_expire_ttl([self.prefixed_key(key)], [expiry, amount])
        now = time.time()
        self._last.hit = (key, int(current), now + max(int(ttl), 0), now)
        return int(current)

    def _fresh(self, key: str) -> tuple[str, int, float, float] | None:
        hit: tuple[str, int, float, float] | None = getattr(self._last, "hit", None)
        if hit is None or hit[0] != key or time.time() - hit[3] > self.FRESH_S:
            return None
        return hit

    def get(self, key: str) -> int:
        hit = self._fresh(key)
        return hit[1] if hit else super().get(key)

    def get_expiry(self, key: str) -> float:
        hit = self._fresh(key)
        return hit[2] if hit else super().get_expiry(key)


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Bind a rate limiter to `app`, its counters in Redis on the shared pool.

    One Limiter per app: flask-limiter keeps the first app's storage and limits
    on the object, so a module-level one cannot serve several apps (the tests make many).
    While Redis is down it counts in process memory instead of failing requests.
    """
    return Limiter(
        key_func=client_key,
        app=app,
        # OneTripRedisStorage, on the app's Redis pool (the URI's host is not used).
        storage_uri="chatbot+redis://",
        # The storage's own prefix (not flask-limiter's) decides the Redis key names.
        storage_options={
            # The Redis storage takes a pool; flask-limiter's hint says str | int only.
            "connection_pool": redis_store.pool,  # type: ignore[dict-item]
            "key_prefix": settings.redis_key_prefix + "rl",
        },
        default_limits=[settings.rate_limit_default],
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )


def apply(app: Flask, limiter: Limiter, settings: Settings) -> None:
    """Enforce the limits declared on the app's blueprints and views (once they are registered)."""
    for registered in app.blueprints.values():
        bp = cast(Blueprint, registered)  # Flask's blueprints, typed as their sansio base
        if getattr(bp, _EXEMPT, False):
            limiter.exempt(bp)
        setting = getattr(bp, _SETTING, None)
        if setting is not None:
            limiter.limit(getattr(settings, setting))(bp)
    app.extensions[_CHECKED] = {
        endpoint: limiter.limit(getattr(settings, getattr(view, _SETTING)))(getattr(view, _VIEW))
        for endpoint, view in app.view_functions.items()
        if hasattr(view, _SETTING)
    }
