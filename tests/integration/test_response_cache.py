"""Whole responses cached per user: keys, isolation, invalidation, ETags, compression."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace

import pytest

from chatbot import create_app
from chatbot.db.indexes import ensure_indexes
from chatbot.extensions import mongo, redis_store
from tests.support import TODDLER, ApiChat

pytestmark = pytest.mark.integration


def response_keys() -> list[bytes]:
    return list(redis_store.client.scan_iter(match=redis_store.key("cache:response:*")))


def test_responses_are_cached_as_json_under_response_keys_for_300_s(app):
    chat = ApiChat(app.test_client(), "081300000701")
    chat.register_with_child("Budi", TODDLER)
    first = chat.get("/api/v1/children")
    assert first.status_code == 200
    [key] = response_keys()
    ttl = redis_store.client.ttl(key)
    assert 290 < ttl <= 300
    stored = json.loads(redis_store.client.get(key))  # JSON, not pickle
    assert json.loads(stored["body"]) == first.get_json()
    again = chat.get("/api/v1/children")
    assert again.get_data() == first.get_data()
    assert app.extensions["chatbot.memory"].stats["hit"] >= 1


def test_one_users_response_is_never_served_to_another(app):
    client = app.test_client()
    ana = ApiChat(client, "081300000702")
    ana.register_with_child("Ana", TODDLER)
    bob = ApiChat(client, "081300000703")
    bob.register_with_child("Bob", TODDLER)
    for _ in range(2):  # the second round is served from the cache
        assert [c["name"] for c in ana.get("/api/v1/children").get_json()["children"]] == ["Ana"]
        assert [c["name"] for c in bob.get("/api/v1/children").get_json()["children"]] == ["Bob"]
        ana_history = ana.get("/api/v1/chat/messages").get_json()["messages"]
        assert "Ana" in {m["text"] for m in ana_history}
        assert "Bob" not in {m["text"] for m in ana_history}
    ana_child = ana.get("/api/v1/children").get_json()["children"][0]["id"]
    assert ana.get(f"/api/v1/children/{ana_child}").status_code == 200  # now cached for Ana
    assert bob.get(f"/api/v1/children/{ana_child}").status_code == 404


def test_every_write_by_or_about_the_user_shows_at_once(app):
    client = app.test_client()
    chat = ApiChat(client, "081300000704")
    chat.register_with_child("Budi", TODDLER)
    budi = chat.get("/api/v1/children").get_json()["children"][0]["id"]
    summary = chat.get(f"/api/v1/children/{budi}").get_json()
    assert summary["recentScreenings"] == []
    history = chat.get("/api/v1/chat/messages").get_json()["messages"]

    # A new message.
    chat.say("bantuan")
    newest = chat.get("/api/v1/chat/messages").get_json()["messages"]
    assert len(newest) == len(history) + 1 + len(chat.last["replies"])
    # A finished screening.
    chat.say("1")
    chat.answer_all(["ya"] * 10)
    summary = chat.get(f"/api/v1/children/{budi}").get_json()
    assert [s["riskLevel"] for s in summary["recentScreenings"]] == ["low"]
    questionnaire = summary["child"]["lastScreening"]["questionnaireId"]
    assert chat.get(f"/api/v1/questionnaires/{questionnaire}").get_json()["status"] == "completed"
    # A new child.
    for text in ("2", "Sari", TODDLER, "2", "38"):
        chat.say(text)
    names = [c["name"] for c in chat.get("/api/v1/children").get_json()["children"]]
    assert names == ["Budi", "Sari"]
    # An archived child.
    assert client.post(f"/api/v1/children/{budi}/archive", headers=chat.headers).status_code == 200
    names = [c["name"] for c in chat.get("/api/v1/children").get_json()["children"]]
    assert names == ["Sari"]
    assert chat.get(f"/api/v1/children/{budi}").get_json()["child"]["status"] == "archived"


def test_a_role_change_shows_at_once_in_what_the_user_may_see(app):
    client = app.test_client()
    parent = ApiChat(client, "081300000705")
    parent.register_with_child("Budi", TODDLER)
    parent.say("1")
    parent.answer_all(["tidak"] * 10)  # high risk: on the staff list
    budi = parent.get("/api/v1/children").get_json()["children"][0]["id"]
    worker = ApiChat(client, "081300000706")
    assert worker.get(f"/api/v1/children/{budi}").status_code == 404
    assert worker.get("/api/v1/worker/children").status_code == 403
    cli = app.test_cli_runner()
    assert cli.invoke(args=["chatbot", "add-posyandu", "SERUNI08", "Seruni"]).exit_code == 0
    parent.say("posyandu SERUNI08")
    assert cli.invoke(args=["chatbot", "grant-role", "081300000706", "admin"]).exit_code == 0
    assert worker.get(f"/api/v1/children/{budi}").status_code == 200
    listed = worker.get("/api/v1/worker/children").get_json()["children"]
    assert [c["name"] for c in listed] == ["Budi"]
    # A screening of another parent's child reaches the (cached) staff list at once.
    other = ApiChat(client, "081300000707")
    other.register_with_child("Citra", TODDLER)
    other.say("1")
    other.answer_all(["tidak"] * 10)
    listed = worker.get("/api/v1/worker/children").get_json()["children"]
    assert sorted(c["name"] for c in listed) == ["Budi", "Citra"]
    # Made a health worker of Budi's posyandu: Citra (none) is gone from what they see.
    grant = ["chatbot", "grant-role", "081300000706", "health_worker", "--posyandu", "SERUNI08"]
    assert cli.invoke(args=grant).exit_code == 0
    listed = worker.get("/api/v1/worker/children").get_json()["children"]
    assert [c["name"] for c in listed] == ["Budi"]
    citra = other.get("/api/v1/children").get_json()["children"][0]["id"]
    assert worker.get(f"/api/v1/children/{citra}").status_code == 404


def test_etag_304_cache_control_and_vary(app):
    chat = ApiChat(app.test_client(), "081300000708")
    chat.register_with_child("Budi", TODDLER)
    first = chat.get("/api/v1/children")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    vary = {v.strip().lower() for v in first.headers["Vary"].split(",")}
    assert {"authorization", "accept-encoding", "x-no-compression"} <= vary
    same = chat.client.get("/api/v1/children", headers={**chat.headers, "If-None-Match": etag})
    assert same.status_code == 304 and same.get_data() == b""
    for text in ("tidak", "2", "Sari", TODDLER, "2", "38"):  # another child: a new list
        chat.say(text)
    changed = chat.client.get("/api/v1/children", headers={**chat.headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_compression_from_1024_bytes_with_an_opt_out_and_etags_per_encoding(app):
    chat = ApiChat(app.test_client(), "081300000709")
    chat.register_with_child("Budi", TODDLER)  # the history is now well over 1 KiB
    gz = {**chat.headers, "Accept-Encoding": "gzip"}
    big = chat.client.get("/api/v1/chat/messages", headers=gz)
    assert big.headers["Content-Encoding"] == "gzip"
    plain = json.loads(gzip.decompress(big.get_data()))
    identity = chat.get("/api/v1/chat/messages")
    assert len(identity.get_data()) >= 1024 and identity.get_json() == plain
    assert "Content-Encoding" not in identity.headers
    opted_out = chat.client.get("/api/v1/chat/messages", headers={**gz, "X-No-Compression": "1"})
    assert "Content-Encoding" not in opted_out.headers
    small = chat.client.get("/api/v1/children", headers=gz)
    assert len(small.get_data()) < 1024 and "Content-Encoding" not in small.headers
    # Each encoding has its own ETag, and each revalidates.
    assert big.headers["ETag"] == identity.headers["ETag"][:-1] + ':gzip"'
    again = chat.client.get(
        "/api/v1/chat/messages", headers={**gz, "If-None-Match": big.headers["ETag"]}
    )
    assert again.status_code == 304
    again = chat.client.get(
        "/api/v1/chat/messages", headers={**chat.headers, "If-None-Match": identity.headers["ETag"]}
    )
    assert again.status_code == 304


def test_a_redis_outage_serves_from_the_database_and_nothing_stale_after(settings, own_redis):
    server = own_redis
    app = create_app(replace(settings, redis_url=server.url))
    with app.app_context():
        ensure_indexes(mongo.db)
    client = app.test_client()
    chat = ApiChat(client, "081300000710")
    chat.register_with_child("Budi", TODDLER)
    for text in ("tidak", "2", "Sari", TODDLER, "2", "38"):
        chat.say(text)
    children = chat.get("/api/v1/children").get_json()["children"]  # cached in both tiers
    assert [c["name"] for c in children] == ["Budi", "Sari"]
    server.stop()
    try:
        down = chat.get("/api/v1/children")
        assert down.status_code == 200 and down.get_json()["children"] == children
        # A write during the outage (the archive needs only MongoDB).
        archived = client.post(
            f"/api/v1/children/{children[0]['id']}/archive", headers=chat.headers
        )
        assert archived.status_code == 200
        assert [c["name"] for c in chat.get("/api/v1/children").get_json()["children"]] == ["Sari"]
        # A turn takes a MongoDB lease instead of the Redis lock (chatbot/chat/locks.py).
        turn = chat.send("bantuan")
        assert turn.status_code == 201, turn.get_data(as_text=True)
    finally:
        server.start()
    # Redis is back with its old entries: none of them is served.
    import time

    time.sleep(app.config["SETTINGS"].redis_breaker_reset_s + 0.1)
    for _ in range(3):
        names = [c["name"] for c in chat.get("/api/v1/children").get_json()["children"]]
        assert names == ["Sari"]
        history = chat.get("/api/v1/chat/messages?limit=5").get_json()
        assert "bantuan" in [m["text"] for m in history["messages"]]
    server.stop()


def test_with_every_cache_off_nothing_is_kept_and_answers_are_the_same(settings):
    app = create_app(replace(settings, cache_enabled=False))
    with app.app_context():
        ensure_indexes(mongo.db)
    chat = ApiChat(app.test_client(), "081300000711")
    chat.register_with_child("Budi", TODDLER)
    for _ in range(2):
        response = chat.get("/api/v1/children")
        assert [c["name"] for c in response.get_json()["children"]] == ["Budi"]
        assert "ETag" not in response.headers  # not a cached response
    from chatbot.cache import TOMBSTONE

    prefix = redis_store.key("")
    kept = {
        k.decode().removeprefix(prefix)
        for k in redis_store.client.scan_iter(match=prefix + "*")
        if redis_store.client.type(k) != b"string"
        or redis_store.client.get(k) != TOMBSTONE.encode()  # invalidations still run
    }
    # What remains is not a cache: rate-limit counters and the response version counters.
    assert {k for k in kept if not k.startswith(("rl", "response:v:"))} == set()
    assert app.extensions["chatbot.memory"].stats == {}
