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
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, current_app, request
from flask_limiter import Limiter

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


def init_app(app: Flask, settings: Settings) -> Limiter:
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
