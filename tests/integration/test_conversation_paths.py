"""The parent's paths through the real API: leaving and resuming, names, dates, budgets."""

import pytest

from chatbot.extensions import mongo, redis_store
from tests.support import TODDLER, ApiChat, Commands

pytestmark = pytest.mark.integration


@pytest.fixture
def counted(app):
    commands = Commands()
    mongo.add_listener(commands)
    return commands


def costed(chat, commands, text):
    commands.take()
    reply = chat.say(text)
    writes, reads, seen = commands.take()
    assert writes <= 5 and reads <= 1, (text, seen)
    return reply


def test_leaving_for_the_menu_and_coming_back_keeps_the_answers(app, counted):
    with app.app_context():
        app.extensions["chatbot.services"].banks.active()
    chat = ApiChat(app.test_client(), "081300000401")
    chat.register_with_child("Muh. Rizki", TODDLER)
    assert "Mulai skrining Muh. Rizki sekarang?" in chat.last["replies"][-1]["text"]
    chat.say("ya")
    chat.say("ya")
    chat.say("tidak")
    costed(chat, counted, "menu")
    assert chat.last["step"] == "menu"
    offer = costed(chat, counted, "1")
    assert "Muh. Rizki belum selesai (2/10 terjawab)" in offer and chat.last["step"] == "resume"
    assert "Pertanyaan 3/10" in costed(chat, counted, "1")
    with app.app_context():
        done = mongo.db["questionnaires"].find_one({"status": "in_progress"})
    assert [a["answer"] for a in done["answers"]] == [True, False]


def test_the_offer_survives_a_lost_session_cache(app):
    chat = ApiChat(app.test_client(), "081300000402")
    chat.register_with_child("A. Rahman", TODDLER)
    chat.say("ya")
    chat.say("ya")
    chat.say("menu")
    with app.app_context():
        redis_store.client.delete(*redis_store.client.keys(redis_store.key("session", "*")))
    assert "belum selesai (1/10 terjawab)" in chat.say("skrining")  # read from MongoDB
    assert "Pertanyaan 1/10" in chat.say("2")  # start over


def test_help_at_screen_now_and_the_plain_next_date(app):
    chat = ApiChat(app.test_client(), "081300000403")
    chat.register_with_child("I Gede Putu", TODDLER)
    assert "Mulai skrining I Gede Putu sekarang?" in chat.say("bantuan")
    assert chat.last["step"] == "confirm_screen"
    chat.say("ya")
    result = chat.answer_all(["ya"] * 10)
    assert "skrining rutin mulai" in result
    assert "saat I Gede Putu berusia sekitar 24 bulan" in result
