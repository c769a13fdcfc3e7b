"""Hostile bodies through nginx reach the app and answer 400 in the envelope, never 500."""

import json
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.e2e


def post_raw(url: str, body: bytes) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(  # noqa: S310 -- a loopback URL built by the harness
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"phoneNumber":' + b"[" * 30000 + b"]" * 30000 + b"}",
        b'{"phoneNumber": "\xff\xfe"}',
        b'{"phoneNumber": 1e999999}',
        b'{"phoneNumber": ' + b"9" * 5000 + b"}",
    ],
    ids=["nested 2 KB", "nested 60 KB", "invalid UTF-8", "overflowing float", "5000 digits"],
)
def test_hostile_json_through_nginx_is_a_400(stack, body):
    status, headers, raw = post_raw(stack.url + "/api/v1/chat/start", body)
    assert status == 400, raw[:300]
    error = json.loads(raw)["error"]
    assert error["code"] == "invalid_json"
    assert error["request_id"] == headers["X-Request-Id"]
    # The app answered (not nginx), and a 400 carries no Retry-After.
    assert headers["X-Instance-Id"] in {"app1", "app2"}
    assert "Retry-After" not in headers
