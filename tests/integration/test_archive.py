"""Archiving old messages against the real FerretDB: batches, cutoff, interruptions, counts."""

import json
from datetime import timedelta

import pytest
from bson import ObjectId

from chatbot.cli import run_sweep
from chatbot.db.archive import MessageArchive
from chatbot.extensions import mongo
from tests.support import FROZEN_AT

pytestmark = pytest.mark.integration

# The clock's instant in integration tests (tests/conftest.py), where the commands and the
# sweep take their cutoff from; whole seconds: what BSON stores (milliseconds), so
# documents compare equal after a round trip.
NOW = FROZEN_AT
CUTOFF = NOW - timedelta(days=90)


def message(days_old: float, n: int = 0, **extra):
    return {
        "_id": ObjectId(),
        "userId": ObjectId(),
        "direction": "outbound",
        "text": f"message {n}",
        "quickReplies": [{"label": "Ya", "value": "ya"}],
        "status": "sent",
        "createdAt": NOW - timedelta(days=days_old),
        **extra,
    }


def seed(old: int, new: int = 0, edge: bool = True):
    """`old` messages past CUTOFF and `new` ones within it (with `edge`, one a second inside)."""
    docs = [message(100 + n, n) for n in range(old)]
    docs += [message(89, old + n) for n in range(new)]
    if new and edge:
        docs[-1]["createdAt"] = CUTOFF + timedelta(seconds=1)
    mongo.db["messages"].insert_many(docs)
    return docs


def ids(collection: str) -> set:
    return {d["_id"] for d in mongo.db[collection].find({}, {"_id": 1})}


def test_moves_only_messages_past_the_cutoff_in_batches(app):
    with app.app_context():
        docs = seed(old=7, new=3)
        report = MessageArchive(mongo.db).archive_before(CUTOFF, batch_size=3)
        assert report == {"moved": 7, "verified": 7, "unverified": 0, "batches": 3}
        assert ids("messages") == {d["_id"] for d in docs[7:]}
        archived = {d["_id"]: d for d in mongo.db["messages_archive"].find()}
        assert archived.keys() == {d["_id"] for d in docs[:7]}
        for doc in docs[:7]:  # whole documents, not just ids
            assert archived[doc["_id"]] == doc

        again = MessageArchive(mongo.db).archive_before(CUTOFF, batch_size=3)
        assert again == {"moved": 0, "verified": 0, "unverified": 0, "batches": 0}
        assert mongo.db["messages_archive"].count_documents({}) == 7


def test_a_crash_between_copy_and_delete_neither_loses_nor_duplicates(app):
    with app.app_context():
        docs = seed(old=5, new=1)
        # An earlier run copied three (one of them only partly through its batch) and died
        # before deleting anything.
        mongo.db["messages_archive"].insert_many(docs[:3])
        report = MessageArchive(mongo.db).archive_before(CUTOFF, batch_size=2)
        assert report == {"moved": 5, "verified": 5, "unverified": 0, "batches": 3}
        assert ids("messages") == {docs[5]["_id"]}
        assert mongo.db["messages_archive"].count_documents({}) == 5
        assert ids("messages_archive") == {d["_id"] for d in docs[:5]}


def test_a_run_killed_mid_batch_finishes_on_the_next_run(app, monkeypatch):
    with app.app_context():
        docs = seed(old=6)
        archive = MessageArchive(mongo.db)
        deletes = archive._delete
        calls = []

        def crash_on_second_delete(batch):
            calls.append(len(batch))
            if len(calls) == 2:
                raise ConnectionError("killed")
            return deletes(batch)

        monkeypatch.setattr(archive, "_delete", crash_on_second_delete)
        with pytest.raises(ConnectionError):
            archive.archive_before(CUTOFF, batch_size=2)
        # First batch moved, second copied but still in messages, third untouched.
        assert len(ids("messages")) == 4
        assert len(ids("messages_archive")) == 4

        report = MessageArchive(mongo.db).archive_before(CUTOFF, batch_size=2)
        assert report["moved"] == 4
        assert report["unverified"] == 0
        assert ids("messages") == set()
        assert ids("messages_archive") == {d["_id"] for d in docs}
        assert mongo.db["messages_archive"].count_documents({}) == 6


def test_a_stale_copy_is_replaced_before_its_source_is_deleted(app):
    with app.app_context():
        docs = seed(old=2)
        mongo.db["messages_archive"].insert_many(docs)  # copied, then the run died
        delivered = NOW - timedelta(days=99)
        mongo.db["messages"].update_one(
            {"_id": docs[0]["_id"]}, {"$set": {"status": "delivered", "deliveredAt": delivered}}
        )
        report = MessageArchive(mongo.db).archive_before(CUTOFF)
        assert report["moved"] == 2
        copy = mongo.db["messages_archive"].find_one({"_id": docs[0]["_id"]})
        assert copy["status"] == "delivered"
        assert copy["deliveredAt"] == delivered


def test_a_message_changed_during_the_batch_stays_for_the_next_run(app, monkeypatch):
    with app.app_context():
        docs = seed(old=3)
        archive = MessageArchive(mongo.db)
        verify = archive._verified

        def receipt_arrives_after_verification(batch):
            verified = verify(batch)
            mongo.db["messages"].update_one(
                {"_id": docs[1]["_id"]}, {"$set": {"status": "delivered"}}
            )
            return verified

        monkeypatch.setattr(archive, "_verified", receipt_arrives_after_verification)
        report = archive.archive_before(CUTOFF)
        assert report == {"moved": 2, "verified": 3, "unverified": 0, "batches": 1}
        assert ids("messages") == {docs[1]["_id"]}

        report = MessageArchive(mongo.db).archive_before(CUTOFF)
        assert report["moved"] == 1
        assert ids("messages") == set()
        copy = mongo.db["messages_archive"].find_one({"_id": docs[1]["_id"]})
        assert copy["status"] == "delivered"


def test_nothing_unverified_is_deleted(app, monkeypatch):
    with app.app_context():
        docs = seed(old=4)
        archive = MessageArchive(mongo.db)
        copy = archive._copy

        def lose_one_write(batch):
            copy(batch[1:])  # the archive silently dropped the first document

        monkeypatch.setattr(archive, "_copy", lose_one_write)
        report = archive.archive_before(CUTOFF, batch_size=2)
        # The verified one of the first batch moved; the lost one stayed; the run stopped.
        assert report == {"moved": 1, "verified": 1, "unverified": 1, "batches": 1}
        assert ids("messages") == {d["_id"] for d in (docs[0], docs[2], docs[3])}
        assert ids("messages_archive") == {docs[1]["_id"]}

        report = MessageArchive(mongo.db).archive_before(CUTOFF, batch_size=2)
        assert report["moved"] == 3
        assert ids("messages") == set()
        assert mongo.db["messages_archive"].count_documents({}) == 4


def test_archive_messages_command(app):
    with app.app_context():
        docs = seed(old=3, new=2, edge=False)  # the command's cutoff is its own now
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["chatbot", "archive-messages", "--older-than-days", "90", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"moved": 3, "verified": 3, "unverified": 0, "batches": 2}
    with app.app_context():
        assert ids("messages") == {d["_id"] for d in docs[3:]}
    result = runner.invoke(args=["chatbot", "archive-messages"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["moved"] == 0
    result = runner.invoke(args=["chatbot", "archive-messages", "--batch-size", "0"])
    assert result.exit_code != 0


def test_the_sweep_archives_with_the_configured_age(app):
    with app.app_context():
        docs = seed(old=2, new=1, edge=False)
        report = run_sweep()
        assert report["messagesArchived"] == 2
        assert ids("messages") == {docs[2]["_id"]}
        assert run_sweep()["messagesArchived"] == 0


def test_archive_indexes_exist_on_the_server(app):
    with app.app_context():
        info = mongo.db["messages_archive"].index_information()
        assert info["userId_1_createdAt_-1"]["key"] == [("userId", 1), ("createdAt", -1)]
        assert "_id_" in info
        messages = mongo.db["messages"].index_information()
        assert messages["createdAt_1"]["key"] == [("createdAt", 1)]
        assert messages["replyTo_1"]["key"] == [("replyTo", 1)]
