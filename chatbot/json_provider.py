"""The app's JSON: dates in ISO 8601, keys in the order the views wrote them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask.json.provider import DefaultJSONProvider


class JSONProvider(DefaultJSONProvider):
    """ISO 8601 dates in JSON (Flask's default is the HTTP date format)."""

    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, (datetime, date)):
            return o.isoformat()
        return DefaultJSONProvider.default(o)
