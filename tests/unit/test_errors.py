"""Every error answers the same JSON envelope with a code, a message and the request id."""

import logging

import pytest
from flask import Blueprint

from chatbot import create_app
from chatbot.errors import ConflictError, ServiceUnavailableError, UnsupportedMediaTypeError
from chatbot.settings import Settings
from tests.support import assert_envelope

# Unreachable dependencies: these tests never touch MongoDB or Redis.
OFFLINE = Settings(
    env="testing",
    instance_id="unit",
    mongo_uri="mongodb://127.0.0.1:9/",
    redis_url="redis://127.0.0.1:9/0",
    max_content_length=1024,
).checked()


@pytest.fixture
def app():
    app = create_app(OFFLINE)
    bp = Blueprint("boom", __name__)

    @bp.get("/boom")
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    @bp.get("/ok")
    def ok():
        return {"ok": True}

    @bp.get("/down")
    def down():
        raise ServiceUnavailableError("Down.")

    @bp.get("/slow-down")
    def slow_down():
        raise ServiceUnavailableError("Down for a while.", retry_after=30)

    @bp.get("/teapot")
    def teapot():
        raise ConflictError("Not today.", details={"why": "tea"})

    @bp.post("/echo")
    def echo():
        from flask import request

        request.get_data()  # reading the body enforces MAX_CONTENT_LENGTH
        if not request.is_json:
            raise UnsupportedMediaTypeError("Send JSON.")
        return {"ok": True}

    app.register_blueprint(bp)
    return app


def test_not_found(app):
    assert_envelope(app.test_client().get("/nope"), 404, "not_found")


def test_method_not_allowed_keeps_allow_header(app):
    response = app.test_client().delete("/livez")
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_payload_too_large(app):
    response = app.test_client().post("/echo", data="x" * 2048, content_type="application/json")
    assert_envelope(response, 413, "payload_too_large")


def test_unsupported_media_type(app):
    response = app.test_client().post("/echo", data="a=b", content_type="text/plain")
    assert_envelope(response, 415, "unsupported_media_type")


def test_api_error_carries_details(app):
    error = assert_envelope(app.test_client().get("/teapot"), 409, "conflict")
    assert error["details"] == {"why": "tea"}


def test_unexpected_error_hides_exception_text_and_logs_traceback(app, caplog):
    caplog.set_level(logging.ERROR)
    response = app.test_client().get("/boom")
    error = assert_envelope(response, 500, "internal_error")
    assert "hunter2" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)
    record = next(r for r in caplog.records if r.exc_info)
    assert record.request_id == error["request_id"]


def test_request_id_from_nginx_is_echoed(app):
    rid = "0123456789abcdef0123456789abcdef"
    response = app.test_client().get("/nope", headers={"X-Request-Id": rid})
    assert response.headers["X-Request-Id"] == rid
    assert response.get_json()["error"]["request_id"] == rid


@pytest.mark.parametrize(
    "bad", ["", "short", "has spaces in it", "x" * 200, "<script>alert</script>"]
)
def test_malformed_request_id_is_replaced(app, bad):
    response = app.test_client().get("/livez", headers={"X-Request-Id": bad})
    assert response.headers["X-Request-Id"] != bad
    assert len(response.headers["X-Request-Id"]) == 32


def test_liveness_touches_no_dependency(app):
    response = app.test_client().get("/livez")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"
    assert response.headers["X-Instance-Id"] == "unit"


def test_retry_after_only_on_429_and_503(app):
    client = app.test_client()
    # flask-limiter adds its headers to every response of a limited route...
    ok = client.get("/ok")
    assert ok.status_code == 200
    assert "X-RateLimit-Limit" in ok.headers
    # ...but Retry-After means "come back later", which a 200 or a 409 does not.
    assert "Retry-After" not in ok.headers
    assert "Retry-After" not in client.get("/teapot").headers
    # A 503 gives the outage hint, not the rate-limit window.
    down = client.get("/down")
    assert_envelope(down, 503, "service_unavailable")
    assert down.headers["Retry-After"] == str(OFFLINE.retry_after_unavailable_s)
    assert client.get("/slow-down").headers["Retry-After"] == "30"
