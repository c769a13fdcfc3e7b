"""Every message the engine can send exists in every language, with the same placeholders."""

import json
import re
import string
from pathlib import Path

from chatbot.screening.bank import DOMAINS
from chatbot.screening.children import SLOTS
from chatbot.screening.engine import STEPS
from chatbot.screening.scoring import RISK
from chatbot.screening.texts import TEXTS_FILE
from chatbot.screening.words import load_vocabulary

TEXTS = json.loads(TEXTS_FILE.read_text(encoding="utf-8"))
# Where texts are used: the screening domain, and the channels' own (chatbot/chat/whatsapp.py).
PACKAGE = Path(__file__).resolve().parents[2] / "chatbot"
SOURCE = "\n".join(p.read_text() for p in sorted(PACKAGE.glob("**/*.py")))
LANGUAGES = set(load_vocabulary().languages)


def test_every_text_has_every_language():
    for key, entry in TEXTS.items():
        assert set(entry) == LANGUAGES, key
        assert all(text.strip() for text in entry.values()), key


def test_placeholders_match_between_languages():
    for key, entry in TEXTS.items():
        fields = [
            {name for _, name, _, _ in string.Formatter().parse(text) if name}
            for text in entry.values()
        ]
        assert all(f == fields[0] for f in fields), key


def test_every_key_the_engine_uses_exists():
    used = set(re.findall(r'\b(?:say|text)\(\s*"([a-z_]+)"', SOURCE))
    used |= set(re.findall(r'(?:Prompt|label_key=|value_key=)\(?\s*"([a-z_]+)"', SOURCE))
    used |= {spec.prompt.key for spec in STEPS.values()}
    used |= {slot.invalid for slot in SLOTS}
    used |= {f"result_{c}" for c in RISK} | {f"category_{c}" for c in RISK}
    used |= {f"domain_{d}" for d in DOMAINS}
    used |= {f"action_{a}" for a in ("routine", "rescreen_2_weeks", "refer", "routine_none")}
    assert len(used) > 50  # the patterns do find the calls
    assert used - set(TEXTS) == set()


def test_every_text_is_used():
    dynamic = re.compile(r"^(result|category|domain|action)_")
    unused = {
        key
        for key in TEXTS
        if not dynamic.match(key) and not re.search(rf'"{re.escape(key)}"', SOURCE)
    }
    assert unused == set()
