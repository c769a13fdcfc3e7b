"""Question banks by version: the shipped one, and those operators imported."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from chatbot.db import Database
from chatbot.db.banks import BankRepository
from chatbot.screening.bank import Bank, parse_bank, shipped_bank

ACTIVE_TTL_S = 30.0  # how long a worker trusts its idea of the active bank


class BankRegistry:
    """Banks are immutable per version, so each is parsed once per process."""

    def __init__(self, db: Callable[[], Database[dict[str, Any]]]) -> None:
        self._db = db
        self._banks: dict[str, Bank] = {}
        self._active: tuple[float, str | None] = (0.0, None)
        self._lock = threading.Lock()

    def get(self, version: str) -> Bank:
        shipped = shipped_bank()
        if version == shipped.version:
            return shipped
        bank = self._banks.get(version)
        if bank is None:
            data = BankRepository(self._db()).get(version)
            if data is None:
                raise KeyError(f"question bank {version!r} is not stored")
            bank = parse_bank(data)
            with self._lock:
                self._banks[version] = bank
        return bank

    def active(self) -> Bank:
        checked_at, version = self._active
        if time.monotonic() - checked_at > ACTIVE_TTL_S:
            version = BankRepository(self._db()).active_version()
            self._active = (time.monotonic(), version)
        return self.get(version) if version else shipped_bank()
