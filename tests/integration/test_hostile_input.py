"""Pathological JSON bodies answer 400 in the error envelope, never 500."""

import pytest

from chatbot.api import MAX_JSON_DEPTH
from tests.support import assert_envelope

pytestmark = pytest.mark.integration

START = "/api/v1/chat/start"

HOSTILE = {
    "nested arrays, 2 KB": b"[" * 1000 + b"]" * 1000,
    "nested arrays, 60 KB": b"[" * 30000 + b"]" * 30000,
    "nested objects": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "nested inside a field": b'{"phoneNumber":' + b"[" * 3000 + b"]" * 3000 + b"}",
    "one level too deep": b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    "invalid UTF-8": b'{"phoneNumber": "08\xff\xfe1234567"}',
    "UTF-16": '{"phoneNumber": "081234567890"}'.encode("utf-16"),
    "overflowing float": b'{"phoneNumber": 1e999999}',
    "NaN": b'{"phoneNumber": NaN}',
    "Infinity": b'{"phoneNumber": -Infinity}',
    "5000-digit integer": b'{"phoneNumber": ' + b"9" * 5000 + b"}",
    "integer beyond 64 bits": b'{"phoneNumber": 9223372036854775808}',
    "truncated": b'{"phoneNumber": "0812',
    "empty": b"",
    "unterminated escapes": b'"\\"\\"\\"\\"' * 2000,
}


def post_raw(client, body: bytes):
    return client.post(START, data=body, content_type="application/json")


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_answer_400_invalid_json(client, body):
    response = post_raw(client, body)
    error = assert_envelope(response, 400, "invalid_json")
    # A 400 says nothing about retrying.
    assert "Retry-After" not in response.headers
    assert "Traceback" not in error["message"]


def test_nesting_is_named_in_the_message(client):
    error = assert_envelope(post_raw(client, b"[" * 1000 + b"]" * 1000), 400, "invalid_json")
    assert str(MAX_JSON_DEPTH) in error["message"]


def test_nesting_up_to_the_limit_is_parsed_then_validated(client):
    deep = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    # Parsed fine; the model wants an object: a validation error, not invalid_json.
    assert_envelope(post_raw(client, deep), 400, "validation_error")


def test_brackets_inside_strings_do_not_count_as_nesting(client):
    text = "[{" * 1000 + '\\"' + "]}" * 1000
    body = ('{"phoneNumber": "081234567890", "language": "' + text + '"}').encode()
    error = assert_envelope(post_raw(client, body), 400, "validation_error")
    assert [d["field"] for d in error["details"]] == ["language"]


def test_lone_surrogates_are_a_validation_error(client):
    # Valid JSON, but not a string MongoDB could store.
    body = b'{"phoneNumber": "0812\\ud800345678"}'
    assert_envelope(post_raw(client, body), 400, "validation_error")


def test_duplicate_keys_are_accepted_the_last_one_wins(client):
    body = b'{"phoneNumber": "not a number", "phoneNumber": "081299990001"}'
    response = post_raw(client, body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user"]["phoneNumber"] == "+6281299990001"


def test_a_byte_order_mark_is_ignored(client):
    body = '\ufeff{"phoneNumber": "081299990002"}'.encode()
    assert post_raw(client, body).status_code == 201


def test_a_body_over_the_size_limit_is_still_413(client, settings):
    body = b"[" * (settings.max_content_length + 1)
    assert_envelope(post_raw(client, body), 413, "payload_too_large")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/v1/chat/verify",
            '{"challengeId": "0123456789\\u0000", "code": "123456"}',
            "challengeId",
        ),
        ("/api/v1/chat/messages", '{"text": "ya\\u0000", "clientMessageId": "c1"}', "text"),
        ("/api/v1/chat/receipts", '{"messageIds": ["\\u0000"]}', "messageIds"),
    ],
)
def test_nul_characters_are_a_validation_error(client, path, body, field):
    # Valid JSON, but PostgreSQL under FerretDB cannot store U+0000: these were 500s.
    token = client.post(START, json={"phoneNumber": "081299990003"}).get_json()["token"]
    response = client.post(
        path,
        data=body.encode(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    error = assert_envelope(response, 400, "validation_error")
    assert [d["field"] for d in error["details"]] == [field]
