"""A database deadline for every request, so a frozen database costs a request a bounded time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, g, request

from chatbot.db import deadline

V = TypeVar("V", bound=Callable[..., Any])
# The mark `own_deadline` sets on a view, read per request.
_OWN_DEADLINE = "own_deadline"


def own_deadline(view: V) -> V:
    """Mark a view that sets its own database deadline (e.g. after waiting for a lock)."""
    setattr(view, _OWN_DEADLINE, True)
    return view


def init_app(app: Flask, request_timeout_s: float) -> None:
    """Give every request a database deadline (a database error then answers 503, see
    chatbot/envelope.py).

    A frozen or unreachable database then costs a request about `request_timeout_s`,
    not the socket timeout (5 s) once per call.
    """

    @app.before_request
    def _start_deadline() -> None:
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and getattr(view, _OWN_DEADLINE, False):
            return
        stack = contextlib.ExitStack()
        stack.enter_context(deadline(request_timeout_s))
        g.db_deadline = stack

    @app.teardown_request
    def _end_deadline(_exc: BaseException | None) -> None:
        stack = g.pop("db_deadline", None)
        if stack is not None:
            stack.close()
