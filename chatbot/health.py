"""Liveness (`/livez`) and readiness (`/health`) for nginx and outside probes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil
from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from chatbot import limits
from chatbot.deadlines import own_deadline
from chatbot.extensions import mongo, redis_store
from chatbot.version import __version__

bp = Blueprint("health", __name__)
limits.exempt(bp)  # probes must never be rate limited
_process = psutil.Process()


def _probe(check: Callable[[], None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # noqa: BLE001 -- any failure means "down"; the probe must answer
        # The body is public: name the failure, but no addresses or driver messages.
        result: dict[str, Any] = {"status": "down", "error": type(exc).__name__}
    else:
        result = {"status": "up"}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


@bp.get("/livez")
def livez() -> ResponseReturnValue:
    """Answer 200 while the process can serve requests; touches no dependency."""
    return jsonify(status="ok", instance=current_app.config["INSTANCE_ID"], version=__version__)


@bp.get("/health")
# The ping has its own budget: the data layer's per-request database deadline
# (MONGO_REQUEST_TIMEOUT_S), which would cap it, does not apply here.
@own_deadline
def health() -> ResponseReturnValue:
    """Ping MongoDB and Redis: 200 ok, 200 degraded without Redis, 503 without MongoDB.

    503 means the database did not answer, not that it answered slowly: the ping gets
    HEALTH_TIMEOUT_S (1.5 s), a budget a busy database meets (its reply waits behind the
    load, it still comes) and a frozen one does not. A database that refuses the
    connection is reported in 0.5 s (Mongo.ping); a frozen one (SIGSTOP, a hung host)
    after the budget, then in 0.5 s once PyMongo's monitor has seen it time out. A tight
    budget (it was 0.3 s) turned /health to 503 for moments under load while every request
    was still being served.
    """
    timeout = current_app.config["HEALTH_TIMEOUT_S"]
    checks = {
        "mongodb": _probe(lambda: mongo.ping(timeout)),
        "redis": _probe(redis_store.ping),
    }
    if checks["mongodb"]["status"] != "up":
        status, code = "unavailable", 503
    elif checks["redis"]["status"] != "up":
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    memory = _process.memory_info()
    body = {
        "status": status,
        "instance": current_app.config["INSTANCE_ID"],
        "version": __version__,
        "checks": checks,
        "process": {"pid": _process.pid, "rss_mb": round(memory.rss / 2**20, 1)},
    }
    response = jsonify(body)
    response.status_code = code
    # Probes must see the live state, never a cached copy.
    response.headers["Cache-Control"] = "no-store"
    return response
