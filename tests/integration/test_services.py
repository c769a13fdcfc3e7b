"""The application services: built once per app, given the app's clock."""

from datetime import UTC, datetime

import pytest

from chatbot import create_app
from chatbot.clock import FrozenClock
from chatbot.db.indexes import ensure_indexes
from chatbot.extensions import mongo
from tests.support import ApiChat

pytestmark = pytest.mark.integration


def test_services_are_built_once_per_app_not_per_request(app):
    services = app.extensions["chatbot.services"]
    with app.app_context():
        chat = services.chat
    ApiChat(app.test_client(), "081300000901").send("halo")
    with app.app_context():
        assert services.chat is chat
        assert services.users is chat.users
    # A new database client (a fork, or a close) gets services bound to it.
    mongo.close()
    with app.app_context():
        assert services.chat is not chat


def test_a_frozen_clock_sets_every_timestamp_of_a_turn(settings):
    at = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    app = create_app(settings, clock=FrozenClock(at))
    with app.app_context():
        ensure_indexes(mongo.db)
    try:
        chat = ApiChat(app.test_client(), "081300000902")
        turn = chat.send("halo").get_json()
        assert datetime.fromisoformat(turn["message"]["createdAt"]) == at
        assert all(datetime.fromisoformat(r["createdAt"]) > at for r in turn["replies"])
    finally:
        mongo.close()
