"""Posyandu (the village health posts) and what their health workers record about a child.

A posyandu is named by a short code the cadres hand out ("MAWAR01"); a parent links their
children with it (chatbot/screening/posyandu.py), an admin makes a health worker a
member of one or more (`users.posyandu`, chatbot/db/users.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from chatbot.db.documents import oid, out
from chatbot.errors import ConflictError

# Letters, digits and dashes, as written on a posyandu's card; stored upper-case.
CODE = re.compile(r"[A-Z0-9][A-Z0-9-]{1,19}")
CONTACT_KINDS = ("contacted", "referral_visited")


def normal_code(raw: str) -> str | None:
    """'mawar 01' -> 'MAWAR01'; None if it cannot be a code."""
    code = re.sub(r"\s+", "", raw).upper()
    return code if CODE.fullmatch(code) else None


class PosyanduRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["posyandu"]

    def add(self, code: str, name: str, now: datetime) -> dict[str, Any]:
        # The code is the _id: looked up by it on every link, a small collection.
        doc = {"_id": code, "name": name, "createdAt": now}
        try:
            self.col.insert_one(doc)
        except DuplicateKeyError:
            raise ConflictError(f"A posyandu with code {code} exists.") from None
        return self._out(doc)

    def get(self, code: str) -> dict[str, Any] | None:
        doc = self.col.find_one({"_id": code})
        return None if doc is None else self._out(doc)

    def list(self, codes: list[str] | None = None) -> list[dict[str, Any]]:
        """Every posyandu, or those of `codes`, by code."""
        query: dict[str, Any] = {} if codes is None else {"_id": {"$in": codes}}
        return [self._out(d) for d in self.col.find(query).sort("_id", ASCENDING)]

    @staticmethod
    def _out(doc: dict[str, Any]) -> dict[str, Any]:
        return {"code": doc["_id"], "name": doc["name"]}


class ContactRepository:
    """A health worker's "contacted" / "referral visited", with a note: the log of them
    (the child's history), and the newest on the child for the lists."""

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["contacts"]
        self.children = db["children"]

    def add(
        self, child_id: str, posyandu: str | None, kind: str, note: str, by: str, at: datetime
    ) -> dict[str, Any]:
        doc = {
            "childId": oid(child_id, "child"),
            "posyandu": posyandu,
            "kind": kind,
            "note": note,
            "byUserId": oid(by, "user"),
            "at": at,
        }
        self.col.insert_one(doc)
        contact = {"kind": kind, "note": note, "at": at}
        self.children.update_one({"_id": doc["childId"]}, {"$set": {"lastContact": contact}})
        return contact

    def for_child(self, child_id: str, limit: int = 50) -> list[dict[str, Any]]:
        cursor = (
            self.col.find({"childId": oid(child_id, "child")}, {"kind": 1, "note": 1, "at": 1})
            .sort([("at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [{k: v for k, v in out(d).items() if k != "id"} for d in cursor]
