"""House rule: only the data layer (chatbot/db) imports pymongo or bson."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "chatbot"
IMPORT = re.compile(r"^\s*(from|import)\s+(pymongo|bson)\b", re.MULTILINE)


def test_only_the_data_layer_imports_pymongo_or_bson():
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "db" not in path.relative_to(PACKAGE).parts[:1] and IMPORT.search(path.read_text())
    ]
    assert offenders == []


def test_the_screening_domain_imports_no_framework():
    framework = re.compile(r"^\s*(from|import)\s+(flask|pymongo|bson|redis)\b", re.MULTILINE)
    offenders = [
        p.name for p in (PACKAGE / "screening").glob("*.py") if framework.search(p.read_text())
    ]
    assert offenders == []
