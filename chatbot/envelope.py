"""The one JSON error envelope the app answers every error with.

    {"error": {"code": "not_found", "message": "...", "request_id": "...", "details": {...}}}

The errors of chatbot/errors.py answer the status `status_of` gives them; werkzeug's
HTTP errors, the database's and unexpected exceptions are converted here. A 5xx body
never carries exception text. The message is worded in the user's language.

`Retry-After` appears on 429 and 503 answers only (see `_retry_after_only_when_meaningful`).
"""

from __future__ import annotations

import json
import logging
import re
from functools import cache
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from chatbot.db import DatabaseError, storage_unavailable
from chatbot.errors import HTTP_CODES, AppError, ServiceUnavailableError, status_of

log = logging.getLogger(__name__)

# Messages are raised in English; chatbot/data/api_errors.json words them in the
# user's other languages, keyed by the English text ({placeholders} for what varies).
MESSAGES_FILE = Path(__file__).resolve().parent / "data" / "api_errors.json"
RAISED_IN = "en"


def _pattern(english: str) -> re.Pattern[str]:
    """The literal text, each {name} a named group: "No such {what}." matches "No such child."."""
    parts = re.split(r"(\{\w+\})", english)
    return re.compile(
        "".join(f"(?P<{p[1:-1]}>.+?)" if p.startswith("{") else re.escape(p) for p in parts)
    )


@cache
def _catalogue() -> tuple[list[tuple[re.Pattern[str], dict[str, str]]], dict[str, dict[str, str]]]:
    data = json.loads(MESSAGES_FILE.read_text(encoding="utf-8"))
    patterns = [(_pattern(english), wordings) for english, wordings in data["messages"].items()]
    return patterns, data["codes"]


def message_language() -> str:
    """The signed-in user's language, else the best of the request's Accept-Language."""
    if not has_request_context():
        return RAISED_IN
    user: dict[str, Any] | None = g.get("user")
    language: str | None = user.get("language") if user else None
    if language:
        return language
    offered = [RAISED_IN, *{lang for _, w in _catalogue()[0] for lang in w}]
    return request.accept_languages.best_match(offered) or RAISED_IN


def localise(message: str, code: str | None = None) -> tuple[str, str]:
    """(language, message) in the user's language when the catalogue has it, else as
    raised. `code` words a message we did not write (werkzeug's) by its code."""
    language = message_language()
    if language == RAISED_IN:
        return RAISED_IN, message
    patterns, codes = _catalogue()
    for pattern, wordings in patterns:
        found = pattern.fullmatch(message)
        if found and language in wordings:
            return language, wordings[language].format(**found.groupdict())
    if code is not None and language in codes.get(code, {}):
        return language, codes[code][language]
    return RAISED_IN, message


def error_response(
    status: int, code: str, message: str, details: Any = None, *, ours: bool = True
) -> tuple[Response, int]:
    """The envelope; the message in the user's language (Content-Language says which).
    `ours` False: a message we did not write, worded by its code when not known."""
    language, message = localise(message, None if ours else code)
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": g.get("request_id", "-"),
    }
    if details is not None:
        body["details"] = details
    response = jsonify(error=body)
    response.headers["Content-Language"] = language
    return response, status


def handle_app_error(exc: AppError, logged: bool = False) -> ResponseReturnValue:
    """The envelope for one of our errors; `logged` when the caller already logged why."""
    status = status_of(exc)
    if status == 503 and not logged:  # an outage or overload: expected, not a bug
        log.warning("api error %s: %s", exc.code, exc.message)
    elif status >= 500 and not logged:
        log.error("api error %s: %s", exc.code, exc.message)
    if isinstance(exc.retry_after, int) and exc.retry_after > 0:
        g.retry_after = exc.retry_after
    return error_response(status, exc.code, exc.message, exc.details)


def handle_http_exception(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    code = HTTP_CODES.get(status, "http_error")
    message = exc.description or exc.name
    if status >= 500:
        message = exc.name
    response = exc.get_response()
    body, status = error_response(status, code, message, ours=False)
    # Keep headers werkzeug and extensions set (Allow on 405; on 429 flask-limiter
    # sets Retry-After later, in its after_request hook).
    for name, value in response.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            body.headers[name] = value
    return body, status


def handle_unexpected(exc: Exception) -> ResponseReturnValue:
    # The traceback goes to the log, tagged with the request id; the client gets the id only.
    log.exception("unhandled exception")
    return error_response(500, "internal_error", "Internal server error.")


def handle_database_error(exc: DatabaseError) -> ResponseReturnValue:
    """Unreachable, or the deadline passed: 503. Anything else is a bug: 500."""
    if not storage_unavailable(exc):
        return handle_unexpected(exc)
    log.warning("database unavailable: %s", type(exc).__name__)
    return handle_app_error(
        ServiceUnavailableError("The database is unavailable; try again shortly."), logged=True
    )


def _retry_after_only_when_meaningful(response: Response) -> Response:
    """Retry-After on 429 (seconds until the limit resets) and 503 (a retry hint) only.

    flask-limiter (headers_enabled) puts its window's reset time in Retry-After on every
    response of a limited route, 200s included, and on a 503 it would replace the
    outage hint with that window. Its X-RateLimit-* headers stay as they are.
    """
    status = response.status_code
    chosen = g.get("retry_after")
    if status == 503:
        # The database or Redis is unavailable: a short hint, not the rate-limit window.
        seconds = chosen or current_app.config["SETTINGS"].retry_after_unavailable_s
        response.headers["Retry-After"] = str(seconds)
    elif status == 429:
        if chosen:  # the app's own limit (e.g. codes per number) knows its window
            response.headers["Retry-After"] = str(chosen)
        else:
            limiter_says = response.headers.get("Retry-After", "")
            if limiter_says.lstrip("-").isdigit():
                # flask-limiter truncates: "0" in the window's last second means "1".
                response.headers["Retry-After"] = str(max(1, int(limiter_says)))
    else:
        response.headers.pop("Retry-After", None)
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(AppError, handle_app_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DatabaseError, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
    # Flask runs after_request functions in reverse order of registration. This one must
    # see the headers flask-limiter's hook adds (registered before this, in create_app),
    # so it goes first in the list: it runs after every other hook.
    app.after_request_funcs.setdefault(None, []).insert(0, _retry_after_only_when_meaningful)
