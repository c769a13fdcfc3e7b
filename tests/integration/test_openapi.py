"""The served OpenAPI document matches the real routes and the real responses."""

import re

import pytest

from chatbot.api.docs import OPERATIONS
from tests.support import TODDLER, ApiChat

pytestmark = pytest.mark.integration


def api_routes(app):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
            routes |= {(m.lower(), path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_document_lists_exactly_the_apps_routes(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == api_routes(app)
    # Every $ref resolves.
    text = str(doc)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in doc["components"]["schemas"]


def test_real_responses_match_the_documented_models(app, client):
    models = {(m, p): responses for m, p, _, _, responses, _ in OPERATIONS}
    chat = ApiChat(client, "081400000001")
    chat.register_with_child("Budi", TODDLER)
    turn = chat.send("ya")
    models[("post", "/chat/messages")][201].model_validate(turn.get_json())
    chat.answer_all(["ya"] * 10)
    children = chat.get("/api/v1/children").get_json()
    models[("get", "/children")][200].model_validate(children)
    child_id = children["children"][0]["id"]
    summary = chat.get(f"/api/v1/children/{child_id}").get_json()
    models[("get", "/children/{child_id}")][200].model_validate(summary)
    qid = summary["recentScreenings"][0]["id"]
    full = chat.get(f"/api/v1/questionnaires/{qid}").get_json()
    models[("get", "/questionnaires/{questionnaire_id}")][200].model_validate(full)
    history = chat.get("/api/v1/chat/messages").get_json()
    models[("get", "/chat/messages")][200].model_validate(history)
    error = chat.get("/api/v1/children/nope").get_json()
    from chatbot.api.schemas import Error

    Error.model_validate(error)
