"""API error messages in the user's language, or the request's Accept-Language."""

import pytest

from chatbot.api import MAX_JSON_DEPTH
from tests.support import ApiChat, CapturingSender

pytestmark = pytest.mark.integration

INDONESIAN = {"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"}
# Not /children/<id>: test_metrics.py reads that route's count without a status label.
NO_SUCH_QUESTIONNAIRE = "/api/v1/questionnaires/" + "0" * 24


def error_of(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == code
    assert set(error) <= {"code", "message", "request_id", "details"}  # the envelope as ever
    return error, response.headers["Content-Language"]


def wrong_code(client, phone, headers=None):
    ApiChat(client, phone)
    challenge = client.post("/api/v1/chat/start", json={"phoneNumber": phone}).get_json()
    code = CapturingSender.last_code("+62" + phone[1:])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    body = {"challengeId": challenge["challengeId"], "code": wrong}
    return client.post("/api/v1/chat/verify", json=body, headers=headers or {})


def test_a_wrong_code_is_explained_in_the_browsers_language(client):
    error, language = error_of(wrong_code(client, "081300000301", INDONESIAN), 400, "invalid_code")
    assert (error["message"], language) == ("Kode salah atau sudah kedaluwarsa.", "id")


def test_without_a_known_language_messages_stay_as_raised(client):
    error, language = error_of(wrong_code(client, "081300000302"), 400, "invalid_code")
    assert (error["message"], language) == ("The code is wrong or has expired.", "en")
    french = wrong_code(client, "081300000303", {"Accept-Language": "fr-FR"})
    assert error_of(french, 400, "invalid_code")[0]["message"].startswith("The code")


def test_a_signed_in_parent_reads_errors_in_the_language_they_chose(client):
    chat = ApiChat(client, "081300000304")
    chat.say("halo")
    error, language = error_of(chat.get(NO_SUCH_QUESTIONNAIRE), 404, "not_found")
    assert (error["message"], language) == ("Kuesioner tidak ditemukan.", "id")  # the default
    chat.say("ya")
    chat.say("english")  # the language question, answered in the chat
    error, language = error_of(
        client.get(NO_SUCH_QUESTIONNAIRE, headers={**chat.headers, **INDONESIAN}), 404, "not_found"
    )
    # The user's choice wins over the request's Accept-Language.
    assert (error["message"], language) == ("No such questionnaire.", "en")


def test_too_many_codes_in_indonesian(client):
    ApiChat(client, "081300000305")
    for _ in range(3):
        client.post("/api/v1/chat/start", json={"phoneNumber": "081300000305"})
    response = client.post(
        "/api/v1/chat/start", json={"phoneNumber": "081300000305"}, headers=INDONESIAN
    )
    error, _ = error_of(response, 429, "rate_limited")
    assert error["message"].startswith("Terlalu banyak kode")
    assert error["details"]["retryAfterSeconds"] > 0


def test_errors_we_did_not_write_are_worded_by_their_code(client):
    error, language = error_of(client.get("/api/v1/nothing", headers=INDONESIAN), 404, "not_found")
    assert (error["message"], language) == ("Tidak ditemukan.", "id")
    english, language = error_of(client.get("/api/v1/nothing"), 404, "not_found")
    assert language == "en" and english["message"] != error["message"]


def test_what_varies_in_a_message_is_kept(client):
    response = client.post(
        "/api/v1/chat/start",
        data=b"[" * 1000 + b"]" * 1000,
        content_type="application/json",
        headers=INDONESIAN,
    )
    error, _ = error_of(response, 400, "invalid_json")
    assert error["message"] == f"Isi permintaan bersarang lebih dari {MAX_JSON_DEPTH} tingkat."
