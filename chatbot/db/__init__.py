"""The data layer: the only package that imports pymongo or bson."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

import pymongo
from flask import Flask, g, request
from flask.typing import ResponseReturnValue
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from chatbot.db.mongo import Mongo
from chatbot.errors import ServiceUnavailableError, handle_api_error, handle_unexpected

# Re-exported so the layers above can type and catch them without importing pymongo.
DatabaseError = PyMongoError
__all__ = ["Database", "DatabaseError", "Mongo", "deadline", "init_app", "own_deadline"]

log = logging.getLogger(__name__)


def deadline(seconds: float) -> contextlib.AbstractContextManager:
    """Every database call inside must finish within `seconds` in all (PyMongo's timeout).

    Nested deadlines never extend an outer one.
    """
    return pymongo.timeout(seconds)


def own_deadline(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that sets its own database deadline (e.g. after waiting for a lock)."""
    view.own_deadline = True  # type: ignore[attr-defined]
    return view


# FerretDB answers every command with InternalError (code 1) while its own storage,
# PostgreSQL, is down or restarting; the message carries the SQLSTATE. Connection
# exceptions (class 08), shutdown / cannot connect now (57P0x), too many connections.
_STORAGE_DOWN = re.compile(r"failed to connect|SQLSTATE (08\w{3}|57P0\d|53300)")


def storage_unavailable(exc: PyMongoError) -> bool:
    """Whether `exc` means the database cannot answer now (rather than a bug)."""
    if isinstance(exc, ConnectionFailure) or exc.timeout:
        return True
    return (
        isinstance(exc, OperationFailure) and exc.code == 1 and bool(_STORAGE_DOWN.search(str(exc)))
    )


def _database_error(exc: PyMongoError) -> ResponseReturnValue:
    """Unreachable, or the deadline passed: 503. Anything else is a bug: 500."""
    if not storage_unavailable(exc):
        return handle_unexpected(exc)
    log.warning("database unavailable: %s", type(exc).__name__)
    return handle_api_error(
        ServiceUnavailableError("The database is unavailable; try again shortly."), logged=True
    )


def init_app(app: Flask, request_timeout_s: float) -> None:
    """Give every request a database deadline, and answer 503 when it cannot be met.

    A frozen or unreachable database then costs a request about `request_timeout_s`,
    not the socket timeout (5 s) once per call.
    """

    @app.before_request
    def _start_deadline() -> None:
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and getattr(view, "own_deadline", False):
            return
        stack = contextlib.ExitStack()
        stack.enter_context(deadline(request_timeout_s))
        g.db_deadline = stack

    @app.teardown_request
    def _end_deadline(_exc: BaseException | None) -> None:
        stack = g.pop("db_deadline", None)
        if stack is not None:
            stack.close()

    app.register_error_handler(PyMongoError, _database_error)
