"""Bearer tokens for the web chat and role APIs, and one-time codes for phone numbers.

A token names a user and that user's current `tokenVersion`; verifying a phone
number with a one-time code rotates the version, so tokens issued earlier (for
example to someone who typed another person's number first) stop working.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol

from flask import current_app, g, request
from flask_limiter.util import get_remote_address
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.utils import import_string

from chatbot.chat.users import UserDirectory
from chatbot.db import deadline
from chatbot.errors import ApiError
from chatbot.extensions import mongo
from chatbot.phone import mask_phone

log = logging.getLogger(__name__)


class UnauthorizedError(ApiError):
    status = 401
    code = "unauthorized"


class ForbiddenError(ApiError):
    status = 403
    code = "forbidden"


class CodeSender(Protocol):
    """Delivers a one-time code to a phone (SMS, WhatsApp, ...)."""

    def send(self, phone: str, code: str, language: str) -> None: ...


class LogCodeSender:
    """Development sender: writes the code to the log instead of sending it.

    The code is the one secret a log line may carry, here only, because showing it is
    this sender's whole purpose (production refuses it unless ALLOW_LOG_CODE_SENDER=1);
    the phone number is masked like everywhere else.
    """

    def send(self, phone: str, code: str, language: str) -> None:
        masked = mask_phone(phone)
        log.warning(
            "one-time code for %s: %s",
            masked,
            code,
            extra={"otp_code": code, "phone": masked},
        )


def load_sender(path: str) -> CodeSender:
    """Import `module:Class` (or module.Class) and instantiate it."""
    return import_string(path.replace(":", "."))()


class Tokens:
    def __init__(self, secret_key: str, max_age_s: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="chatbot.bearer")
        self.max_age_s = max_age_s

    def issue(self, user: dict[str, Any]) -> str:
        return self._serializer.dumps({"uid": user["id"], "v": user["tokenVersion"]})

    def read(self, token: str) -> tuple[str, str]:
        """Return (user id, token version) or raise UnauthorizedError."""
        try:
            data = self._serializer.loads(token, max_age=self.max_age_s)
        except SignatureExpired:
            raise UnauthorizedError("The token has expired; start the chat again.") from None
        except BadSignature:
            raise UnauthorizedError("The token is not valid.") from None
        return data["uid"], data["v"]


def hash_code(secret_key: str, challenge_id: str, code: str) -> str:
    return hmac.new(
        secret_key.encode(), f"{challenge_id}:{code}".encode(), hashlib.sha256
    ).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


STAFF_ROLES = ("health_worker", "admin")


def bearer_claims() -> tuple[str, str]:
    """(user id, token version) of this request's bearer token; raise UnauthorizedError.

    Checked once per request: the rate limiter's key and `auth_required` both ask.
    """
    if "bearer_claims" not in g:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            g.bearer_claims = UnauthorizedError(
                "Send the token as 'Authorization: Bearer <token>'."
            )
        else:
            try:
                g.bearer_claims = current_app.extensions["chatbot.tokens"].read(token.strip())
            except UnauthorizedError as exc:
                g.bearer_claims = exc
    if isinstance(g.bearer_claims, UnauthorizedError):
        raise g.bearer_claims
    return g.bearer_claims


def client_key() -> str:
    """Rate-limit per user when the request carries a genuine token (a clinic's parents
    share one address), else per client address (nginx's X-Forwarded-For via ProxyFix).

    Only a correctly signed token counts: made-up tokens must not buy fresh allowances.
    """
    try:
        user_id, _ = bearer_claims()
    except UnauthorizedError:
        return "ip:" + get_remote_address()
    return "u:" + user_id


def auth_required(*roles: str) -> Callable:
    """Require a valid bearer token (and one of `roles`, if given); sets g.user."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user_id, version = bearer_claims()
            settings = current_app.config["SETTINGS"]
            users = UserDirectory(
                mongo.db, current_app.extensions["chatbot.cache"], settings.session_cache_s
            )
            responses = current_app.extensions["chatbot.responses"]
            with deadline(settings.mongo_request_timeout_s):
                # One Redis round trip: the user and the response cache's counters.
                user, counters = users.get_with(user_id, responses.prefetch_keys(user_id))
            responses.remember_prefetched(user_id, counters)
            if user is None or not hmac.compare_digest(str(user.get("tokenVersion")), str(version)):
                raise UnauthorizedError("The token is no longer valid; start the chat again.")
            if roles and user["role"] not in roles:
                raise ForbiddenError("This needs a health-worker or admin token.")
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorator
