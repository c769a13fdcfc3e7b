"""Every message the bot sends, from chatbot/data/texts.json, one entry per language."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

TEXTS_FILE = Path(__file__).resolve().parent.parent / "data" / "texts.json"
# A language without its own wording of a message gets this one's.
FALLBACK_LANGUAGE = "id"


@cache
def _load_texts(path: Path) -> dict[str, dict[str, str]]:
    texts: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return texts


class Texts:
    """User-facing messages by key and language; the file is read once per process."""

    def __init__(self, path: Path = TEXTS_FILE) -> None:
        self._texts = _load_texts(path)

    def __call__(self, key: str, language: str, **values: Any) -> str:
        entry = self._texts[key]
        return entry.get(language, entry[FALLBACK_LANGUAGE]).format(**values)
