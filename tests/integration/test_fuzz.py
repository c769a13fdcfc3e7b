"""Schemathesis over the OpenAPI document, against the app on the real FerretDB and Redis.

Every operation gets a bounded number of generated requests (schemathesis's examples,
coverage and fuzzing phases), once without a token and once with an admin token, which
passes every role check and so reaches every view. Every response must be no 5xx and
match the document: a documented status code, its content type and its body schema.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chatbot.api.docs import openapi
from chatbot.services import services
from chatbot.settings import Settings
from tests.support import TODDLER, ApiChat

pytestmark = pytest.mark.integration

# Fuzzing-phase examples per operation and token variant: 2 x 16 operations x 20 keeps
# the whole file near 20 s here; the examples and coverage phases add their own few.
# FUZZ_EXAMPLES=500 searches longer (a few minutes), outside `make test`.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))

FUZZ = hypothesis.settings(
    max_examples=EXAMPLES,
    # No example database: nothing written into the working tree (.hypothesis/), and a
    # run does not depend on what an earlier one found.
    database=None,
    # FerretDB's first queries on a fresh database are slow; time is not what this checks.
    deadline=None,
    # One app (database, Redis prefix) per operation and variant, shared by its examples
    # on purpose: requests accumulate state as on a real server.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# The document the app serves (the same dict, through JSON as on the wire). Loaded at
# import, not from a fixture: schemathesis's fixture loader (from_fixture) does not work
# with pytest 9 (it reads Node._nodeid, which pytest 9 no longer has).
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(openapi())))

# Schemathesis's WSGI transport asks for gzip (requests' default Accept-Encoding) but
# does not decompress, so ask for the identity encoding; compression has its own tests.
PLAIN = {"Accept-Encoding": "identity"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The conftest's settings, with the one-time-code limit raised like the others'
    (10 per minute would answer most generated /chat/verify requests with 429)."""
    return replace(settings, verify_rate_limit="10000 per minute")


@pytest.fixture
def app(app):
    """The conftest's app with its outage watch's thread stopped (its first read done).

    The thread polls the database, and PyMongo's server selection draws from the global
    `random` module, which Hypothesis requires nothing to touch while it generates.
    """
    with app.app_context():
        services().chat.outage_watch.stop()
    return app


@pytest.fixture
def admin_token(app, client) -> str:
    """An admin who has a child and a completed screening, so lists are not empty."""
    chat = ApiChat(client, "081500000001")
    chat.register_with_child("Budi", TODDLER)
    chat.say("ya")
    chat.answer_all(["ya"] * 10)
    result = app.test_cli_runner().invoke(args=["chatbot", "grant-role", "081500000001", "admin"])
    assert result.exit_code == 0, result.output
    return chat.token


@schema.parametrize()
@FUZZ
def test_without_a_token(case, app):
    response = case.call_and_validate(app=app, headers=PLAIN, checks=CHECKS)
    # Schemathesis also tries methods the path does not have (405); those carry no auth.
    same_method = case.method.lower() == case.operation.method.lower()
    if same_method and case.operation.definition.raw.get("security"):
        assert response.status_code == 401, response.text


@schema.parametrize()
@FUZZ
def test_with_an_admin_token(case, app, admin_token):
    headers = PLAIN | {"Authorization": f"Bearer {admin_token}"}
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)


def test_exactly_the_documented_gets_answer_304_to_their_etag(client, admin_token):
    """Conditional requests, which the fuzzer does not send: a GET documented with 304
    gives an ETag and answers If-None-Match with 304; the other GETs give no ETag."""
    child = client.get("/api/v1/children", headers=auth(admin_token)).get_json()["children"][0]
    ids = {"child_id": child["id"], "questionnaire_id": child["lastScreening"]["questionnaireId"]}
    for path, operations in openapi()["paths"].items():
        if "get" not in operations:
            continue
        url = path.format(**ids)
        first = client.get(url, headers=auth(admin_token))
        assert first.status_code == 200, (url, first.get_json())
        if "304" in operations["get"]["responses"]:
            assert first.headers.get("ETag"), url
            again = client.get(
                url, headers=auth(admin_token) | {"If-None-Match": first.headers["ETag"]}
            )
            assert again.status_code == 304, url
            assert again.get_data() == b""
        else:
            assert "ETag" not in first.headers, url


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
