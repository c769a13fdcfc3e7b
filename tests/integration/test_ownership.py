"""Every route that takes an id answers another user's id exactly like an unknown one: 404.

A parent reaches only their own children and results; the id of someone else's is not
even confirmed to exist. The list of id-taking routes is read from the app, so a new
one fails here until it is covered.
"""

import pytest
from bson import ObjectId

from tests.support import TODDLER, ApiChat

pytestmark = pytest.mark.integration

UNKNOWN = str(ObjectId())


@pytest.fixture
def two_parents(app):
    client = app.test_client()
    ana = ApiChat(client, "081300000901")
    ana.register_with_child("Anaku", TODDLER)
    ana.say("ya")  # the questionnaire starts
    ana.answer_all(["ya"] * 10)
    bob = ApiChat(client, "081300000902")
    bob.register_with_child("Bobi", TODDLER)
    child = ana.get("/api/v1/children").get_json()["children"][0]["id"]
    summary = ana.get(f"/api/v1/children/{child}").get_json()
    questionnaire = summary["recentScreenings"][0]["id"]
    return ana, bob, child, questionnaire


# (method, URL rule, how to fill it from Ana's ids)
ROUTES = [
    ("GET", "/api/v1/children/<child_id>", "child"),
    ("POST", "/api/v1/children/<child_id>/archive", "child"),
    ("PATCH", "/api/v1/children/<child_id>", "child"),
    ("GET", "/api/v1/questionnaires/<questionnaire_id>", "questionnaire"),
]


def test_every_route_taking_an_id_is_covered(app):
    rules = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if "<" in rule.rule
        and not rule.endpoint.endswith(".static")  # the pages' files
        and not rule.rule.startswith(("/admin/", "/api/v1/admin/"))  # an admin's, any user
        # The staff routes' scope (posyandu) is tested in test_posyandu.py.
        and not rule.rule.startswith("/api/v1/worker/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert rules == {(method, rule) for method, rule, _ in ROUTES}


def answer(chat, method, url):
    if method == "GET":
        return chat.get(url)
    body = {"gestationalWeeks": 30} if method == "PATCH" else {}  # valid: ownership decides
    return chat.client.open(url, method=method, headers=chat.headers, json=body)


@pytest.mark.parametrize(("method", "rule", "kind"), ROUTES)
def test_another_users_id_answers_404_like_an_unknown_one(two_parents, method, rule, kind):
    ana, bob, child, questionnaire = two_parents
    own = {"child": child, "questionnaire": questionnaire}[kind]
    url = rule.split("<")[0] + own + rule.split(">")[1]
    unknown_url = rule.split("<")[0] + UNKNOWN + rule.split(">")[1]

    theirs = answer(bob, method, url)
    assert theirs.status_code == 404, theirs.get_json()
    unknown = answer(bob, method, unknown_url)
    assert unknown.status_code == 404
    assert theirs.get_json()["error"]["code"] == unknown.get_json()["error"]["code"] == "not_found"
    assert theirs.get_json()["error"]["message"] == unknown.get_json()["error"]["message"]
    assert "Anaku" not in theirs.get_data(as_text=True)

    # Bob's try changed nothing: Ana still reaches it (and the child is not archived).
    assert ana.get(f"/api/v1/children/{child}").status_code == 200
    assert ana.get(f"/api/v1/questionnaires/{questionnaire}").status_code == 200
    assert [c["id"] for c in ana.get("/api/v1/children").get_json()["children"]] == [child]


def test_receipts_for_another_users_messages_change_nothing(two_parents):
    """The one route taking ids in its body: only the caller's own messages are marked."""
    ana, bob, _, _ = two_parents
    replies = [r["id"] for r in ana.last["replies"]]
    response = bob.client.post(
        "/api/v1/chat/receipts", headers=bob.headers, json={"messageIds": replies}
    )
    assert response.status_code == 200
    assert response.get_json()["delivered"] == 0
    mine = ana.client.post(
        "/api/v1/chat/receipts", headers=ana.headers, json={"messageIds": replies}
    )
    assert mine.get_json()["delivered"] == len(replies)
