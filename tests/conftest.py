"""Fixtures: real FerretDB and Redis for the session, one database and key prefix per test.

FerretDB runs on a throw-away PostgreSQL cluster, one for the whole session.

Set MONGO_URI (any MongoDB 6+) or REDIS_URL to test against servers of your own
instead of the ones the harness starts.
"""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pymongo
import pytest
import redis
import time_machine

from chatbot import create_app
from chatbot.db.indexes import ensure_indexes
from chatbot.extensions import mongo
from chatbot.settings import Settings
from tests.harness import FerretDB, Postgres, Redis
from tests.support import FROZEN_AT


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis (tests/integration/test_fuzz.py) keeps caches in .hypothesis/ of the working
    # directory unless told otherwise: keep them out of the tree, in the temporary directory
    # (kept between runs: they are caches). Read once, at hypothesis's first use, which is
    # while test modules are collected, after this hook.
    os.environ.setdefault(
        "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "chatbot-hypothesis")
    )


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres | None]:
    """FerretDB's PostgreSQL, or None when MONGO_URI points at an outside server."""
    if os.environ.get("MONGO_URI"):
        yield None
        return
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ferretdb(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres | None
) -> Iterator[FerretDB | None]:
    """The harness's FerretDB, or None when MONGO_URI points at an outside server."""
    if postgres is None:
        yield None
        return
    server = FerretDB(tmp_path_factory.mktemp("ferretdb"), postgresql_url=postgres.url)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis | None]:
    """The harness's Redis, or None when REDIS_URL points at an outside server."""
    if os.environ.get("REDIS_URL"):
        yield None
        return
    server = Redis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_uri(ferretdb: FerretDB | None) -> str:
    return ferretdb.uri if ferretdb else os.environ["MONGO_URI"]


@pytest.fixture(scope="session")
def redis_url(redis_server: Redis | None) -> str:
    return redis_server.url if redis_server else os.environ["REDIS_URL"]


@pytest.fixture(autouse=True)
def frozen_clock(request: pytest.FixtureRequest) -> Iterator[time_machine.Traveller | None]:
    """Integration tests run at FROZEN_AT (tests/support.py), the clock ticking on from it.

    Their app runs in this process, so time-machine moves its clock too: children's ages,
    screening forms, next screening dates, expiry and archive cutoffs do not depend on
    the day the suite runs. Durations stay real (the clock ticks; monotonic clocks are
    untouched). The end-to-end tests' app runs in gunicorn, out of reach: not frozen.
    """
    if request.node.get_closest_marker("integration") is None:
        yield None
        return
    with time_machine.travel(FROZEN_AT, tick=True) as traveller:
        yield traveller


@pytest.fixture
def settings(mongo_uri: str, redis_url: str) -> Iterator[Settings]:
    """Settings for one test: its own database and Redis key prefix, dropped afterwards."""
    tag = uuid.uuid4().hex[:12]
    s = replace(
        Settings(),
        env="testing",
        instance_id="test",
        mongo_uri=mongo_uri,
        mongo_db=f"test_{tag}",
        redis_url=redis_url,
        redis_key_prefix=f"test:{tag}:",
        otp_sender="tests.support:CapturingSender",
        # Tests drive conversations faster than any person; rate limits have their own tests.
        chat_rate_limit="10000 per minute",
        rate_limit_default="10000 per minute",
    ).checked()
    yield s
    with pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=2000) as client:
        client.drop_database(s.mongo_db)
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{s.redis_key_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def app(settings: Settings):
    app = create_app(settings)
    app.config.update(TESTING=True)
    with app.app_context():
        ensure_indexes(mongo.db)
    yield app
    mongo.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of the test's own, to stop, freeze and start again; stopped afterwards
    whatever the test did (a failed assertion would otherwise leave it running)."""
    server = Redis(tmp_path / "own-redis")
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)  # a frozen one would not hear the TERM
    server.stop()
