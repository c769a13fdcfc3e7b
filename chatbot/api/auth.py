"""The request side of identity: this request's bearer token, and `auth_required` for views.

Tokens, codes and senders themselves are chatbot/auth.py, which knows no request.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import current_app, g, request
from flask_limiter.util import get_remote_address

from chatbot.db import deadline
from chatbot.errors import ForbiddenError, UnauthorizedError
from chatbot.services import services

P = ParamSpec("P")
R = TypeVar("R")


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
                g.bearer_claims = services().tokens.read(token.strip())
            except UnauthorizedError as exc:
                g.bearer_claims = exc
    if isinstance(g.bearer_claims, UnauthorizedError):
        raise g.bearer_claims
    claims: tuple[str, str] = g.bearer_claims
    return claims


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


def auth_required(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid bearer token (and one of `roles`, if given); sets g.user."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            user_id, version = bearer_claims()
            settings = current_app.config["SETTINGS"]
            responses = current_app.extensions["chatbot.responses"]
            with deadline(settings.mongo_request_timeout_s):
                # One Redis round trip: the user and the response cache's counters.
                user, counters = services().users.get_with(
                    user_id, responses.prefetch_keys(user_id)
                )
            responses.remember_prefetched(user_id, counters)
            if user is None or not hmac.compare_digest(str(user.get("tokenVersion")), str(version)):
                raise UnauthorizedError("The token is no longer valid; start the chat again.")
            if roles and user["role"] not in roles:
                raise ForbiddenError("This needs a health-worker or admin token.")
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorator
