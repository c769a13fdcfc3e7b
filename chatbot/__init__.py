"""The chatbot service: a Flask app factory wiring settings, extensions and blueprints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatbot.clock import Clock
from chatbot.settings import Settings
from chatbot.version import __version__

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["__version__", "create_app"]


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Flask:
    """Build the app; no I/O happens here (connections open lazily in each worker).

    `clock` is the time every service reads (tests may pass a frozen one).
    """
    # Imported here, not at the top: `import chatbot.<anything>` runs this package's
    # __init__ first, and the domain modules must not pull in the web stack with it.
    from flask import Flask

    import chatbot.metrics
    from chatbot import (
        api,
        compression,
        deadlines,
        envelope,
        health,
        limits,
        logs,
        middleware,
        security,
        services,
        web,
    )
    from chatbot.api import admin, chat, children, docs, whatsapp, worker
    from chatbot.cache import CacheMode, MemoryCache, RedisCache
    from chatbot.cli import cli
    from chatbot.extensions import cache, compress, mongo, redis_store
    from chatbot.http_cache import ResponseCache
    from chatbot.json_provider import JSONProvider
    from chatbot.proxy import trust_proxy
    from chatbot.web import dashboard
    from chatbot.web import worker as worker_page

    settings = settings or Settings.from_env()
    clock = clock or Clock()
    logs.configure_logging(settings.log_level, settings.instance_id)

    # The web chat's files are served by the `web` blueprint; the app has no static folder.
    app = Flask(__name__, static_folder=None)
    app.json = JSONProvider(app)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SETTINGS=settings,
        INSTANCE_ID=settings.instance_id,
        HEALTH_TIMEOUT_S=settings.health_timeout_s,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        # Static files (the web chat's script and stylesheet) may be cached 5 minutes.
        SEND_FILE_MAX_AGE_DEFAULT=web.STATIC_MAX_AGE_S,
        # flask-caching: Redis backend on the shared pool (see extensions.redis_cache_factory).
        CACHE_TYPE="chatbot.extensions.redis_cache_factory",
        CACHE_KEY_PREFIX=settings.redis_key_prefix + "cache:",
        CACHE_DEFAULT_TIMEOUT=settings.cache_default_timeout_s,
        # RESPONSE_CACHE_S=0 turns response caching off (the benchmark compares both).
        RESPONSE_CACHE_ENABLED=settings.cache_enabled and settings.response_cache_s > 0,
    )
    # X-Forwarded-* (nginx's one hop) trusted only on requests carrying PROXY_SECRET.
    # Wrapping wsgi_app is Flask's documented way to add WSGI middleware, but Flask declares
    # it as a method, which mypy will not let an instance attribute replace.
    app.wsgi_app = trust_proxy(app.wsgi_app, settings.proxy_secret, settings.is_production)  # type: ignore[assignment]

    # First, so every later hook (the limiter's too) logs with the request id.
    middleware.init_app(app)
    # Security headers (nosniff, CSP, frame-ancestors, Referrer-Policy) on every response.
    security.init_app(app)
    mongo.init_app(settings)
    redis_store.init_app(settings)
    cache.init_app(app)
    # The cache service (chatbot/cache.py): one memory tier and one Redis tier per app,
    # so per worker process; their hit/miss/error counts are per process too.
    memory = MemoryCache(
        settings.memory_cache_size, settings.memory_cache_ttl_s, settings.cache_enabled
    )
    app.extensions["chatbot.memory"] = memory
    # Suspended until the chat service's outage watch has read which epoch names the
    # keys (chatbot/chat/locks.py), on the process's first request.
    app.extensions["chatbot.cache"] = RedisCache(
        redis_store, settings.redis_cache_ttl_s, settings.cache_enabled, CacheMode(suspended=True)
    )
    responses = ResponseCache(
        memory, app.extensions["chatbot.cache"], cache, settings.response_cache_s, clock
    )
    app.extensions["chatbot.responses"] = responses
    # flask-compress owns compression (nginx passes bodies through untouched).
    compression.init_app(app, compress, settings, memory)
    # The application services, built once per app (chatbot/services.py).
    services.init_app(
        app,
        services.Services(
            settings, mongo, redis_store, app.extensions["chatbot.cache"], clock, responses.changed
        ),
    )
    limiter = limits.init_app(app, settings)

    envelope.init_app(app)
    deadlines.init_app(app, settings.mongo_request_timeout_s)
    # Counts every request (its hooks run first and last) and serves /metrics.
    chatbot.metrics.init_app(app, settings.metrics_enabled)
    app.register_blueprint(health.bp)
    for module in (chat, children, worker, admin, docs):
        app.register_blueprint(module.bp, url_prefix=api.PREFIX)
    app.register_blueprint(whatsapp.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(worker_page.bp)
    app.cli.add_command(cli)
    # The limits each blueprint and view declares (chatbot/limits.py).
    limits.apply(app, limiter, settings)
    return app
