"""The Redis copies behind the hot reads agree with MongoDB and follow every write."""

from __future__ import annotations

import pytest

from chatbot.extensions import mongo, redis_store
from tests.support import TODDLER, ApiChat

pytestmark = pytest.mark.integration


def history(chat: ApiChat, limit: int = 100) -> dict:
    response = chat.get(f"/api/v1/chat/messages?limit={limit}")
    assert response.status_code == 200
    return response.get_json()


def test_first_history_page_from_redis_equals_the_database_and_follows_each_turn(app):
    # The data under the responses: whole responses are cached too (test_response_cache.py).
    app.config["RESPONSE_CACHE_ENABLED"] = False
    chat = ApiChat(app.test_client(), "081300000401")
    chat.say("halo")
    first = history(chat)  # a miss: built from MongoDB and kept in Redis
    with app.app_context():
        user_id = mongo.db["users"].find_one({"phoneNumber": "+6281300000401"})["_id"]
        key = redis_store.key("history", str(user_id))
        assert redis_store.client.llen(key) == len(first["messages"])
    added = 0
    for text in ("ya", "1", "Budi"):
        chat.say(text)
        added += 1 + len(chat.last["replies"])
    cached = history(chat)
    assert cached["messages"][0]["text"] == chat.last["replies"][-1]["text"]
    assert len(cached["messages"]) == len(first["messages"]) + added  # no turn missing
    reply_ids = [r["id"] for r in chat.last["replies"]]
    chat.client.post("/api/v1/chat/receipts", json={"messageIds": reply_ids}, headers=chat.headers)
    cached = history(chat)
    redis_store.client.delete(key)
    rebuilt = history(chat)  # the same page read from MongoDB
    assert cached == rebuilt
    assert {m["status"] for m in rebuilt["messages"] if m["id"] in reply_ids} == {"delivered"}
    assert {m["status"] for m in rebuilt["messages"] if m["direction"] == "inbound"} == {"handled"}
    # Smaller pages come from the same list, with a cursor into MongoDB for the rest.
    page = history(chat, limit=3)
    rest = chat.get(f"/api/v1/chat/messages?limit=100&cursor={page['nextCursor']}").get_json()
    assert [m["id"] for m in page["messages"] + rest["messages"]] == [
        m["id"] for m in rebuilt["messages"]
    ]


def test_child_list_and_summary_follow_a_new_child_and_a_finished_screening(app):
    chat = ApiChat(app.test_client(), "081300000402")
    chat.register_with_child("Budi", TODDLER)
    [budi] = chat.get("/api/v1/children").get_json()["children"]
    before = chat.get(f"/api/v1/children/{budi['id']}").get_json()
    assert before["recentScreenings"] == [] and before["child"]["lastScreening"] is None
    chat.say("ya")
    chat.answer_all(["ya"] * 10)
    after = chat.get(f"/api/v1/children/{budi['id']}").get_json()
    assert [s["riskLevel"] for s in after["recentScreenings"]] == ["low"]
    assert after["child"]["lastScreening"]["riskLevel"] == "low"
    for text in ("2", "Sari", TODDLER, "2", "38"):
        chat.say(text)
    names = [c["name"] for c in chat.get("/api/v1/children").get_json()["children"]]
    assert names == ["Budi", "Sari"]


def test_a_role_change_reaches_a_cached_user_at_once(app):
    chat = ApiChat(app.test_client(), "081300000403")
    chat.say("halo")
    assert chat.get("/api/v1/worker/stats").status_code == 403  # the user is now cached
    result = app.test_cli_runner().invoke(
        args=["chatbot", "grant-role", "081300000403", "health_worker"]
    )
    assert result.exit_code == 0, result.output
    assert chat.get("/api/v1/worker/stats").status_code == 200
