"""Indexes are created in one place, through a Mongo built from the settings."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pymongo
import pytest
from pymongo.errors import PyMongoError

from chatbot.db.indexes import INDEXES, ensure_indexes_with
from tests.harness import free_port

pytestmark = pytest.mark.integration


def test_start_up_creates_every_index_with_the_settings(settings):
    report = ensure_indexes_with(settings)
    assert report == {c: [m.document["name"] for m in models] for c, models in INDEXES.items()}
    with pymongo.MongoClient(settings.mongo_uri, serverSelectionTimeoutMS=2000) as client:
        names = set(client[settings.mongo_db]["messages"].index_information())
    assert "userId_1_clientMessageId_1" in names
    assert ensure_indexes_with(settings) == report  # idempotent


def test_a_refused_database_fails_start_up_at_once(settings):
    down = replace(settings, mongo_uri=f"mongodb://127.0.0.1:{free_port()}/")
    started = time.monotonic()
    with pytest.raises(PyMongoError):
        ensure_indexes_with(down)
    assert time.monotonic() - started < 1.5


def test_a_frozen_database_delays_start_up_by_the_health_budget_only(settings):
    # Accepts connections, never answers; server selection alone would wait 10 s.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", free_port()))
        silent.listen(16)
        frozen = replace(
            settings,
            mongo_uri=f"mongodb://127.0.0.1:{silent.getsockname()[1]}/",
            mongo_server_selection_timeout_ms=10_000,
            mongo_connect_timeout_ms=10_000,
            health_timeout_s=0.8,
        )
        started = time.monotonic()
        with pytest.raises(PyMongoError):
            ensure_indexes_with(frozen)
        assert time.monotonic() - started < 3
