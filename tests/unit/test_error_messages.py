"""Every error message a parent can meet has its wording in the catalogue."""

import json
import re
import string
from pathlib import Path

from chatbot.envelope import MESSAGES_FILE, _pattern
from chatbot.errors import HTTP_CODES

CATALOGUE = json.loads(MESSAGES_FILE.read_text(encoding="utf-8"))
PACKAGE = Path(__file__).resolve().parents[2] / "chatbot"
# The modules on a parent's path: identity, chat, children, the body parser, the database.
PARENT_PATH = [
    PACKAGE / "auth.py",
    PACKAGE / "api" / "auth.py",
    PACKAGE / "errors.py",
    PACKAGE / "envelope.py",
    PACKAGE / "api" / "__init__.py",
    PACKAGE / "api" / "chat.py",
    PACKAGE / "api" / "children.py",
    *(PACKAGE / "chat").glob("*.py"),
    *(PACKAGE / "db").glob("*.py"),
]
RAISED = re.compile(
    r"(?:ApiError|[A-Z]\w*Error)\(\s*f?\"((?:[^\"\\]|\\.)+)\"", re.MULTILINE
)  # the first argument of an error's constructor
# SendDeferredError: the WhatsApp queue's own signal to retry a send (never an answer);
# NotificationQueuedError: the channel's own "queued already" (notify answers None).
NOT_API = {"ValueError", "KeyError", "TypeError", "RuntimeError", "SendDeferredError",
           "NotificationQueuedError"}  # fmt: skip


def raised_messages():
    found = set()
    for path in PARENT_PATH:
        source = path.read_text()
        for match in RAISED.finditer(source):
            if any(source[match.start() :].startswith(n) for n in NOT_API):
                continue
            found.add(match.group(1))
    return found


def fields(text):
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_message_a_parent_can_meet_is_worded():
    messages = raised_messages()
    assert len(messages) >= 15  # the pattern does find them
    patterns = [_pattern(english) for english in CATALOGUE["messages"]]
    for message in messages:
        sample = re.sub(r"\{[^}]*\}", "X", message)  # an f-string's parts vary
        assert any(p.fullmatch(sample) for p in patterns), message


def test_every_wording_names_only_what_its_message_has():
    for english, wordings in CATALOGUE["messages"].items():
        assert wordings, english
        for text in wordings.values():
            assert fields(text) <= fields(english), english


def test_every_http_code_is_worded():
    assert set(HTTP_CODES.values()) <= set(CATALOGUE["codes"])
    languages = {lang for w in CATALOGUE["messages"].values() for lang in w}
    for code, wordings in CATALOGUE["codes"].items():
        assert set(wordings) == languages, code
