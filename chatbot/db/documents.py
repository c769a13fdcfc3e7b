"""Conversions between MongoDB documents and the plain data the app uses.

Outside chatbot/db ids are strings and dates are `date`/`datetime`; BSON types stay here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, overload

from bson import ObjectId
from bson.errors import InvalidId

from chatbot.errors import NotFoundError


def oid(value: str, what: str = "resource") -> ObjectId:
    """Parse a string id; an invalid one is simply not found."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise NotFoundError(f"No such {what}.") from None


def to_datetime(d: date | datetime | None) -> datetime | None:
    """BSON has no date type: a calendar date is stored as midnight UTC."""
    if d is None or isinstance(d, datetime):
        return d
    return datetime.combine(d, time.min, tzinfo=UTC)


def to_date(d: datetime | date | None) -> date | None:
    if isinstance(d, datetime):
        return d.date()
    return d


# Overloaded so that a document stays a dict and a missing one stays None. No overload takes
# `dict | None`: a document type holds Any, and an Any argument that two overloads match
# would make the result Any; mypy splits the union over these two instead.
@overload
def out(doc: None, dates: tuple[str, ...] = ()) -> None: ...
@overload
def out(doc: dict[str, Any], dates: tuple[str, ...] = ()) -> dict[str, Any]: ...
def out(doc: dict[str, Any] | None, dates: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Document -> plain dict: `_id` becomes `id`, ObjectIds become strings,
    and the named fields become calendar dates."""
    if doc is None:
        return None
    result: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "_id":
            result["id"] = str(value)
        elif isinstance(value, ObjectId):
            result[key] = str(value)
        else:
            result[key] = value
    for key in dates:
        if key in result:
            result[key] = to_date(result[key])
    return result
