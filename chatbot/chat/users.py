"""The users behind tokens, read from Redis first (`user:{id}`), MongoDB the source of truth."""

from __future__ import annotations

from typing import Any

from chatbot.cache import RedisCache
from chatbot.db import Database
from chatbot.db.users import UserRepository


class UserDirectory:
    """Every read of a user by id, and every write to one, goes through here.

    Reads: Redis, then MongoDB on a miss (cached for `ttl_s`). Writes go to MongoDB
    first; the cached copy is then merged (the conversation's own changes, made under
    the user's lock) or invalidated (token rotation, role change), so a changed
    token version or role is never served from the cache.
    """

    def __init__(self, db: Database, cache: RedisCache, ttl_s: int) -> None:
        self.repo = UserRepository(db)
        self.cache = cache
        self.ttl_s = ttl_s

    @staticmethod
    def _key(user_id: str) -> str:
        return f"user:{user_id}"

    def get(self, user_id: str) -> dict[str, Any] | None:
        user = self.cache.get(self._key(user_id))
        if user is not None:
            return user
        user = self.repo.get(user_id)
        if user is not None:
            self.cache.set(self._key(user_id), user, self.ttl_s, only_if_absent=True)
        return user

    def set_fields(self, user_id: str, **fields: Any) -> None:
        self.repo.set_fields(user_id, **fields)
        self.cache.update(self._key(user_id), fields, self.ttl_s)

    def rotate_token_version(self, user_id: str) -> None:
        self.repo.rotate_token_version(user_id)
        self.cache.invalidate(self._key(user_id))

    def set_role(self, phone: str, role: str) -> bool:
        user = self.repo.by_phone(phone)
        if user is None or not self.repo.set_role(phone, role):
            return False
        self.cache.invalidate(self._key(user["id"]))
        return True
