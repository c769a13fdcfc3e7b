"""FerretDB's PostgreSQL pool: the two wedges of issue 14, and the stack's sizing that avoids them.

FerretDB v1.24.2 (PostgreSQL backend) holds a PostgreSQL connection for every command in
flight and for every cursor not exhausted or killed yet. Both wedges need a full pool:

- (a) an index created while the pool is full: `createIndexes` takes the metadata
  registry's write lock and waits for a connection with it held; the commands holding
  connections wait on that lock (their next command reads the registry), so nothing ever
  moves again. `buildInfo` answers (it touches no backend), `ping` does not.
- (b) more holders than the pool: each waits for a second connection that never frees.

The stack sizes the pool so it is never full (devtools/stack_env.sh, docs/ferretdb.md):
the same load, and an index creation, against that pool leave `ping` answering.
Each test starts a FerretDB of its own on the session's PostgreSQL; a wedged one is
SIGKILLed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
from pymongo.errors import PyMongoError

from chatbot.db.indexes import ensure_indexes
from tests.harness import FERRETDB_POOL_MAX_CONNS, FerretDB, Postgres, database_pool

pytestmark = pytest.mark.integration

TINY = 4


@pytest.fixture
def make_ferretdb(postgres: Postgres | None, tmp_path: Path) -> Iterator:
    if postgres is None:
        pytest.skip("MONGO_URI points at an outside server")
    started: list[FerretDB] = []

    def make(pool: int) -> FerretDB:
        server = FerretDB(
            tmp_path / f"ferretdb-{len(started)}", postgresql_url=postgres.url, pool_max_conns=pool
        )
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop(signal.SIGKILL)  # a wedged one does not stop on TERM


def hold_and_write(uri: str, holders: int, create_index: bool) -> dict:
    """`holders` threads each open a cursor (one connection), then write (a second one)
    and finish the cursor; optionally an index is created meanwhile. Then, from a fresh
    client: does `buildInfo` answer, does `ping` within 3 s, how many holders finished."""
    db_name = f"pool_{time.monotonic_ns()}"
    client = pymongo.MongoClient(uri, maxPoolSize=holders + 8, socketTimeoutMS=20_000)
    db = client[db_name]
    db.seed.insert_many([{"i": i} for i in range(20)])
    db.out.insert_one({})
    opened = threading.Barrier(holders + 1, timeout=15)
    finished: list[int] = []

    def holder(n: int) -> None:
        cursor = db.seed.find().batch_size(1)
        next(cursor)
        opened.wait()
        time.sleep(0.5)  # the index creation (when asked) goes first
        try:
            db.out.insert_one({"n": n})
            list(cursor)
            finished.append(n)
        except PyMongoError:
            pass

    threads = [threading.Thread(target=holder, args=(n,), daemon=True) for n in range(holders)]
    for t in threads:
        t.start()
    opened.wait()

    def index() -> None:
        with contextlib.suppress(PyMongoError):  # a wedged server is killed under it
            ensure_indexes(client[f"{db_name}_indexed"])

    if create_index:
        threading.Thread(target=index, daemon=True).start()
    deadline = time.monotonic() + 5
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.01))
    probe = pymongo.MongoClient(uri, socketTimeoutMS=3000, serverSelectionTimeoutMS=3000)
    result = {"buildInfo": "version" in probe.admin.command("buildInfo"), "finished": len(finished)}
    started = time.monotonic()
    try:
        probe[db_name].command("ping")
        result["ping_s"] = round(time.monotonic() - started, 2)
    except PyMongoError as exc:
        result["ping_s"] = type(exc).__name__
    probe.close()
    client.close()
    print(result)
    return result


def test_a_full_pool_and_an_index_creation_wedge_ferretdb(make_ferretdb):
    """Wedge (a), as measured on make run's starts: the registry lock held, the pool full."""
    server = make_ferretdb(TINY)
    result = hold_and_write(server.uri, TINY, create_index=True)
    assert result == {"buildInfo": True, "finished": 0, "ping_s": "NetworkTimeout"}


def test_more_holders_than_the_pool_wedge_ferretdb(make_ferretdb):
    """Wedge (b): every holder waits in the pool for a second connection."""
    server = make_ferretdb(TINY)
    result = hold_and_write(server.uri, TINY, create_index=False)
    assert result == {"buildInfo": True, "finished": 0, "ping_s": "NetworkTimeout"}


def test_the_stacks_pool_holds_everything_the_stack_runs_at_once(make_ferretdb):
    """Every thread of the stack (2 instances x 2 workers x 16, and the 5 beside them)
    holding a cursor and writing, with an index created meanwhile: nothing waits.

    With FerretDB's default pool (50) this wedged as (a) does.
    """
    assert database_pool() == FERRETDB_POOL_MAX_CONNS
    server = make_ferretdb(FERRETDB_POOL_MAX_CONNS)
    holders = 2 * 2 * 16 + 5
    result = hold_and_write(server.uri, holders, create_index=True)
    assert result["buildInfo"] and result["finished"] == holders, result
    assert isinstance(result["ping_s"], float) and result["ping_s"] < 1.0, result
