"""Settling inbound messages against the real FerretDB: handled, failed, recovered, batches."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from chatbot.cli import run_sweep
from chatbot.db.settle import NO_REPLY, MessageSettler
from chatbot.extensions import mongo
from tests.support import ApiChat

pytestmark = pytest.mark.integration

NO_CHANGE = {"handled": 0, "failed": 0, "recovered": 0}


def at(seconds_ago: float) -> datetime:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).replace(microsecond=0)


def inbound(seconds_ago: float, status: str = "received", **extra):
    doc = {
        "_id": ObjectId(),
        "userId": ObjectId(),
        "direction": "inbound",
        "text": "ya",
        "clientMessageId": str(ObjectId()),
        "status": status,
        "createdAt": at(seconds_ago),
        **extra,
    }
    mongo.db["messages"].insert_one(doc)
    return doc


def reply(to, created: datetime, status: str = "sent", **extra):
    doc = {
        "_id": ObjectId(),
        "userId": to["userId"],
        "direction": "outbound",
        "text": "" if status == "failed" else "Pertanyaan 1/10",
        "replyTo": to["_id"],
        "status": status,
        "createdAt": created,
        **extra,
    }
    mongo.db["messages"].insert_one(doc)
    return doc


def stored(doc):
    return mongo.db["messages"].find_one({"_id": doc["_id"]})


def settle(batch_size: int = 500, after_s: int = 60):
    now = datetime.now(UTC)
    return MessageSettler(mongo.db).settle(now - timedelta(seconds=after_s), now, batch_size)


def test_received_with_a_reply_is_handled_at_its_first_reply(app):
    with app.app_context():
        message = inbound(120)
        second = reply(message, message["createdAt"] + timedelta(milliseconds=2))
        first = reply(message, message["createdAt"] + timedelta(milliseconds=1))
        assert settle() == {"handled": 1, "failed": 0, "recovered": 0}
        doc = stored(message)
        assert doc["status"] == "handled"
        assert doc["handledAt"] == first["createdAt"]
        assert "failureReason" not in doc
        # The replies themselves are not touched.
        assert stored(first)["status"] == stored(second)["status"] == "sent"


def test_received_without_a_reply_fails_and_a_failure_record_is_no_reply(app):
    with app.app_context():
        crashed = inbound(120)
        errored = inbound(120)
        reply(errored, errored["createdAt"], status="failed", failureReason="processing_error: X")
        before = datetime.now(UTC).replace(microsecond=0)
        assert settle() == {"handled": 0, "failed": 2, "recovered": 0}
        for message in (crashed, errored):
            doc = stored(message)
            assert doc["status"] == "failed"
            assert doc["failureReason"] == NO_REPLY
            assert doc["failedAt"] >= before


def test_only_received_inbound_messages_past_the_delay_are_settled(app):
    with app.app_context():
        recent = inbound(5)  # its turn may still be running
        handled = inbound(300, status="handled", handledAt=at(299))
        outbound = reply(inbound(300, status="handled"), at(299), status="queued")
        assert settle() == NO_CHANGE
        assert stored(recent)["status"] == "received"
        assert stored(handled) == handled
        assert stored(outbound)["status"] == "queued"
        reply(recent, at(4))
        assert settle(after_s=1)["handled"] == 1
        assert stored(recent)["status"] == "handled"


def test_settles_in_batches_and_a_second_run_changes_nothing(app):
    with app.app_context():
        answered = [inbound(200 + n) for n in range(5)]
        for message in answered:
            reply(message, message["createdAt"] + timedelta(milliseconds=1))
        lost = [inbound(200 + n) for n in range(3)]
        assert settle(batch_size=2) == {"handled": 5, "failed": 3, "recovered": 0}
        assert settle(batch_size=2) == NO_CHANGE
        statuses = {d["status"] for d in map(stored, answered)}
        assert statuses == {"handled"}
        assert {d["status"] for d in map(stored, lost)} == {"failed"}


def test_a_failed_message_answered_by_a_later_retry_is_recovered(app):
    with app.app_context():
        message = inbound(600)
        assert settle()["failed"] == 1
        # The client retried with the same clientMessageId long after; the turn replied.
        answer = reply(message, at(10))
        assert settle() == {"handled": 0, "failed": 0, "recovered": 1}
        doc = stored(message)
        assert doc["status"] == "handled"
        assert doc["handledAt"] == answer["createdAt"]
        assert "failureReason" not in doc
        assert "failedAt" not in doc
        assert settle() == NO_CHANGE


def test_a_failure_of_another_kind_is_left_alone(app):
    with app.app_context():
        message = inbound(600, status="failed", failureReason="rejected")
        reply(message, at(10))
        assert settle() == NO_CHANGE
        assert stored(message)["status"] == "failed"


def test_settle_messages_command_and_the_sweep(app):
    with app.app_context():
        answered = inbound(30)
        reply(answered, at(29))
        lost = inbound(30)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["chatbot", "settle-messages"])  # SETTLE_AFTER_S = 60
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == NO_CHANGE
    result = runner.invoke(
        args=["chatbot", "settle-messages", "--older-than-seconds", "10", "--batch-size", "1"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"handled": 1, "failed": 1, "recovered": 0}

    with app.app_context():
        late = inbound(120)
        report = run_sweep()
        assert report["messagesHandled"] == 0
        assert report["messagesFailed"] == 1
        assert report["messagesRecovered"] == 0
        assert stored(late)["status"] == "failed"
        assert stored(answered)["status"] == "handled"
        assert stored(lost)["failureReason"] == NO_REPLY


def test_messages_of_a_real_conversation_settle_as_handled(app):
    chat = ApiChat(app.test_client(), "081300000090")
    chat.say("halo")
    chat.say("ya")
    with app.app_context():
        settle(after_s=-5)  # everything so far, however recent
        inbound_docs = list(mongo.db["messages"].find({"direction": "inbound"}))
        assert len(inbound_docs) == 2
        for doc in inbound_docs:
            assert doc["status"] == "handled"
            first = min(
                r["createdAt"]
                for r in mongo.db["messages"].find({"replyTo": doc["_id"], "status": "sent"})
            )
            assert doc["handledAt"] <= first
