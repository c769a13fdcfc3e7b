"""The WhatsApp Cloud API's shapes, read and written (chatbot/channels/), on Meta's
documented bodies (as RapidPro courier's test data has them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from chatbot.channels.graph import Accepted, Refused, Retry, interpret
from chatbot.channels.whatsapp import (
    MalformedWebhookError,
    parse_webhook,
    render_reply,
    sign,
    split_text,
    verify_signature,
)

WORDS = ("Pilih", "Pilihan")


def envelope(value: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "8856996819413533", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "16505553333",
                         "phone_number_id": "27681414235104944"},
            **value,
        }}]}],
    }  # fmt: skip


def test_the_signature_is_the_hmac_of_the_raw_body_and_nothing_else_passes():
    body = b'{"object":"whatsapp_business_account"}'
    good = sign("secret", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert verify_signature("secret", body, good)
    assert not verify_signature("secret", body + b" ", good)  # re-serialised JSON fails
    assert not verify_signature("other", body, good)
    assert not verify_signature("secret", body, good.upper())
    assert not verify_signature("secret", body, None)
    assert not verify_signature("", body, sign("", body))  # no secret configured: nothing


def test_a_text_message_an_interactive_reply_and_a_photo():
    webhook = parse_webhook(envelope({
        "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551234"}],
        "messages": [
            {"from": "16315551234", "id": "wamid.1", "timestamp": "1454119029", "type": "text",
             "text": {"body": "Hello World"}},
            {"from": "16315551234", "id": "wamid.2", "timestamp": "1454119030",
             "type": "interactive", "interactive": {"type": "button_reply",
             "button_reply": {"id": "ya", "title": "Ya"}}},
            {"from": "16315551234", "id": "wamid.3", "timestamp": "1454119031",
             "type": "interactive", "interactive": {"type": "list_reply",
             "list_reply": {"id": "3", "title": "Riwayat", "description": "..."}}},
            {"from": "16315551234", "id": "wamid.4", "timestamp": "1454119032", "type": "image",
             "image": {"id": "41", "mime_type": "image/jpeg", "sha256": "x"}},
        ],
    }))  # fmt: skip
    texts = [(m.wamid, m.type, m.text) for m in webhook.messages]
    assert texts == [
        ("wamid.1", "text", "Hello World"),
        ("wamid.2", "interactive", "ya"),  # the id: what the parent would have typed
        ("wamid.3", "interactive", "3"),
        ("wamid.4", "image", None),  # the conversation cannot read it
    ]
    first = webhook.messages[0]
    assert first.wa_id == "16315551234" and first.phone_number_id == "27681414235104944"
    assert first.name == "Kerry Fisher"
    assert first.timestamp == datetime(2016, 1, 30, 1, 57, 9, tzinfo=UTC)


def test_statuses_and_their_errors():
    webhook = parse_webhook(envelope({"statuses": [
        {"id": "wamid.9", "recipient_id": "16315551234", "status": "delivered",
         "timestamp": "1454119029", "conversation": {"id": "c1", "origin": {"type": "service"}}},
        {"id": "wamid.8", "recipient_id": "16315551234", "status": "failed",
         "timestamp": "1454119030",
         "errors": [{"code": 131026, "title": "Message undeliverable"}]},
    ]}))  # fmt: skip
    assert [(s.wamid, s.status) for s in webhook.statuses] == [
        ("wamid.9", "delivered"),
        ("wamid.8", "failed"),
    ]
    assert webhook.statuses[1].errors == [{"code": 131026, "title": "Message undeliverable"}]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account"},
        {"object": "whatsapp_business_account", "entry": [{"changes": "x"}]},
        envelope(
            {
                "messages": [
                    {
                        "from": "abc",
                        "id": "w",
                        "timestamp": "1",
                        "type": "text",
                        "text": {"body": "x"},
                    }
                ]
            }
        ),
        envelope(
            {
                "messages": [
                    {
                        "from": "1",
                        "id": "w",
                        "timestamp": "yesterday",
                        "type": "text",
                        "text": {"body": "x"},
                    }
                ]
            }
        ),
        envelope({"messages": [{"from": "1", "id": "w", "timestamp": "1", "type": "text"}]}),
        envelope(
            {"statuses": [{"id": "w", "recipient_id": "1", "status": "lost", "timestamp": "1"}]}
        ),
    ],
)
def test_anything_else_is_malformed(payload):
    with pytest.raises(MalformedWebhookError):
        parse_webhook(payload)


def test_other_fields_are_no_messages():
    payload = envelope({})
    payload["entry"][0]["changes"][0]["field"] = "account_update"
    assert parse_webhook(payload).messages == []


def test_long_texts_are_split_at_4096_characters_at_a_line_or_a_space():
    text = ("kata " * 2000).strip()  # 9,999 characters
    pieces = split_text(text)
    assert all(len(p) <= 4096 for p in pieces) and len(pieces) == 3
    assert " ".join(pieces) == text  # cut at spaces: nothing lost
    assert split_text("x" * 5000) == ["x" * 4096, "x" * 904]  # no space: cut hard
    assert split_text("halo") == ["halo"]


def test_two_or_three_choices_become_buttons_and_more_a_list():
    yes_no = [{"label": "Ya", "value": "ya"}, {"label": "Tidak", "value": "tidak"}]
    [body] = render_reply("628", "Setuju?", yes_no, WORDS)
    assert body["type"] == "interactive" and body["interactive"]["type"] == "button"
    assert body["interactive"]["action"]["buttons"] == [
        {"type": "reply", "reply": {"id": "ya", "title": "Ya"}},
        {"type": "reply", "reply": {"id": "tidak", "title": "Tidak"}},
    ]
    menu = [
        {"label": f"Pilihan nomor {n} yang panjang sekali", "value": str(n)} for n in range(1, 6)
    ]
    [body] = render_reply("628", "Menu", menu, WORDS)
    action = body["interactive"]["action"]
    assert body["interactive"]["type"] == "list" and action["button"] == "Pilih"
    rows = action["sections"][0]["rows"]
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert all(len(r["title"]) <= 24 for r in rows) and rows[0]["description"]
    # A long button title also makes a list (buttons take 20 characters at most).
    long = [{"label": "Laki-laki (anak laki)", "value": "1"}, {"label": "P", "value": "2"}]
    assert render_reply("628", "Jenis kelamin?", long, WORDS)[0]["interactive"]["type"] == "list"
    # Beyond 10 choices the text, which numbers them, goes alone.
    many = [{"label": str(n), "value": str(n)} for n in range(11)]
    assert render_reply("628", "1. ... 11. ...", many, WORDS)[0]["type"] == "text"
    # No choices: plain text, split like any other.
    bodies = render_reply("628", "x " * 3000, [], WORDS)
    assert [b["type"] for b in bodies] == ["text", "text"]
    assert all(b["to"] == "628" and b["messaging_product"] == "whatsapp" for b in bodies)


def test_the_graph_apis_answers_sorted_for_the_queue():
    ok = json.dumps({"messaging_product": "whatsapp", "contacts": [{"input": "1", "wa_id": "1"}],
                     "messages": [{"id": "wamid.HBgL"}]}).encode()  # fmt: skip
    assert interpret(200, ok) == Accepted("wamid.HBgL")

    def err(code: int) -> bytes:
        return json.dumps({"error": {"message": f"error {code}", "type": "OAuthException",
                                     "code": code, "fbtrace_id": "A"}}).encode()  # fmt: skip

    for code in (4, 80007, 130429, 131048, 131056):
        assert isinstance(interpret(400, err(code)), Retry), code
    assert interpret(429, b"").throttled is True
    assert interpret(503, b"<html>") == Retry("http_5xx", throttled=False)
    assert interpret(400, err(131047)) == Refused(131047, "error 131047", outside_window=True)
    assert interpret(400, err(100)) == Refused(100, "error 100")
    assert isinstance(interpret(200, b"{}"), Refused)  # accepted without an id: not sent
