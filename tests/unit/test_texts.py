"""Every message the engine can send exists in both languages."""

import json
import re
from pathlib import Path

from chatbot.screening.bank import DOMAINS
from chatbot.screening.engine import TEXTS_FILE
from chatbot.screening.scoring import RISK

TEXTS = json.loads(TEXTS_FILE.read_text(encoding="utf-8"))
ENGINE = (Path(__file__).resolve().parents[2] / "chatbot" / "screening" / "engine.py").read_text()


def test_every_text_has_both_languages():
    for key, entry in TEXTS.items():
        assert set(entry) == {"id", "en"}, key
        assert entry["id"].strip() and entry["en"].strip(), key


def test_placeholders_match_between_languages():
    for key, entry in TEXTS.items():
        fields = [set(re.findall(r"{(\w+)}", entry[lang])) for lang in ("id", "en")]
        assert fields[0] == fields[1], key


def test_every_key_the_engine_uses_exists():
    used = set(re.findall(r'\b(?:say|t)\(\s*"([a-z_]+)"', ENGINE))
    used |= {f"result_{c}" for c in RISK} | {f"category_{c}" for c in RISK}
    used |= {f"domain_{d}" for d in DOMAINS}
    used |= {f"action_{a}" for a in ("routine", "rescreen_2_weeks", "refer", "routine_none")}
    assert len(used) > 40  # the pattern does find the calls
    assert used - set(TEXTS) == set()
