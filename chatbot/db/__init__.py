"""The data layer: the only package that imports pymongo or bson."""

from __future__ import annotations

import logging

from flask import Flask
from flask.typing import ResponseReturnValue
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

from chatbot.db.mongo import Mongo
from chatbot.errors import ServiceUnavailableError, handle_api_error

# Database is re-exported so the layers above can type it without importing pymongo.
__all__ = ["Database", "Mongo", "init_app"]

log = logging.getLogger(__name__)


def _database_unavailable(exc: ConnectionFailure) -> ResponseReturnValue:
    log.warning("database unavailable: %s", type(exc).__name__)
    return handle_api_error(
        ServiceUnavailableError("The database is unavailable; try again shortly.")
    )


def init_app(app: Flask) -> None:
    """Answer 503 in the common envelope when the database cannot be reached."""
    app.register_error_handler(ConnectionFailure, _database_unavailable)
