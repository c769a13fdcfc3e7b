"""FerretDB up but its PostgreSQL down: the API answers 503, not 500."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from chatbot import create_app
from chatbot.db.indexes import ensure_indexes
from chatbot.extensions import mongo
from tests.harness import FerretDB
from tests.support import ApiChat

pytestmark = pytest.mark.integration


def test_requests_answer_503_while_the_storage_behind_ferretdb_is_down(settings, tmp_path):
    if os.environ.get("MONGO_URI"):
        pytest.skip("needs the harness's FerretDB on PostgreSQL")
    server = FerretDB(tmp_path / "ferretdb")  # with a PostgreSQL cluster of its own
    server.start()
    try:
        app = create_app(replace(settings, mongo_uri=server.uri))
        with app.app_context():
            ensure_indexes(mongo.db)
        chat = ApiChat(app.test_client(), "081300000601")
        chat.say("halo")
        server.postgres.stop()
        reply = chat.send("ya")
        assert reply.status_code == 503, reply.get_json()
        assert reply.get_json()["error"]["code"] == "service_unavailable"
        assert reply.headers["Retry-After"]
        server.postgres.start()
        assert "Pilih bahasa" in chat.say("ya")
    finally:
        server.stop()
