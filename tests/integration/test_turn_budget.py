"""What a chat turn costs the database, counted with PyMongo's command monitoring.

The budget (warm caches): an answer turn at most 3 writes and no read; any other
turn at most 5 writes and 1 read.
"""

from __future__ import annotations

import pytest

from chatbot.extensions import mongo
from tests.support import TODDLER, ApiChat, Commands

pytestmark = pytest.mark.integration


@pytest.fixture
def counted(app):
    commands = Commands()
    mongo.add_listener(commands)
    return commands


def turn(chat: ApiChat, commands: Commands, text: str, cmid: str | None = None):
    commands.take()
    response = chat.send(text, cmid)
    assert response.status_code in (200, 201), response.get_json()
    chat.last = response.get_json()
    return commands.take()


def test_each_kind_of_turn_keeps_to_its_database_budget(app, counted):
    banks = app.extensions["chatbot.services"].banks
    with app.app_context():
        banks.active()  # warm the worker's 30-second memory of which bank is active
    chat = ApiChat(app.test_client(), "081300000101")
    costs = {}
    costs["greeting"] = turn(chat, counted, "halo")
    costs["consent"] = turn(chat, counted, "ya")
    costs["language"] = turn(chat, counted, "1")
    costs["child name"] = turn(chat, counted, "Budi")
    costs["child birth"] = turn(chat, counted, TODDLER)
    costs["child sex"] = turn(chat, counted, "1")
    costs["child gestation"] = turn(chat, counted, "38")
    with app.app_context():
        banks.active()  # still warm, however slowly the machine ran the turns above
    costs["start screening"] = turn(chat, counted, "ya")
    assert chat.last["step"] == "question"
    answers = [turn(chat, counted, "ya") for _ in range(9)]
    assert chat.last["step"] == "question"
    costs["result"] = turn(chat, counted, "ya")
    assert chat.last["step"] == "menu"
    assert "sesuai" in "\n".join(r["text"] for r in chat.last["replies"]).lower()
    first = chat.last["message"]["clientMessageId"]
    costs["duplicate"] = turn(chat, counted, "ya", cmid=first)
    assert chat.last["duplicate"] is True
    for text, (writes, reads, seen) in costs.items():
        print(f"{text:16} writes={writes} reads={reads} {seen}")
    for n, (writes, reads, seen) in enumerate(answers, 1):
        print(f"answer {n:<9} writes={writes} reads={reads} {seen}")

    # The user's first message finds nothing cached yet; every later turn is warm.
    for kind in ("consent", "child name", "child birth", "child sex", "child gestation"):
        writes, reads, _ = costs[kind]
        assert writes <= 5 and reads <= 1, (kind, costs[kind])
    for kind in ("start screening", "result", "duplicate"):
        writes, reads, _ = costs[kind]
        assert writes <= 5 and reads <= 1, (kind, costs[kind])
    for writes, reads, seen in answers:
        assert writes <= 3 and reads == 0, seen
    # A duplicate is answered from what was stored: one (refused) insert, one read.
    assert costs["duplicate"][2] == {"insert": 1, "find": 1}
