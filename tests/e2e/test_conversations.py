"""Whole conversations through nginx and both gunicorn instances, as a black-box client."""

import gzip
import json
import threading

import pytest

from chatbot.phone import mask_phone
from tests.harness import http
from tests.support import TODDLER_TODAY, HttpChat

pytestmark = pytest.mark.e2e


def logged_code(stack, phone: str) -> str:
    """The development code sender writes codes to the app's JSON log, beside the masked
    number (the suite's numbers differ in their masked form too)."""
    masked = mask_phone(phone)
    codes = []
    for app in stack.apps:
        for line in app.log_path.read_text(errors="replace").splitlines():
            if '"otp_code"' in line:
                record = json.loads(line)
                if record.get("phone") == masked:
                    codes.append((record["time"], record["otp_code"]))
    assert codes, f"no code logged for {phone}"
    return max(codes)[1]


def screen(chat: HttpChat, name: str, born: str, answers: list[str], weeks: str = "38") -> str:
    for text in ("halo", "ya", "1", name, born, "1", weeks, "ya"):
        chat.say(text)
    result = ""
    for answer in answers:
        result = chat.say(answer)
    return result


def test_two_users_at_once_get_their_own_results(stack):
    results = {}
    errors = []

    def run(phone, name, answers):
        try:
            chat = HttpChat(stack.url, phone)
            results[phone] = (screen(chat, name, TODDLER_TODAY, answers), chat)
        except AssertionError as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("081500000001", "Ayu", ["ya"] * 10)),
        threading.Thread(target=run, args=("081500000002", "Bima", ["tidak"] * 5 + ["ya"] * 5)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    low, low_chat = results["081500000001"]
    high, high_chat = results["081500000002"]
    assert "SESUAI" in low
    assert "KEMUNGKINAN ADA PENYIMPANGAN" in high
    # Requests were spread over both instances; the state followed the user, not the instance.
    assert low_chat.instances | high_chat.instances == {"app1", "app2"}
    [a] = low_chat.get("/api/v1/children").json()["children"]
    [b] = high_chat.get("/api/v1/children").json()["children"]
    assert (a["lastScreening"]["riskLevel"], b["lastScreening"]["riskLevel"]) == ("low", "high")
    assert high_chat.get(f"/api/v1/children/{a['id']}").status == 404


def test_duplicate_submission_through_nginx(stack):
    chat = HttpChat(stack.url, "081500000003")
    first = chat.send("halo", "dup-1")
    second = chat.send("halo", "dup-1")
    assert (first.status, second.status) == (201, 200)
    assert second.json()["duplicate"] is True
    assert [r["id"] for r in second.json()["replies"]] == [r["id"] for r in first.json()["replies"]]


def test_typing_someone_elses_number_reveals_nothing_without_the_code(stack):
    owner = HttpChat(stack.url, "081500000004")
    screen(owner, "Rahasia", TODDLER_TODAY, ["ya"] * 10)
    start = http("POST", stack.url + "/api/v1/chat/start", {"phoneNumber": "6281500000004"})
    assert start.status == 202
    assert "Rahasia" not in start.body.decode()
    assert "token" not in start.json() or start.json()["token"] is None
    code = logged_code(stack, "+6281500000004")
    wrong = http(
        "POST",
        stack.url + "/api/v1/chat/verify",
        {"challengeId": start.json()["challengeId"], "code": f"{(int(code) + 1) % 10**6:06d}"},
    )
    assert wrong.status == 400
    verified = http(
        "POST",
        stack.url + "/api/v1/chat/verify",
        {"challengeId": start.json()["challengeId"], "code": code},
    )
    assert verified.status == 200
    same_person = HttpChat(stack.url, "081500000004", token=verified.json()["token"])
    assert [c["name"] for c in same_person.get("/api/v1/children").json()["children"]] == [
        "Rahasia"
    ]


def test_openapi_and_web_page_are_served_and_cached_by_nginx(stack):
    doc = http("GET", stack.url + "/api/v1/openapi.json")
    assert doc.status == 200
    assert "/api/v1/chat/messages" in doc.json()["paths"]
    again = http("GET", stack.url + "/api/v1/openapi.json")
    assert again.headers["X-Cache-Status"] == "HIT"
    assert again.body == doc.body
    script = [http("GET", stack.url + "/static/chat.js") for _ in range(2)]
    assert script[0].status == 200
    assert script[1].headers["X-Cache-Status"] == "HIT"
    # Per-user API responses never come from nginx's cache.
    chat = HttpChat(stack.url, "081500000009")
    assert "X-Cache-Status" not in chat.get("/api/v1/children").headers
    page = http("GET", stack.url + "/", headers={"Accept-Encoding": "gzip"})
    assert page.status == 200
    body = (
        gzip.decompress(page.body) if page.headers.get("Content-Encoding") == "gzip" else page.body
    )
    assert b"chat.js" in body
