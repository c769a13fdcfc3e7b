"""A user's messages through two instances, one of which cannot reach Redis."""

from __future__ import annotations

import threading
import time

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


def test_only_the_instance_holding_the_lock_processes_a_users_turns(stack, blind_instance):
    seeing = HttpChat(f"http://127.0.0.1:{stack.apps[0].port}", "081300000301")
    for text in ("halo", "ya", "1", "Budi", TODDLER_TODAY, "1", "38", "ya"):
        seeing.say(text)
    blind = HttpChat(f"http://127.0.0.1:{blind_instance.port}", seeing.phone, seeing.token)
    statuses: dict[str, list[int]] = {"seeing": [], "blind": []}
    refused_in: list[float] = []

    def send(chat: HttpChat, name: str) -> None:
        for i in range(5):
            started = time.monotonic()
            reply = chat.send("ya", f"{name}-{i}-{seeing.phone}")
            statuses[name].append(reply.status)
            if name == "blind":
                refused_in.append(time.monotonic() - started)
                assert reply.headers.get("Retry-After"), reply.headers
                assert reply.json()["error"]["code"] == "service_unavailable"

    threads = [
        threading.Thread(target=send, args=(seeing, "seeing")),
        threading.Thread(target=send, args=(blind, "blind")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == {"seeing": [201] * 5, "blind": [503] * 5}, stack.logs()
    assert max(refused_in) < 1.0, refused_in
    # The blind instance still serves reads (the user comes from MongoDB there).
    assert blind.get("/api/v1/chat/messages?limit=5").status == 200
    uri = stack.apps[0].app_env["MONGO_URI"]
    with pymongo.MongoClient(uri) as client:
        db = client[stack.apps[0].app_env["MONGO_DB"]]
        user = db["users"].find_one({"phoneNumber": "+6281300000301"})
        questionnaire = db["questionnaires"].find_one(
            {"userId": user["_id"], "status": "in_progress"}
        )
        # The five answers of the lock holder, in order, none twice; nothing from the other.
        assert [a["number"] for a in questionnaire["answers"]] == [1, 2, 3, 4, 5]
        assert (
            db["messages"].count_documents({"userId": user["_id"], "turn": {"$regex": "^blind"}})
            == 0
        )
