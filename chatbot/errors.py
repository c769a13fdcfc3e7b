"""One JSON error envelope for every error the API answers.

    {"error": {"code": "not_found", "message": "...", "request_id": "...", "details": {...}}}

Views and services raise `ApiError` (or a subclass); werkzeug's HTTP errors and
unexpected exceptions are converted here. A 5xx body never carries exception text.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Stable machine-readable codes for the HTTP errors werkzeug raises.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a message safe to show users."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details


class ServiceUnavailableError(ApiError):
    status = 503
    code = "service_unavailable"


def error_response(
    status: int, code: str, message: str, details: Any = None
) -> ResponseReturnValue:
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": g.get("request_id", "-"),
    }
    if details is not None:
        body["details"] = details
    return jsonify(error=body), status


def handle_api_error(exc: ApiError) -> ResponseReturnValue:
    if exc.status >= 500:
        log.error("api error %s: %s", exc.code, exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.details)


def handle_http_exception(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    code = HTTP_CODES.get(status, "http_error")
    message = exc.description or exc.name
    if status >= 500:
        message = exc.name
    response = exc.get_response()
    body, status = error_response(status, code, message)  # type: ignore[misc]
    # Keep headers werkzeug and extensions set (Allow on 405, Retry-After on 429).
    for name, value in response.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            body.headers[name] = value
    return body, status


def handle_unexpected(exc: Exception) -> ResponseReturnValue:
    # The traceback goes to the log, tagged with the request id; the client gets the id only.
    log.exception("unhandled exception")
    return error_response(500, "internal_error", "Internal server error.")


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
