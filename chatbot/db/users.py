"""Users: parents, health workers and admins, identified by phone number."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from chatbot.db.documents import oid, out

ROLES = ("parent", "health_worker", "admin")


class UserRepository:
    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.col = db["users"]

    def get(self, user_id: str) -> dict[str, Any] | None:
        return out(self.col.find_one({"_id": oid(user_id, "user")}))

    def by_phone(self, phone: str) -> dict[str, Any] | None:
        return out(self.col.find_one({"phoneNumber": phone}))

    def get_or_create(
        self, phone: str, now: datetime, language: str = "id", role: str = "parent"
    ) -> tuple[dict[str, Any], bool]:
        """Return (user, created). Safe against two first messages racing on one number."""
        existing = self.by_phone(phone)
        if existing:
            return existing, False
        doc = {
            "phoneNumber": phone,
            "role": role,
            "language": language,
            "consentAt": None,
            # Changing it invalidates every token issued before (see chatbot/auth.py).
            "tokenVersion": secrets.token_hex(8),
            "createdAt": now,
        }
        try:
            self.col.insert_one(doc)
        except DuplicateKeyError:
            existing = self.by_phone(phone)
            if existing is not None:
                return existing, False
            raise
        return out(doc), True

    def set_fields(self, user_id: str, **fields: Any) -> None:
        self.col.update_one({"_id": oid(user_id, "user")}, {"$set": fields})

    def rotate_token_version(self, user_id: str) -> str:
        version = secrets.token_hex(8)
        self.set_fields(user_id, tokenVersion=version)
        return version

    def phones_for(self, user_ids: list[str]) -> dict[str, str]:
        """{user id: phone number} for many users in one query."""
        ids = [oid(i, "user") for i in set(user_ids)]
        cursor = self.col.find({"_id": {"$in": ids}}, {"phoneNumber": 1})
        return {str(d["_id"]): d["phoneNumber"] for d in cursor}

    def set_role(self, phone: str, role: str, posyandu: list[str] | None = None) -> bool:
        """The role, and for a health worker the posyandu they serve (others: none)."""
        fields = {
            "role": role,
            "posyandu": sorted(set(posyandu or [])) if role == "health_worker" else [],
        }
        return self.col.update_one({"phoneNumber": phone}, {"$set": fields}).matched_count == 1
