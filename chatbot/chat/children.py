"""Children and their latest results, read from Redis first, MongoDB the source of truth.

`children:{userId}` holds a parent's active children and `child:{childId}` one child
with its 5 latest results: the children list and the child summary then cost no
database read while cached. Every write about a child goes through `changed`, which
invalidates both (tombstones, see chatbot/cache.py), so a new child, an archived
child or a finished screening shows at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatbot.cache import RedisCache
from chatbot.db import Database
from chatbot.db.children import ChildRepository
from chatbot.db.questionnaires import QuestionnaireRepository

RECENT = 5


class ChildDirectory:
    def __init__(
        self,
        db: Database[dict[str, Any]],
        cache: RedisCache,
        ttl_s: int,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.repo = ChildRepository(db)
        self.questionnaires = QuestionnaireRepository(db)
        self.cache = cache
        self.ttl_s = ttl_s
        # Told the user id after every change (the response cache bumps its counters).
        self.on_change = on_change

    def list_for_user(self, user_id: str) -> list[dict[str, Any]]:
        """The parent's active children, oldest first."""
        return self.cache.get_or_load(
            f"children:{user_id}", lambda: self.repo.list_for_user(user_id), self.ttl_s
        )

    def summary(self, child_id: str) -> dict[str, Any] | None:
        """{"child": ..., "recentScreenings": [...]} or None; ownership is the caller's check."""

        def load() -> dict[str, Any] | None:
            child = self.repo.get(child_id)
            if child is None:
                return None
            recent = self.questionnaires.recent_for_child(child_id, RECENT)
            return {"child": child, "recentScreenings": recent}

        return self.cache.get_or_load(f"child:{child_id}", load, self.ttl_s)

    def get_for_user(self, user_id: str, child_id: str) -> dict[str, Any] | None:
        """The user's child: from a cached summary, else one read (the summary is not built)."""
        found = self.cache.get(f"child:{child_id}")
        if found is None:
            return self.repo.get_for_user(user_id, child_id)
        return found["child"] if found["child"]["userId"] == user_id else None

    def changed(self, user_id: str, child_id: str | None = None) -> None:
        """Call after any write about the user's children (or one child)."""
        self.cache.invalidate(f"children:{user_id}")
        if child_id is not None:
            self.cache.invalidate(f"child:{child_id}")
        if self.on_change is not None:
            self.on_change(user_id)
