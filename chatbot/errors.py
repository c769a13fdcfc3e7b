"""Every error the app raises on purpose, and the one table that gives each an HTTP status.

Repositories, services and views raise these plain errors; none of them knows HTTP.
The web layer (chatbot/envelope.py) answers any of them with the JSON error envelope

    {"error": {"code": "not_found", "message": "...", "request_id": "...", "details": {...}}}

and the status `status_of` gives. This module imports nothing: every layer may use it.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error with a stable machine-readable code and a message safe to show users.

    Messages are written in English; chatbot/data/api_errors.json words them in the
    user's other languages. `details` is extra data for the client (e.g. which fields
    are invalid); `retry_after` the seconds after which trying again makes sense.
    """

    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        # A rate limit's `details.retryAfterSeconds` says it too.
        if retry_after is None and isinstance(details, dict):
            retry_after = details.get("retryAfterSeconds")
        self.retry_after = retry_after


class InvalidInputError(AppError):
    """The input cannot be used as sent (bad JSON, a failed validation, a wrong code)."""

    code = "bad_request"


class InvalidCursorError(InvalidInputError):
    """A page cursor that this service did not hand out."""

    code = "invalid_cursor"


class UnsupportedMediaTypeError(AppError):
    """A body in a format the API does not take."""

    code = "unsupported_media_type"


class UnauthorizedError(AppError):
    """No identity, or one that is no longer valid."""

    code = "unauthorized"


class ForbiddenError(AppError):
    """A known identity without the role this needs."""

    code = "forbidden"


class NotFoundError(AppError):
    """No such thing, or one the caller may not see (the two are not told apart)."""

    code = "not_found"


class ConflictError(AppError):
    """The request contradicts the current state."""

    code = "conflict"


class BusyError(ConflictError):
    """The user's previous message is still being processed."""

    code = "busy"


class RateLimitedError(AppError):
    """Too many of something (e.g. one-time codes to one number) for now."""

    code = "rate_limited"


class ServiceUnavailableError(AppError):
    """A dependency (the database, Redis) cannot answer now; worth retrying shortly."""

    code = "service_unavailable"


class DuplicateMessageError(Exception):
    """An inbound message with this clientMessageId already exists (repository to service;
    the service answers the stored turn instead, so it never reaches a client)."""


class InvalidPhoneError(ValueError):
    """Not a phone number in E.164 or Indonesian local form (a ValueError, so pydantic
    validators report it as a validation error)."""


class BankError(ValueError):
    """The bank file is not a valid question bank; the message lists every problem."""


# The HTTP status of each error above; a subclass answers its nearest listed ancestor's.
STATUSES: dict[type[AppError], int] = {
    AppError: 400,
    InvalidInputError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    UnsupportedMediaTypeError: 415,
    RateLimitedError: 429,
    ServiceUnavailableError: 503,
}

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


def status_of(exc: AppError) -> int:
    """The HTTP status that answers `exc`."""
    for cls in type(exc).__mro__:
        if cls in STATUSES:
            return STATUSES[cls]
    return 500  # not reached: AppError is listed


# --- Not answered over HTTP: start-up and the operator's tools -------------------------


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class ReloadError(RuntimeError):
    """nginx refused the new configuration, or is not running (chatbot/ops)."""


class RestartError(RuntimeError):
    """A rolling restart could not drain, stop, start or re-admit an instance (chatbot/ops)."""
