"""The chat API against the real FerretDB and Redis: identity, conversations, idempotency."""

import threading

import pytest

from chatbot.db.questionnaires import QuestionnaireRepository
from chatbot.db.users import UserRepository
from chatbot.extensions import mongo
from tests.support import TODDLER, ApiChat, CapturingSender

pytestmark = pytest.mark.integration

TERM_CHILD_BORN = TODDLER


def test_new_number_gets_a_token_and_a_normalised_identity(client):
    response = client.post("/api/v1/chat/start", json={"phoneNumber": "0812 3456 7890"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["verificationRequired"] is False
    assert body["user"]["phoneNumber"] == "+6281234567890"
    assert body["user"]["role"] == "parent"


def test_known_number_must_verify_before_seeing_any_data(client):
    owner = ApiChat(client, "081200000001")
    owner.register_with_child("Budi", TERM_CHILD_BORN)

    # Someone else types the same number: no token, only a challenge.
    response = client.post("/api/v1/chat/start", json={"phoneNumber": "+6281200000001"})
    assert response.status_code == 202
    body = response.get_json()
    assert body["verificationRequired"] is True
    assert "token" not in body or body["token"] is None
    challenge = body["challengeId"]

    # A code that is certainly wrong: the real one plus one.
    wrong_code = f"{(int(CapturingSender.last_code('+6281200000001')) + 1) % 10**6:06d}"
    wrong = client.post("/api/v1/chat/verify", json={"challengeId": challenge, "code": wrong_code})
    assert wrong.status_code == 400
    assert wrong.get_json()["error"]["code"] == "invalid_code"

    code = CapturingSender.last_code("+6281200000001")
    ok = client.post("/api/v1/chat/verify", json={"challengeId": challenge, "code": code})
    assert ok.status_code == 200
    token = ok.get_json()["token"]
    children = client.get("/api/v1/children", headers={"Authorization": f"Bearer {token}"})
    assert [c["name"] for c in children.get_json()["children"]] == ["Budi"]

    # The code works once, and tokens issued before the verification stop working.
    again = client.post("/api/v1/chat/verify", json={"challengeId": challenge, "code": code})
    assert again.status_code == 400
    assert owner.get("/api/v1/children").status_code == 401


def test_too_many_wrong_codes_lock_the_challenge(client):
    ApiChat(client, "081200000002")
    challenge = client.post("/api/v1/chat/start", json={"phoneNumber": "081200000002"}).get_json()
    code = CapturingSender.last_code("+6281200000002")
    wrong = "111111" if code != "111111" else "222222"
    for _ in range(5):
        client.post(
            "/api/v1/chat/verify", json={"challengeId": challenge["challengeId"], "code": wrong}
        )
    response = client.post(
        "/api/v1/chat/verify", json={"challengeId": challenge["challengeId"], "code": code}
    )
    assert response.status_code == 400


def test_codes_sent_to_one_number_are_limited(client):
    ApiChat(client, "081200000013")
    statuses = [
        client.post("/api/v1/chat/start", json={"phoneNumber": "081200000013"}).status_code
        for _ in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    assert len([p for p, _ in CapturingSender.sent if p == "+6281200000013"]) == 3


def test_one_users_token_never_reaches_another_users_data(client):
    alice = ApiChat(client, "081200000003")
    alice.register_with_child("Alya", TERM_CHILD_BORN)
    alice.say("ya")
    alice.answer_all(["ya"] * 10)
    child_id = alice.get("/api/v1/children").get_json()["children"][0]["id"]
    questionnaire_id = alice.get(f"/api/v1/children/{child_id}").get_json()["recentScreenings"][0][
        "id"
    ]

    mallory = ApiChat(client, "081200000004")
    assert mallory.get("/api/v1/children").get_json()["children"] == []
    for path in (f"/api/v1/children/{child_id}", f"/api/v1/questionnaires/{questionnaire_id}"):
        response = mallory.get(path)
        assert response.status_code == 404
        assert "Alya" not in response.get_data(as_text=True)
    history = mallory.get("/api/v1/chat/messages").get_json()["messages"]
    assert all("Alya" not in m["text"] for m in history)
    # Staff endpoints are closed to parents.
    assert mallory.get("/api/v1/worker/children").status_code == 403


def test_requests_without_or_with_a_forged_token_are_refused(client):
    assert client.get("/api/v1/children").status_code == 401
    forged = client.get("/api/v1/children", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401
    assert forged.get_json()["error"]["code"] == "unauthorized"


def test_whole_conversation_child_summary_and_result(client):
    chat = ApiChat(client, "081200000005")
    chat.register_with_child("Budi", TERM_CHILD_BORN)
    intro = chat.say("ya")
    assert "Pertanyaan 1/" in intro
    result = chat.answer_all(["tidak", "tidak"] + ["ya"] * 8)
    assert "MERAGUKAN" in result
    child = chat.get("/api/v1/children").get_json()["children"][0]
    assert child["lastScreening"]["riskLevel"] == "medium"
    assert child["lastScreening"]["nextAction"] == "rescreen_2_weeks"

    summary = chat.get(f"/api/v1/children/{child['id']}").get_json()
    assert summary["child"]["name"] == "Budi"
    [recent] = summary["recentScreenings"]
    assert set(recent) == {"id", "riskLevel", "completedAt"}  # projected
    full = chat.get(f"/api/v1/questionnaires/{recent['id']}").get_json()
    assert full["status"] == "completed"
    assert full["yesCount"] == 8
    assert full["bankVersion"] == "chatbot-kpsp-2026.1"
    assert len(full["answers"]) == full["itemCount"]
    # The clock is at FROZEN_AT (tests/conftest.py): the same age and dates on every run.
    assert full["age"]["chronological"] == {"months": 22, "days": 0}
    assert full["bracket"] == 21
    assert full["screeningDate"] == "2031-03-10"
    assert full["nextDueAt"] == "2031-03-24T00:00:00+00:00"  # re-screen in 2 weeks
    assert full["noByDomain"]


def test_child_summary_keeps_the_five_latest_results_newest_first(client):
    chat = ApiChat(client, "081200000006")
    chat.register_with_child("Budi", TERM_CHILD_BORN)
    chat.say("tidak")
    for _ in range(6):
        chat.say("1")
        chat.answer_all(["ya"] * 10)
    child = chat.get("/api/v1/children").get_json()["children"][0]
    recent = chat.get(f"/api/v1/children/{child['id']}").get_json()["recentScreenings"]
    assert len(recent) == 5
    times = [r["completedAt"] for r in recent]
    assert times == sorted(times, reverse=True)


def test_duplicate_submission_gets_the_original_reply_and_is_not_processed_twice(client):
    chat = ApiChat(client, "081200000007")
    first = chat.send("halo", "same-id")
    assert first.status_code == 201
    again = chat.send("halo", "same-id")
    assert again.status_code == 200
    assert again.get_json()["duplicate"] is True
    assert [r["id"] for r in again.get_json()["replies"]] == [
        r["id"] for r in first.get_json()["replies"]
    ]
    messages = chat.get("/api/v1/chat/messages").get_json()["messages"]
    assert sum(1 for m in messages if m["direction"] == "inbound") == 1


def test_messages_of_one_user_are_processed_one_at_a_time(app):
    """Concurrent messages from one user: every one handled, none lost, answers in sequence."""
    chat = ApiChat(app.test_client(), "081200000008")
    chat.register_with_child("Budi", TERM_CHILD_BORN)
    chat.say("ya")
    results = []

    def send(n):
        client = app.test_client()
        response = client.post(
            "/api/v1/chat/messages",
            json={"text": "ya", "clientMessageId": f"par-{n}"},
            headers=chat.headers,
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 5
    with app.app_context():
        user = UserRepository(mongo.db).by_phone("+6281200000008")
        in_progress = QuestionnaireRepository(mongo.db).in_progress_for_user(user["id"])
    assert len(in_progress["answers"]) == 5
    # Each answer recorded once, for the next item in turn: none lost, none twice.
    assert [a["number"] for a in in_progress["answers"]] == [1, 2, 3, 4, 5]


def test_archived_child_leaves_the_lists_but_keeps_its_history(client):
    chat = ApiChat(client, "081200000014")
    chat.register_with_child("Budi", TERM_CHILD_BORN)
    chat.say("ya")
    chat.answer_all(["ya"] * 10)
    [child] = chat.get("/api/v1/children").get_json()["children"]
    other = ApiChat(client, "081200000015")
    assert (
        client.post(f"/api/v1/children/{child['id']}/archive", headers=other.headers).status_code
        == 404
    )
    response = client.post(f"/api/v1/children/{child['id']}/archive", headers=chat.headers)
    assert response.status_code == 200
    assert response.get_json()["child"]["status"] == "archived"
    assert chat.get("/api/v1/children").get_json()["children"] == []
    summary = chat.get(f"/api/v1/children/{child['id']}").get_json()
    assert len(summary["recentScreenings"]) == 1
    assert "Belum ada data anak" in chat.say("1")  # no child to screen any more


def test_history_is_paginated_newest_first_with_a_cursor(client):
    chat = ApiChat(client, "081200000009")
    for text in ("halo", "ya", "1", "Budi"):
        chat.say(text)
    page1 = chat.get("/api/v1/chat/messages?limit=3").get_json()
    assert len(page1["messages"]) == 3
    assert page1["nextCursor"]
    page2 = chat.get(f"/api/v1/chat/messages?limit=3&cursor={page1['nextCursor']}").get_json()
    ids = [m["id"] for m in page1["messages"] + page2["messages"]]
    assert len(set(ids)) == len(ids)
    times = [m["createdAt"] for m in page1["messages"] + page2["messages"]]
    assert times == sorted(times, reverse=True)
    assert page1["messages"][-1]["createdAt"] >= page2["messages"][0]["createdAt"]
    everything = chat.get("/api/v1/chat/messages?limit=100").get_json()
    assert everything["nextCursor"] is None
    assert everything["messages"][-1]["text"] == "halo"  # the oldest last
    bad = chat.get("/api/v1/chat/messages?cursor=%%%")
    assert bad.status_code == 400


def test_message_lifecycle_sent_then_delivered(client):
    chat = ApiChat(client, "081200000010")
    chat.say("halo")
    reply_ids = [r["id"] for r in chat.last["replies"]]
    assert {r["status"] for r in chat.last["replies"]} == {"sent"}
    assert chat.last["message"]["status"] == "handled"
    response = client.post(
        "/api/v1/chat/receipts", json={"messageIds": reply_ids}, headers=chat.headers
    )
    assert response.get_json() == {"delivered": len(reply_ids)}
    statuses = {
        m["id"]: m["status"] for m in chat.get("/api/v1/chat/messages").get_json()["messages"]
    }
    assert all(statuses[i] == "delivered" for i in reply_ids)
    malformed = client.post(
        "/api/v1/chat/receipts", json={"messageIds": ["nope"]}, headers=chat.headers
    )
    assert malformed.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "", "clientMessageId": "a"}, "text"),
        ({"text": "x" * 1001, "clientMessageId": "a"}, "text"),
        ({"text": "hi"}, "clientMessageId"),
        ({"text": "hi", "clientMessageId": "has space"}, "clientMessageId"),
        ({"text": "hi", "clientMessageId": "a", "extra": 1}, "extra"),
    ],
)
def test_invalid_messages_get_a_400_naming_the_field(client, body, field):
    chat = ApiChat(client, "081200000011")
    response = client.post("/api/v1/chat/messages", json=body, headers=chat.headers)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert any(d["field"] == field for d in error["details"])


def test_non_json_and_broken_json_bodies(client):
    response = client.post("/api/v1/chat/start", data="phone=1", content_type="text/plain")
    assert response.status_code == 415
    response = client.post("/api/v1/chat/start", data="{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    response = client.post("/api/v1/chat/start", json={"phoneNumber": "12"})
    assert response.status_code == 400


def test_unknown_ids_are_404_in_the_envelope(client):
    chat = ApiChat(client, "081200000012")
    for path in ("/api/v1/children/nope", "/api/v1/children/0123456789abcdef01234567",
                 "/api/v1/questionnaires/xyz"):  # fmt: skip
        response = chat.get(path)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
