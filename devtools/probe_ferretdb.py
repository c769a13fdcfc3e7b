"""Check on this machine what docs/ferretdb.md says about FerretDB, and print the findings.

    .venv/bin/python devtools/probe_ferretdb.py [--backend postgresql|sqlite] [MONGO_URI]

Without a URI it starts .build/ferretdb on a free port with the test harness
(tests/harness.py): on a throw-away PostgreSQL cluster (the default, as `make run`
and the tests) or on a throw-away SQLite directory (`--backend sqlite`), and also
reports start-up times and memory. With a URI it probes that server instead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pymongo
from pymongo.errors import OperationFailure, PyMongoError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import FerretDB, Postgres  # noqa: E402 -- after sys.path


def describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__} code={code}: {str(exc).splitlines()[0][:160]}"


def attempt(label: str, action: Callable[[], object]) -> None:
    try:
        action()
        print(f"{label}: accepted")
    except PyMongoError as exc:
        print(f"{label}: {describe(exc)}")


def probe(uri: str) -> None:
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
    info = client.server_info()
    print(f"server: version {info.get('version')}, ferretdbVersion {info.get('ferretdbVersion')}")
    db = client["probe"]
    client.drop_database("probe")

    users = db["users"]
    users.create_index("phone", unique=True)
    users.insert_many([{"phone": "1"}, {"phone": "2"}])
    attempt("unique violation on insert", lambda: users.insert_one({"phone": "1"}))
    attempt(
        "unique violation on update",
        lambda: users.update_one({"phone": "2"}, {"$set": {"phone": "1"}}),
    )
    attempt(
        "unique violation by an upsert that inserts",
        lambda: users.update_one({"phone": "3"}, {"$set": {"phone": "1"}}, upsert=True),
    )
    attempt(
        "unique violation on find_one_and_update",
        lambda: users.find_one_and_update({"phone": "2"}, {"$set": {"phone": "1"}}),
    )
    print("documents after the failed updates:", sorted(d["phone"] for d in users.find()))
    attempt(
        "two documents missing a uniquely-indexed field",
        lambda: users.insert_many([{"name": "a"}, {"name": "b"}]),
    )
    attempt("TTL index", lambda: db["sessions"].create_index("expiresAt", expireAfterSeconds=0))
    attempt(
        "partialFilterExpression (unique, $type string)",
        lambda: db["messages"].create_index(
            [("userId", 1), ("clientMessageId", 1)],
            unique=True,
            partialFilterExpression={"clientMessageId": {"$type": "string"}},
        ),
    )
    attempt(
        "$lookup",
        lambda: list(
            users.aggregate(
                [{"$lookup": {"from": "x", "localField": "a", "foreignField": "b", "as": "c"}}]
            )
        ),
    )
    attempt(
        "find_one_and_update with projection",
        lambda: users.find_one_and_update({"phone": "2"}, {"$set": {"x": 1}}, projection={"x": 1}),
    )

    concurrency(db)
    latency(db)
    index_use(db)
    client.drop_database("probe")
    client.close()


def index_use(db, documents: int = 20_000) -> None:
    """What explain() says about a filter on `_id` and on an indexed field."""
    coll = db["explain"]
    coll.create_index("k")
    coll.insert_many([{"k": i, "pad": "x" * 300} for i in range(documents)])
    some = coll.find_one({"k": documents // 2})
    for label, flt in (("_id", {"_id": some["_id"]}), ("indexed field", {"k": 7})):
        plan = coll.find(flt).explain()
        planner = plan.get("queryPlanner", {})
        # PostgreSQL backend: its EXPLAIN; SQLite backend: its query plan rows; MongoDB: stages.
        node = planner.get("Plan", planner.get("winningPlan", planner))
        if isinstance(node, dict):
            node = node.get("Node Type") or node.get("stage") or node
        started = time.perf_counter()
        for _ in range(20):
            coll.find_one(flt)
        took = (time.perf_counter() - started) / 20 * 1000
        print(
            f"explain, filter on {label}, {documents} documents: {str(node)[:80]} "
            f"(pushdown {plan.get('filterPushdown')}); find_one {took:.1f} ms"
        )


def postgres_outage(ferretdb: FerretDB, postgres: Postgres) -> None:
    """What a client sees while PostgreSQL is down and FerretDB is up."""
    client = pymongo.MongoClient(ferretdb.uri, serverSelectionTimeoutMS=3000)
    client["probe"]["outage"].insert_one({"a": 1})
    postgres.stop()
    for label, action in (
        ("find", lambda: client["probe"]["outage"].find_one()),
        ("ping", lambda: client["probe"].command("ping")),
    ):
        attempt(f"{label} while PostgreSQL is down", action)
    postgres.start()
    started = time.perf_counter()
    while True:
        try:
            client["probe"]["outage"].find_one()
            break
        except PyMongoError:
            time.sleep(0.02)
    print(
        f"find after PostgreSQL restarted: works again after {time.perf_counter() - started:.2f}s"
    )
    client.drop_database("probe")
    client.close()


def disk_mb(path: Path) -> float:
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def concurrency(db) -> None:
    threads, per_thread = 8, 200

    def run(target: Callable[..., None], args: list[tuple]) -> float:
        workers = [threading.Thread(target=target, args=a) for a in args]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return time.perf_counter() - started

    counter = db["counter"]
    counter.insert_one({"_id": 1, "n": 0})
    inc_errors: list[str] = []

    def increment() -> None:
        for _ in range(per_thread):
            try:
                counter.update_one({"_id": 1}, {"$inc": {"n": 1}})
            except PyMongoError as exc:
                inc_errors.append(describe(exc))

    took = run(increment, [()] * threads)
    got = counter.find_one({"_id": 1})["n"]
    print(
        f"concurrent $inc: {threads} threads x {per_thread} -> n={got} "
        f"(expected {threads * per_thread}), {len(inc_errors)} errors "
        f"{sorted(set(inc_errors))[:2]}, in {took:.2f}s"
    )

    inserts = db["inserts"]
    inserts.create_index([("k", 1), ("i", 1)], unique=True)
    errors: list[str] = []

    def insert(k: int) -> None:
        for i in range(per_thread):
            try:
                inserts.insert_one({"k": k, "i": i})
            except OperationFailure as exc:
                errors.append(describe(exc))

    took = run(insert, [(k,) for k in range(threads)])
    print(
        f"concurrent inserts: {inserts.count_documents({})} of {threads * per_thread} stored, "
        f"{len(errors)} errors, in {took:.2f}s"
    )

    # Concurrent upserts racing on one unique key: exactly one document must survive.
    racers = db["racers"]
    racers.create_index("key", unique=True)

    def upsert(key: str, outcomes: list[str]) -> None:
        try:
            racers.update_one({"key": key}, {"$setOnInsert": {"key": key}}, upsert=True)
            outcomes.append("ok")
        except PyMongoError as exc:
            outcomes.append(describe(exc))

    for round_ in range(5):
        key, outcomes = f"k{round_}", []
        run(upsert, [(key, outcomes)] * threads)
        print(
            f"concurrent upserts on one unique key (round {round_ + 1}): "
            f"{racers.count_documents({'key': key})} document(s); "
            f"{outcomes.count('ok')} ok, others {sorted(set(outcomes) - {'ok'})}"
        )


def latency(db) -> None:
    """Median milliseconds of single calls from one thread, on loopback."""
    coll = db["latency"]
    coll.insert_many([{"k": i, "pad": "x" * 300} for i in range(200)])
    coll.create_index("j")  # an index on another field: the filter on `k` has none

    def median_ms(call: Callable[[int], object], n: int = 200) -> float:
        samples = []
        for i in range(n):
            started = time.perf_counter()
            call(i)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    ids = [d["_id"] for d in coll.find({}, {"_id": 1})]
    ping = median_ms(lambda _: db.command("ping"))
    insert = median_ms(lambda i: db["latency_ins"].insert_one({"i": i, "pad": "x" * 300}))
    by_id = median_ms(lambda i: coll.find_one({"_id": ids[i % len(ids)]}))
    unindexed = median_ms(lambda i: coll.find_one({"k": i % 200}))
    print(
        f"latency (median): ping {ping:.2f} ms, insert_one {insert:.2f} ms, "
        f"on a 200-document collection find_one by _id {by_id:.2f} ms, "
        f"by an unindexed field {unindexed:.2f} ms"
    )


def memory_mb(pid: int) -> tuple[float, float, int]:
    """(RSS, PSS, processes) of a process and its children, in MB, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    rss = pss = 0.0
    todo, seen = [pid], 0
    while todo:
        p = todo.pop()
        seen += 1
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
        except OSError:
            pass
    return rss, pss, seen


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", nargs="?", help="probe this server instead of starting FerretDB")
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()
    if args.uri:
        probe(args.uri)
        return
    with tempfile.TemporaryDirectory() as tmp:
        postgres = None
        if args.backend == "postgresql":
            postgres = Postgres(Path(tmp) / "postgres")
            first = timed(postgres.start)
            stop = timed(postgres.stop)
            again = timed(postgres.start)
            print(
                f"postgresql: initdb + start + ready {first:.2f}s; "
                f"stop {stop:.2f}s; start again {again:.2f}s; "
                f"a new cluster takes {disk_mb(postgres.data_dir):.0f} MB"
            )
            ferretdb = FerretDB(Path(tmp) / "ferretdb", postgresql_url=postgres.url)
        else:
            ferretdb = FerretDB(Path(tmp) / "ferretdb", sqlite=True)
        print(f"ferretdb ({args.backend}): start {timed(ferretdb.start):.2f}s")
        try:
            probe(ferretdb.uri)
            for name, service in (("ferretdb", ferretdb), ("postgresql", postgres)):
                if service is not None and service.proc is not None:
                    rss, pss, n = memory_mb(service.proc.pid)
                    print(
                        f"memory after the probe: {name} RSS {rss:.0f} MB, PSS {pss:.0f} MB "
                        f"({n} processes)"
                    )
            if postgres is not None:
                postgres_outage(ferretdb, postgres)
        finally:
            ferretdb.stop()
            if postgres is not None:
                postgres.stop()


if __name__ == "__main__":
    main()
