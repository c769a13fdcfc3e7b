"""Security headers on every answer of the app: JSON, errors, the pages and their files."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

WEB = Path(__file__).resolve().parents[2] / "chatbot" / "web"


def assert_common(response) -> str:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    return csp


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/api/v1/chat/start", {"phoneNumber": "081200000701"}, 201),
        ("get", "/api/v1/openapi.json", None, 200),
        ("get", "/livez", None, 200),
        ("get", "/api/v1/chat/messages", None, 401),  # no token
        ("post", "/api/v1/chat/start", {"phoneNumber": "12"}, 400),  # invalid body
        ("get", "/api/v1/no-such-route", None, 404),
        ("delete", "/api/v1/chat/start", None, 405),
    ],
)
def test_every_api_answer_carries_the_headers(client, method, path, body, status):
    response = getattr(client, method)(path, json=body)
    assert response.status_code == status
    csp = assert_common(response)
    assert csp.startswith("default-src 'none'")  # an API answer loads nothing


def test_a_server_error_carries_the_headers(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert_common(response)


@pytest.mark.parametrize("path", ["/", "/admin/"])
def test_the_pages_allow_their_own_files_only(client, path):
    with client.get(path) as response:
        assert response.status_code == 200 and response.mimetype == "text/html"
        csp = assert_common(response)
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'"):
        assert directive in csp
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp


@pytest.mark.parametrize("path", ["/static/chat.js", "/static/chat.css"])
def test_the_page_files_carry_the_headers(client, path):
    with client.get(path) as response:
        assert response.status_code == 200
        assert_common(response)


@pytest.mark.parametrize("page", [WEB / "static" / "index.html", WEB / "dashboard" / "index.html"])
def test_the_pages_have_no_inline_script_or_style(page):
    """What the CSP forbids: the pages must work without it (the browser tests run them)."""
    html = page.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert "javascript:" not in html
