"""Indexes read back from the server, expiry and the sweep, locks, banks, roles."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatbot.cli import run_sweep
from chatbot.db.indexes import ensure_indexes, server_has_ttl
from chatbot.db.questionnaires import QuestionnaireRepository
from chatbot.db.users import UserRepository
from chatbot.extensions import mongo, redis_store
from chatbot.screening.bank import SHIPPED_BANK
from tests.support import TODDLER, ApiChat, born_ago

pytestmark = pytest.mark.integration

SEED = {
    "users": [([("phoneNumber", 1)], True), ([("role", 1)], False)],
    "children": [([("userId", 1)], False), ([("status", 1)], False)],
    "questionnaires": [([("childId", 1)], False), ([("riskLevel", 1)], False)],
    "messages": [([("userId", 1), ("createdAt", -1)], False), ([("status", 1)], False)],
    "sessions": [([("userId", 1)], True), ([("expiresAt", 1)], False)],
}


def test_seed_indexes_exist_on_the_server_exactly(app):
    with app.app_context():
        for collection, expected in SEED.items():
            info = mongo.db[collection].index_information()
            keys = {
                tuple((k, int(d)) for k, d in v["key"]): bool(v.get("unique"))
                for v in info.values()
            }
            for key, unique in expected:
                assert keys.get(tuple(key)) is unique, (collection, key, keys)
        messages = mongo.db["messages"].index_information()
        assert messages["userId_1_clientMessageId_1"]["unique"]
        questionnaires = mongo.db["questionnaires"].index_information()
        assert questionnaires["childId_1_completedAt_-1"]["key"] == [
            ("childId", 1),
            ("completedAt", -1),
        ]


def test_index_creation_is_idempotent(app):
    with app.app_context():
        before = {c: sorted(mongo.db[c].index_information()) for c in SEED}
        ensure_indexes(mongo.db)
        ensure_indexes(mongo.db)
        assert {c: sorted(mongo.db[c].index_information()) for c in SEED} == before


def test_ttl_capability_matches_the_server(app):
    with app.app_context():
        is_ferretdb = "ferretdbVersion" in mongo.client.server_info()
        assert server_has_ttl(mongo.db) is (not is_ferretdb)


def test_init_db_command(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["chatbot", "init-db"])
    assert result.exit_code == 0, result.output
    assert "users: phoneNumber_1, role_1" in result.output
    with app.app_context():
        ttl = server_has_ttl(mongo.db)
    expected = "sessions.expiresAt: TTL index" if ttl else "sessions.expiresAt: no TTL"
    assert expected in result.output


def test_expired_session_resumes_the_questionnaire_then_the_sweep_abandons_it(app):
    client = app.test_client()
    chat = ApiChat(client, "081300000001")
    chat.register_with_child("Budi", TODDLER)
    chat.say("ya")
    chat.say("ya")
    with app.app_context():
        user = UserRepository(mongo.db).by_phone("+6281300000001")
        # The parent went away: the session is past its idle time.
        mongo.db["sessions"].update_one(
            {}, {"$set": {"expiresAt": datetime.now(UTC) - timedelta(minutes=1)}}
        )
        # ...and long past the Redis copy's lifetime (SESSION_CACHE_S).
        redis_store.client.delete(redis_store.key("session", user["id"]))
    reply = chat.say("halo")
    assert "belum selesai (1/10 terjawab)" in reply
    assert "Pertanyaan 2/10" in chat.say("1")

    with app.app_context():
        mongo.db["sessions"].update_many(
            {}, {"$set": {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}}
        )
        mongo.db["questionnaires"].update_many(
            {}, {"$set": {"startedAt": datetime.now(UTC) - timedelta(hours=25)}}
        )
        report = run_sweep()
        assert report["sessionsDeleted"] == 1
        assert report["questionnairesAbandoned"] == 1
        assert QuestionnaireRepository(mongo.db).in_progress_for_user(user["id"]) is None


def test_import_bank_validates_and_activates(app, tmp_path):
    runner = app.test_cli_runner()
    bad = tmp_path / "bad.json"
    bad.write_text('{"instrument": "kpsp", "version": "x", "scoring": {}, "brackets": []}')
    result = runner.invoke(args=["chatbot", "import-bank", str(bad)])
    assert result.exit_code != 0
    assert "invalid question bank" in result.output

    edition = tmp_path / "edition.json"
    edition.write_text(
        Path(SHIPPED_BANK)
        .read_text(encoding="utf-8")
        .replace("chatbot-kpsp-2026.1", "official-2022")
    )
    result = runner.invoke(args=["chatbot", "import-bank", str(edition)])
    assert result.exit_code == 0, result.output
    assert "16 brackets" in result.output
    banks = app.extensions["chatbot.services"].banks  # this app's: it remembers nothing yet
    with app.app_context():
        assert banks.active().version == "official-2022"
    chat = ApiChat(app.test_client(), "081300000003")
    chat.register_with_child("Budi", TODDLER)
    chat.say("ya")
    with app.app_context():
        user = UserRepository(mongo.db).by_phone("+6281300000003")
        q = QuestionnaireRepository(mongo.db).in_progress_for_user(user["id"])
    assert q["bankVersion"] == "official-2022"


def test_worker_endpoints_need_a_staff_role(app):
    client = app.test_client()
    parent = ApiChat(client, "081300000004")
    parent.register_with_child("Budi", TODDLER)
    parent.say("ya")
    parent.answer_all(["tidak"] * 5 + ["ya"] * 5)  # possible deviation -> refer
    parent.say("2")
    for text in ("Siti", born_ago(17), "2", "38", "ya"):
        parent.say(text)
    parent.answer_all(["ya"] * 10)  # appropriate

    worker = ApiChat(client, "081300000005")
    assert worker.get("/api/v1/worker/children").status_code == 403
    runner = app.test_cli_runner()
    assert runner.invoke(args=["chatbot", "add-posyandu", "SERUNI07", "Seruni"]).exit_code == 0
    parent.say("posyandu SERUNI07")  # both children join it
    grant = ["chatbot", "grant-role", "081300000005", "health_worker", "--posyandu", "SERUNI07"]
    assert runner.invoke(args=grant).exit_code == 0

    at_risk = worker.get("/api/v1/worker/children?risk=medium,high").get_json()
    assert [c["name"] for c in at_risk["children"]] == ["Budi"]
    assert at_risk["children"][0]["parentPhone"] == "+6281300000004"
    assert at_risk["children"][0]["lastScreening"]["nextAction"] == "refer"
    low = worker.get("/api/v1/worker/children?risk=low").get_json()
    assert [c["name"] for c in low["children"]] == ["Siti"]
    stats = worker.get("/api/v1/worker/stats").get_json()
    assert stats["childrenByRisk"]["high"] == 1
    assert stats["childrenByRisk"]["low"] == 1
    # A health worker may open the summary of a child of their posyandu, not archive it.
    budi = at_risk["children"][0]["id"]
    assert worker.get(f"/api/v1/children/{budi}").status_code == 200
    archive = worker.client.post(f"/api/v1/children/{budi}/archive", headers=worker.headers)
    assert archive.status_code == 404
    assert worker.get("/api/v1/worker/children?risk=severe").status_code == 400


def test_overdue_rescreens_are_listed_most_overdue_first(app):
    client = app.test_client()
    parent = ApiChat(client, "081300000006")
    parent.register_with_child("Budi", TODDLER)
    parent.say("ya")
    parent.answer_all(["tidak", "tidak"] + ["ya"] * 8)  # doubtful: re-screen in 2 weeks
    admin = ApiChat(client, "081300000007")
    app.test_cli_runner().invoke(args=["chatbot", "grant-role", "081300000007", "admin"])
    assert admin.get("/api/v1/worker/rescreens/overdue").get_json()["children"] == []
    with app.app_context():
        mongo.db["children"].update_many(
            {}, {"$set": {"lastScreening.nextDueAt": datetime.now(UTC) - timedelta(days=3)}}
        )
        # Written behind the app's back: tell the response cache, as the app's writes do.
        app.extensions["chatbot.responses"].changed("unused", staff=True)
    overdue = admin.get("/api/v1/worker/rescreens/overdue").get_json()["children"]
    assert [c["name"] for c in overdue] == ["Budi"]
