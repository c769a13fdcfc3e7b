"""WhatsApp message templates: the only messages Meta delivers outside the 24-hour window.

The service's templates are data (chatbot/data/whatsapp_templates.json): a key the code
uses (`screening_due`), the name it is approved under at Meta, its parameters in order
and its body per language, as submitted for approval. What an account had approved is
configuration: WHATSAPP_TEMPLATE_LANGUAGES (the approved translations, the first one the
fallback) and WHATSAPP_TEMPLATE_NAMES (`key=name,...` where a name differs). Nothing
here does I/O beyond reading the data file once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chatbot.errors import ConfigError

TEMPLATES_FILE = Path(__file__).resolve().parent.parent / "data" / "whatsapp_templates.json"
PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")
PARAMETER_LIMIT = 1024  # Meta's limit on one body parameter's text


class TemplateConfigError(ConfigError):
    """WHATSAPP_TEMPLATE_NAMES or WHATSAPP_TEMPLATE_LANGUAGES names something unknown."""


@cache
def _load(path: Path) -> dict[str, dict[str, Any]]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


@dataclass(frozen=True)
class Rendered:
    body: dict[str, Any]  # the Graph API message
    text: str  # what the parent reads, for the history
    language: str


class Templates:
    def __init__(self, languages: str, names: str = "", path: Path = TEMPLATES_FILE) -> None:
        self._templates = _load(path)
        self.languages = [code.strip() for code in languages.split(",") if code.strip()]
        if not self.languages:
            raise TemplateConfigError("WHATSAPP_TEMPLATE_LANGUAGES names no language")
        for key, template in self._templates.items():
            missing = [code for code in self.languages if code not in template["body"]]
            if missing:
                raise TemplateConfigError(
                    f"template {key} has no body in {', '.join(missing)} ({path.name})"
                )
        self.names = {key: t["name"] for key, t in self._templates.items()}
        for pair in filter(None, (p.strip() for p in names.split(","))):
            key, _, name = pair.partition("=")
            if key.strip() not in self.names or not name.strip():
                raise TemplateConfigError(
                    f"WHATSAPP_TEMPLATE_NAMES: {pair!r} is not key=name with a key of "
                    f"{', '.join(sorted(self.names))}"
                )
            self.names[key.strip()] = name.strip()

    def available(self) -> list[str]:
        return sorted(self._templates)

    def parameters(self, key: str) -> list[str]:
        return list(self._templates[key]["parameters"])

    def render(self, to: str, key: str, language: str, values: dict[str, str]) -> Rendered:
        """The template `key` for `to` in `language` (or the first approved one)."""
        template = self._templates[key]
        code = language if language in self.languages else self.languages[0]
        missing = [p for p in template["parameters"] if not values.get(p)]
        if missing:
            raise ValueError(f"template {key} needs {', '.join(missing)}")
        # Meta refuses a parameter with a newline, a tab or a run of spaces (132000 family).
        params = [
            " ".join(str(values[p]).split())[:PARAMETER_LIMIT] for p in template["parameters"]
        ]
        text = PLACEHOLDER.sub(lambda m: params[int(m.group(1)) - 1], template["body"][code])
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {
                "name": self.names[key],
                "language": {"code": code},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}
                ],
            },
        }
        return Rendered(body, text, code)
