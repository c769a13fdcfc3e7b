"""Indexes are created in one place, through a Mongo built from the settings."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pymongo
import pytest
from pymongo.errors import PyMongoError

from chatbot import create_app
from chatbot.db.indexes import INDEXES, ensure_indexes_with
from tests.harness import FerretDB, free_port

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


def test_init_db_waits_for_a_database_that_comes_up_late(settings, postgres, tmp_path):
    if postgres is None:
        pytest.skip("MONGO_URI points at an outside server")
    late = FerretDB(tmp_path / "late", postgresql_url=postgres.url)
    starter = threading.Timer(1.5, late.start)
    starter.start()
    retries: list[str] = []
    try:
        report = ensure_indexes_with(
            replace(settings, mongo_uri=late.uri),
            wait_s=30,
            on_retry=lambda exc, left: retries.append(type(exc).__name__),
        )
    finally:
        starter.join()
        late.stop()
    assert retries, "the database was up at once: nothing was waited for"
    assert report == {c: [m.document["name"] for m in models] for c, models in INDEXES.items()}


def test_init_db_says_why_when_the_database_never_answers(settings):
    app = create_app(replace(settings, mongo_uri=f"mongodb://127.0.0.1:{free_port()}/"))
    result = app.test_cli_runner().invoke(args=["chatbot", "init-db", "--wait", "1.5"])
    assert result.exit_code == 1, result.output
    assert "the database does not answer yet (ServerSelectionTimeoutError)" in result.output
    assert "did not answer within 1.5 s" in result.output
    assert "no index was created" in result.output
