"""A user's messages through two instances, one of which cannot reach Redis."""

from __future__ import annotations

import threading

import pymongo
import pytest

from tests.harness import Gunicorn, free_port
from tests.support import TODDLER_TODAY, HttpChat

pytestmark = pytest.mark.e2e


@pytest.fixture
def blind_instance(stack, tmp_path):
    """A third instance of the stack's deployment that cannot reach Redis (a partition)."""
    env = dict(stack.apps[0].app_env, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    app = Gunicorn(tmp_path / "blind", "blind", env)
    app.start()
    yield app
    app.stop()


def test_both_instances_answer_one_message_of_a_user_at_a_time(stack, blind_instance):
    """The blind instance takes MongoDB leases (chatbot/chat/locks.py); the seeing one,
    once its outage watch has seen the window, takes the lease as well as the Redis lock:
    both answer, never two turns of the user at once, every answer once and in order."""
    seeing = HttpChat(f"http://127.0.0.1:{stack.apps[0].port}", "081300000301")
    for text in ("halo", "ya", "1", "Budi", TODDLER_TODAY, "1", "38", "ya"):
        seeing.say(text)
    blind = HttpChat(f"http://127.0.0.1:{blind_instance.port}", seeing.phone, seeing.token)
    statuses: dict[str, list[int]] = {"seeing": [], "blind": []}

    def send(chat: HttpChat, name: str) -> None:
        for i in range(4):
            reply = chat.send("ya", f"{name}-{i}-{seeing.phone}")
            statuses[name].append(reply.status)

    threads = [
        threading.Thread(target=send, args=(seeing, "seeing")),
        threading.Thread(target=send, args=(blind, "blind")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == {"seeing": [201] * 4, "blind": [201] * 4}, stack.logs()
    # The blind instance serves reads too (the user comes from MongoDB there).
    assert blind.get("/api/v1/chat/messages?limit=5").status == 200
    uri = stack.apps[0].app_env["MONGO_URI"]
    with pymongo.MongoClient(uri) as client:
        db = client[stack.apps[0].app_env["MONGO_DB"]]
        user = db["users"].find_one({"phoneNumber": "+6281300000301"})
        questionnaire = db["questionnaires"].find_one(
            {"userId": user["_id"], "status": "in_progress"}
        )
        # Eight answers, in order, none twice: the turns never overlapped.
        assert [a["number"] for a in questionnaire["answers"]] == list(range(1, 9))
        for name in ("seeing", "blind"):
            handled = db["messages"].count_documents(
                {"userId": user["_id"], "turn": {"$regex": f"^{name}"}, "direction": "inbound"}
            )
            assert handled == 4
        assert db["leases"].count_documents({}) == 0  # every lease given back
