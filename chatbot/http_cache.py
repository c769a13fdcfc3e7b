"""Response caching for the per-user GETs: two tiers, versioned keys, ETags.

A cached response lives under
`response:{epoch}:{scope}:{version}:{hash of method, path, query, language}` for
`RESPONSE_CACHE_S` (300 s): in the worker's memory tier first, then in Redis through
flask-caching (JSON-serialised). `scope` is the user (`u:{userId}`) or, for the staff
lists, `staff`; `version` is that scope's counter `response:v:{scope}`. A write by or
about a user bumps the user's counter (and the staff counter when the staff lists
change), so every worker of every instance asks for a new key at its next read: no
stale copy can be served, from either tier, and no message has to reach the workers.
`epoch` is the outage windows' epoch (chatbot/cache.py `CacheMode`) and the counter
`response:epoch`, bumped when an invalidation had to wait for Redis (see chatbot/cache.py).

The counters of a request are read together with the user behind its token, in the
one Redis round trip `auth_required` makes (`prefetch_keys`). When Redis cannot be
read the view runs uncached.

Responses carry a strong ETag (a hash of the body) and `Cache-Control: private,
no-cache`: browsers may keep them but must revalidate, since any chat message can
change them; a revalidation that matches costs a 304 without a body.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable
from typing import Any, ParamSpec, TypedDict

import redis
from flask import Response, current_app, g, request
from flask.typing import ResponseReturnValue
from flask_caching import Cache

from chatbot.auth import STAFF_ROLES
from chatbot.cache import RESPONSE_EPOCH, MemoryCache, RedisCache, record_tier
from chatbot.clock import Clock

STAFF = "staff"
CACHE_CONTROL = "private, no-cache"

P = ParamSpec("P")


class CachedResponse(TypedDict):
    """A cached 200 JSON answer, as kept in both tiers."""

    body: str
    etag: str  # a hash of the body


def version_key(scope: str) -> str:
    return f"response:v:{scope}"


def user_scope(user_id: str) -> str:
    return f"u:{user_id}"


class ResponseCache:
    def __init__(
        self,
        memory: MemoryCache,
        redis_cache: RedisCache,
        flask_cache: Cache,
        ttl_s: int,
        clock: Clock,
    ) -> None:
        self.memory = memory
        self.redis = redis_cache
        self.flask_cache = flask_cache
        self.ttl_s = ttl_s
        self.clock = clock

    # --- invalidation ------------------------------------------------------------------
    def changed(self, user_id: str, staff: bool = False) -> None:
        """Something the user sees changed (and the staff lists too, when `staff`)."""
        counters = [version_key(user_scope(user_id))]
        if staff:
            counters.append(version_key(STAFF))
        self.redis.bump(*counters)

    # --- reads -------------------------------------------------------------------------
    @staticmethod
    def prefetch_keys(user_id: str) -> list[str]:
        """The counters a request of this user may need (read with the user, in one MGET)."""
        return [RESPONSE_EPOCH, version_key(user_scope(user_id)), version_key(STAFF)]

    def _versions(self, user_id: str) -> dict[str, int] | None:
        if "response_versions" in g:  # read with the user by auth_required
            prefetched: dict[str, int] | None = g.response_versions
            return prefetched
        counters = self.redis.get_counters(self.prefetch_keys(user_id))
        if counters is None:
            return None
        return dict(zip(self.prefetch_keys(user_id), counters, strict=True))

    def remember_prefetched(self, user_id: str, values: list[Any] | None) -> None:
        """Keep the counters read with the user (None: Redis was unreachable)."""
        if values is None or not self.redis.enabled:
            g.response_versions = None
            return
        keys = ResponseCache.prefetch_keys(user_id)
        g.response_versions = {k: int(v or 0) for k, v in zip(keys, values, strict=True)}

    def key(
        self,
        scope: str,
        versions: dict[str, int],
        language: str,
        staff: bool,
        by_day: bool,
        audience: str = "",
    ) -> str:
        """The key of this request's response: everything that changes the body.
        `audience`: whose children a staff answer shows (the role and the posyandu), so
        a health worker never gets the cached list of another posyandu."""
        raw = (
            f"{request.method} {request.path}?{request.query_string.decode()}|{language}|{audience}"
        )
        if by_day:  # answers that depend on today's date (overdue re-screens)
            raw += "|" + self.clock.now().date().isoformat()
        digest = hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()
        version = str(versions[version_key(scope)])
        if staff and scope != STAFF:
            # Staff see other users' children: their views follow the staff counter too.
            version += "." + str(versions[version_key(STAFF)])
        # The outage windows' epoch too: a window restarts every counter (their keys
        # carry it, chatbot/cache.py CacheMode), and the old numbers must not match.
        epoch = f"{self.redis.mode.epoch}.{versions[RESPONSE_EPOCH]}"
        return f"response:{epoch}:{scope}:{version}:{digest}"

    def serve(
        self,
        view: Callable[..., ResponseReturnValue],
        scope: str,
        by_day: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> ResponseReturnValue:
        """Answer from the cache, or run `view` and keep its 200 JSON answer."""
        if not current_app.config.get("RESPONSE_CACHE_ENABLED", True):
            return view(*args, **kwargs)
        user = g.user
        versions = self._versions(user["id"])
        if versions is None:  # Redis unreachable: no version, no cache
            return view(*args, **kwargs)
        name = STAFF if scope == "staff" else user_scope(user["id"])
        staff = user["role"] in STAFF_ROLES
        audience = f"{user['role']}:{','.join(user.get('posyandu') or [])}" if staff else ""
        key = self.key(name, versions, user.get("language") or "id", staff, by_day, audience)
        entry = self._get(key)
        if entry is None:
            response = current_app.make_response(view(*args, **kwargs))
            if response.status_code != 200 or response.mimetype != "application/json":
                return response
            body = response.get_data(as_text=True)
            entry = CachedResponse(
                body=body,
                etag=hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest(),
            )
            self._set(key, entry)
        return self.respond(entry)

    def respond(self, entry: CachedResponse) -> Response:
        g.response_etag = entry["etag"]  # names the compressed body (chatbot/compression.py)
        response = Response(entry["body"], mimetype="application/json")
        response.set_etag(entry["etag"])
        response.headers["Cache-Control"] = CACHE_CONTROL
        response.vary.add("Authorization")
        # 304 when If-None-Match names this ETag (compression adds its suffix later and
        # evaluates the request again, see chatbot/compression.py).
        response.make_conditional(request)  # in place (it returns the same object)
        return response

    def _get(self, key: str) -> CachedResponse | None:
        entry: CachedResponse | None = self.memory.get(key)
        if entry is not None:
            return entry
        try:
            entry = self.flask_cache.get(key)
        except redis.RedisError:  # flask-caching raises the backend's errors on a direct get
            entry = None
        record_tier("response", "miss" if entry is None else "hit")
        if entry is not None:
            self.memory.set(key, entry)
        return entry

    def _set(self, key: str, entry: CachedResponse) -> None:
        self.memory.set(key, entry)
        with contextlib.suppress(redis.RedisError):  # a cache never fails a request
            self.flask_cache.set(key, entry, timeout=self.ttl_s)


def cached(
    scope: str = "user", by_day: bool = False
) -> Callable[[Callable[P, ResponseReturnValue]], Callable[P, ResponseReturnValue]]:
    """Cache a view's 200 JSON answers per user ("user") or for all staff ("staff");
    `by_day` for answers that change with the date, not only with writes.

    Put it below `auth_required` (it needs g.user).
    """

    def decorator(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            responses: ResponseCache = current_app.extensions["chatbot.responses"]
            return responses.serve(view, scope, by_day, args, kwargs)

        return wrapper

    return decorator
