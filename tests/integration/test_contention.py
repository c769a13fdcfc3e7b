"""One user's messages are processed one at a time (across instances: tests/e2e)."""

from __future__ import annotations

import threading

import pytest

from chatbot.extensions import mongo
from tests.support import TODDLER, ApiChat

pytestmark = pytest.mark.integration


def test_concurrent_messages_of_one_user_are_serialised(app):
    chat = ApiChat(app.test_client(), "081300000202")
    chat.register_with_child("Sari", TODDLER)
    chat.say("ya")
    statuses: list[int] = []

    def send(n: int) -> None:
        response = chat.client.post(
            "/api/v1/chat/messages",
            json={"text": "ya", "clientMessageId": f"par-{n}"},
            headers=chat.headers,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] * 6
    with app.app_context():
        questionnaire = mongo.db["questionnaires"].find_one({"status": "in_progress"})
        # Six answers sent in parallel: none lost, none recorded twice.
        assert [a["number"] for a in questionnaire["answers"]] == list(range(1, 7))
