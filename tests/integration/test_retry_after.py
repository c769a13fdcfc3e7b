"""Retry-After appears on 429 and 503 only, each time with a value that means something."""

import time
from dataclasses import replace

import pytest

from chatbot import create_app
from tests.support import ApiChat

pytestmark = pytest.mark.integration

# Nothing listens on the discard port: the database is unreachable.
NO_DATABASE = "mongodb://127.0.0.1:9/"


def test_success_401_and_403_carry_rate_limit_headers_but_no_retry_after(client):
    chat = ApiChat(client, "081200000201")
    answers = {
        200: chat.get("/api/v1/chat/messages"),
        401: client.get("/api/v1/chat/messages"),
        403: chat.get("/api/v1/worker/children"),
    }
    for status, response in answers.items():
        assert response.status_code == status
        assert "X-RateLimit-Limit" in response.headers, status
        assert "Retry-After" not in response.headers, status


def test_429_says_when_the_rate_limit_resets(settings):
    app = create_app(replace(settings, chat_rate_limit="2 per minute"))
    client = app.test_client()
    body = {"phoneNumber": "081200000202"}
    statuses = [client.post("/api/v1/chat/start", json=body).status_code for _ in range(3)]
    assert statuses[-1] == 429
    response = client.post("/api/v1/chat/start", json=body)
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    # The same moment X-RateLimit-Reset names (an epoch second), give or take a second.
    reset_in = int(response.headers["X-RateLimit-Reset"]) - time.time()
    assert abs(retry_after - reset_in) <= 2


def test_429_for_codes_per_number_gives_that_window(client, settings):
    ApiChat(client, "081200000203")
    for _ in range(settings.otp_sends_per_window):
        client.post("/api/v1/chat/start", json={"phoneNumber": "081200000203"})
    response = client.post("/api/v1/chat/start", json={"phoneNumber": "081200000203"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(settings.otp_send_window_s)


@pytest.mark.parametrize("hint", [2, 7])
def test_503_without_the_database_gives_the_configured_hint(settings, hint):
    app = create_app(replace(settings, mongo_uri=NO_DATABASE, retry_after_unavailable_s=hint))
    response = app.test_client().post("/api/v1/chat/start", json={"phoneNumber": "081200000204"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"
    # Not the rate-limit window (a minute), which flask-limiter would put there.
    assert response.headers["Retry-After"] == str(hint)
    assert "X-RateLimit-Limit" in response.headers


def test_health_503_gives_the_hint_and_200_gives_none(settings, client):
    assert "Retry-After" not in client.get("/health").headers
    down = create_app(replace(settings, mongo_uri=NO_DATABASE)).test_client().get("/health")
    assert down.status_code == 503
    assert down.headers["Retry-After"] == str(settings.retry_after_unavailable_s)
