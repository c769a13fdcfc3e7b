"""The data layer: the only package that imports pymongo or bson."""

from __future__ import annotations

import contextlib
import re

import pymongo
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from chatbot.db.mongo import Mongo

# Re-exported so the layers above can type and catch them without importing pymongo.
DatabaseError = PyMongoError
__all__ = ["Database", "DatabaseError", "Mongo", "deadline", "storage_unavailable"]


def deadline(seconds: float) -> contextlib.AbstractContextManager[None]:
    """Every database call inside must finish within `seconds` in all (PyMongo's timeout).

    Nested deadlines never extend an outer one.
    """
    return pymongo.timeout(seconds)


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
