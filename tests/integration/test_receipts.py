"""Delivery receipts: one insert per receipt, applied to `messages` by the sweeper.

A receipt for the replies of the user's last turns is logged (chatbot/db/receipts.py)
instead of updating `messages`, which FerretDB would scan whole; reads report the
logged replies as delivered at once, and the sweep stores it.
"""

from __future__ import annotations

import pytest
from bson import ObjectId

from chatbot.db.receipts import ReceiptLog
from chatbot.extensions import mongo
from tests.support import ApiChat, Commands

pytestmark = pytest.mark.integration


def receipt(chat: ApiChat, ids: list[str]):
    response = chat.client.post(
        "/api/v1/chat/receipts", json={"messageIds": ids}, headers=chat.headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["delivered"]


def stored_statuses(ids: list[str]) -> set[str]:
    found = mongo.db["messages"].find({"_id": {"$in": [ObjectId(i) for i in ids]}})
    return {d["status"] for d in found}


def test_a_receipt_for_the_last_turn_is_one_insert_and_the_sweep_stores_it(app):
    commands = Commands()
    mongo.add_listener(commands)
    chat = ApiChat(app.test_client(), "081300000301")
    chat.say("halo")
    replies = [r["id"] for r in chat.last["replies"]]
    commands.take()
    assert receipt(chat, replies) == len(replies)
    assert commands.take()[2] == {"insert": 1}  # the receipt's, nothing else
    with app.app_context():
        assert stored_statuses(replies) == {"sent"}  # not yet stored...
        # ...but every read reports it: the first page, and MongoDB's pages.
        assert mongo.db["receipts"].count_documents({}) == 1
    history = chat.get("/api/v1/chat/messages").get_json()["messages"]
    assert {m["status"] for m in history if m["id"] in replies} == {"delivered"}
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["chatbot", "sweep"]).exit_code == 0
        assert stored_statuses(replies) == {"delivered"}
        assert mongo.db["receipts"].count_documents({}) == 0
        doc = mongo.db["messages"].find_one({"_id": ObjectId(replies[0])})
        assert doc["deliveredAt"] is not None
    # A second copy of the receipt moves nothing (the database decides, and says 0).
    assert receipt(chat, replies) == 0


def test_reads_from_mongodb_report_logged_receipts(app):
    chat = ApiChat(app.test_client(), "081300000302")
    chat.say("halo")
    replies = [r["id"] for r in chat.last["replies"]]
    assert receipt(chat, replies) == len(replies)
    with app.app_context():
        page, _ = app.extensions["chatbot.services"].chat.messages.recent(chat_user(chat), 50)
    assert {m["status"] for m in page if m["id"] in replies} == {"delivered"}


def test_two_copies_of_one_receipt_count_once(app):
    chat = ApiChat(app.test_client(), "081300000303")
    chat.say("halo")
    replies = [r["id"] for r in chat.last["replies"]]
    assert receipt(chat, replies) == len(replies)
    assert receipt(chat, replies) == 0


def test_the_sweep_moves_only_the_users_own_replies_and_only_once(app):
    ana = ApiChat(app.test_client(), "081300000304")
    bob = ApiChat(app.test_client(), "081300000305")
    ana.say("halo")
    bob.say("halo")
    anas = [r["id"] for r in ana.last["replies"]]
    bobs = [r["id"] for r in bob.last["replies"]]
    with app.app_context():
        log = ReceiptLog(mongo.db)
        # A receipt in Bob's name for Ana's replies (the API never logs one: it would
        # answer from the database) and Bob's own, applied in batches of one.
        log.record(chat_user(bob), anas, app.extensions["chatbot.services"].clock.now())
        log.record(chat_user(bob), bobs, app.extensions["chatbot.services"].clock.now())
        assert log.apply(batch_size=1) == len(bobs)
        assert stored_statuses(anas) == {"sent"}
        assert stored_statuses(bobs) == {"delivered"}
        assert log.apply() == 0  # nothing left, nothing moved twice


def chat_user(chat: ApiChat) -> str:
    """The user's id (inside an app context)."""
    found = mongo.db["users"].find_one({"phoneNumber": "+62" + chat.phone[1:]})
    assert found is not None
    return str(found["_id"])
