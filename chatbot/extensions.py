"""Extension objects, created unbound here and bound in `create_app`."""

from __future__ import annotations

from flask_caching import Cache
from flask_compress import Compress
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from chatbot.db import Mongo
from chatbot.redis_store import RedisStore

mongo = Mongo()
redis_store = RedisStore()
cache = Cache()
compress = Compress()
limiter = Limiter(key_func=get_remote_address)


def redis_cache_factory(app, config, args, kwargs):
    """Build flask-caching's Redis backend on the shared, breaker-guarded pool."""
    from flask_caching.backends.rediscache import RedisCache

    kwargs.update(
        host=redis_store.client,
        key_prefix=config["CACHE_KEY_PREFIX"],
        default_timeout=config["CACHE_DEFAULT_TIMEOUT"],
    )
    return RedisCache(*args, **kwargs)
