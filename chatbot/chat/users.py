"""The users behind tokens, read from Redis first (`user:{id}`), MongoDB the source of truth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from chatbot.cache import RedisCache
from chatbot.db import Database
from chatbot.db.users import UserRepository

# A number's user id is for good; a day bounds what a deleted user's number keeps cached.
PHONE_TTL_S = 86_400


class UserDirectory:
    """Every read of a user by id, and every write to one, goes through here.

    Reads: Redis, then MongoDB on a miss (cached for `ttl_s`). Writes go to MongoDB
    first; the cached copy is then merged (the conversation's own changes, made under
    the user's lock) or invalidated (token rotation, role change), so a changed
    token version or role is never served from the cache.
    """

    def __init__(
        self,
        db: Database[dict[str, Any]],
        cache: RedisCache,
        ttl_s: int,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.repo = UserRepository(db)
        self.cache = cache
        self.ttl_s = ttl_s
        # Told the user id after a role change (the response cache bumps its counters).
        self.on_change = on_change

    @staticmethod
    def _key(user_id: str) -> str:
        return f"user:{user_id}"

    def get(self, user_id: str) -> dict[str, Any] | None:
        return self.get_with(user_id, [])[0]

    def get_with(
        self, user_id: str, also: list[str]
    ) -> tuple[dict[str, Any] | None, list[Any] | None]:
        """The user, and the Redis values of `also` read in the same round trip
        (None when Redis could not be read)."""
        values = self.cache.get_many([self._key(user_id), *also], counted=1)
        user, extra = (values[0], values[1:]) if values is not None else (None, None)
        if user is None:
            user = self.repo.get(user_id)
            if user is not None and values is not None:
                self.cache.set(self._key(user_id), user, self.ttl_s, only_if_absent=True)
        return user, extra

    def by_phone_or_create(self, phone: str, now: datetime) -> dict[str, Any]:
        """The user of this number, made on first contact (a WhatsApp message): the
        number's user id from Redis (`phone:{number}`, it never changes), then the user by
        id as above; MongoDB (a scan of `users` on FerretDB) only on a miss."""
        key = f"phone:{phone}"
        cached = self.cache.get_many([key], counted=1)
        user_id = cached[0] if cached else None
        user = self.get(user_id) if isinstance(user_id, str) else None
        if user is None:
            user, _ = self.repo.get_or_create(phone, now)
            if cached is not None:
                self.cache.set(key, user["id"], PHONE_TTL_S)
        return user

    def set_fields(self, user_id: str, **fields: Any) -> None:
        self.repo.set_fields(user_id, **fields)
        self.cache.update(self._key(user_id), fields, self.ttl_s)

    def rotate_token_version(self, user_id: str) -> None:
        self.repo.rotate_token_version(user_id)
        self.cache.invalidate(self._key(user_id))

    def set_role(self, phone: str, role: str, posyandu: list[str] | None = None) -> bool:
        user = self.repo.by_phone(phone)
        if user is None or not self.repo.set_role(phone, role, posyandu):
            return False
        self.cache.invalidate(self._key(user["id"]))
        if self.on_change is not None:
            self.on_change(user["id"])
        return True
