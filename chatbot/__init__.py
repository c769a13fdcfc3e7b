"""The chatbot service: a Flask app factory wiring settings, extensions and blueprints."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from chatbot.settings import Settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; no I/O happens here (connections open lazily in each worker)."""
    from chatbot import db, errors, health, logs, middleware
    from chatbot.extensions import cache, compress, make_limiter, mongo, redis_store

    settings = settings or Settings.from_env()
    logs.configure_logging(settings.log_level, settings.instance_id)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SETTINGS=settings,
        INSTANCE_ID=settings.instance_id,
        HEALTH_TIMEOUT_S=settings.health_timeout_s,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        JSON_SORT_KEYS=False,
        # flask-caching: Redis backend on the shared pool (see extensions.redis_cache_factory).
        CACHE_TYPE="chatbot.extensions.redis_cache_factory",
        CACHE_KEY_PREFIX=settings.redis_key_prefix + "cache:",
        CACHE_DEFAULT_TIMEOUT=settings.cache_default_timeout_s,
        # flask-compress owns compression (nginx passes bodies through untouched).
        COMPRESS_ALGORITHM=["br", "gzip"],
        COMPRESS_LEVEL=settings.compress_level,
        COMPRESS_BR_LEVEL=settings.compress_level,
        COMPRESS_MIN_SIZE=500,
        COMPRESS_MIMETYPES=["application/json", "text/html", "text/css", "application/javascript"],
    )
    # nginx is the only client of gunicorn (bound to loopback); trust its one hop.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    # First, so every later hook (the limiter's too) logs with the request id.
    middleware.init_app(app)
    mongo.init_app(settings)
    redis_store.init_app(settings)
    cache.init_app(app)
    compress.init_app(app)
    limiter = make_limiter(app, settings)
    # Probes must never be rate limited.
    limiter.exempt(health.bp)

    errors.init_app(app)
    db.init_app(app)
    app.register_blueprint(health.bp)
    return app
