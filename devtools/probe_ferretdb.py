"""Check on this machine what docs/ferretdb.md says about FerretDB, and print the findings.

    .venv/bin/python devtools/probe_ferretdb.py [MONGO_URI]

Without a URI it starts .build/ferretdb on a free port with a throw-away data directory.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymongo
from pymongo.errors import OperationFailure, PyMongoError

ROOT = Path(__file__).resolve().parent.parent


def start_ferretdb(data: Path) -> tuple[subprocess.Popen, str]:
    uri_file = data / "uri"
    proc = subprocess.Popen(
        [
            ROOT / ".build" / "ferretdb",
            "-listen=127.0.0.1:0",
            f"-data={data / 'db'}",
            f"-uri-file={uri_file}",
        ]
    )
    deadline = time.monotonic() + 10
    while not uri_file.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("ferretdb did not start")
        time.sleep(0.05)
    return proc, uri_file.read_text().strip()


def describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__} code={code}: {str(exc).splitlines()[0][:140]}"


def probe(uri: str) -> None:
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
    info = client.server_info()
    print(f"server: version {info.get('version')}, ferretdbVersion {info.get('ferretdbVersion')}")
    db = client["probe"]
    client.drop_database("probe")

    users = db["users"]
    users.create_index("phone", unique=True)
    users.insert_many([{"phone": "1"}, {"phone": "2"}])
    for label, action in [
        ("unique violation on insert", lambda: users.insert_one({"phone": "1"})),
        (
            "unique violation on update",
            lambda: users.update_one({"phone": "2"}, {"$set": {"phone": "1"}}),
        ),
        (
            "unique violation on find_one_and_update",
            lambda: users.find_one_and_update({"phone": "2"}, {"$set": {"phone": "1"}}),
        ),
        ("TTL index", lambda: db["sessions"].create_index("expiresAt", expireAfterSeconds=0)),
        (
            "$lookup",
            lambda: list(
                users.aggregate(
                    [{"$lookup": {"from": "x", "localField": "a", "foreignField": "b", "as": "c"}}]
                )
            ),
        ),
        (
            "find_one_and_update with projection",
            lambda: users.find_one_and_update(
                {"phone": "2"}, {"$set": {"x": 1}}, projection={"x": 1}
            ),
        ),
    ]:
        try:
            action()
            print(f"{label}: accepted")
        except PyMongoError as exc:
            print(f"{label}: {describe(exc)}")
    print("documents after the failed updates:", sorted(d["phone"] for d in users.find()))

    counter = db["counter"]
    counter.insert_one({"_id": 1, "n": 0})
    threads, per_thread = 8, 200

    def increment() -> None:
        for _ in range(per_thread):
            counter.update_one({"_id": 1}, {"$inc": {"n": 1}})

    workers = [threading.Thread(target=increment) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    got = counter.find_one({"_id": 1})["n"]
    print(
        f"concurrent $inc: {threads} threads x {per_thread} -> n={got} "
        f"(expected {threads * per_thread}) in {time.perf_counter() - started:.2f}s"
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

    workers = [threading.Thread(target=insert, args=(k,)) for k in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(
        f"concurrent inserts: {inserts.count_documents({})} of {threads * per_thread} stored, "
        f"{len(errors)} errors, in {time.perf_counter() - started:.2f}s"
    )

    # Concurrent upserts racing on one unique key: exactly one document must survive.
    racers = db["racers"]
    racers.create_index("key", unique=True)
    outcomes: list[str] = []

    def upsert() -> None:
        try:
            racers.update_one({"key": "k"}, {"$setOnInsert": {"key": "k"}}, upsert=True)
            outcomes.append("ok")
        except PyMongoError as exc:
            outcomes.append(describe(exc))

    workers = [threading.Thread(target=upsert) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(
        f"concurrent upserts on one unique key: {racers.count_documents({})} document(s); "
        f"outcomes {sorted(set(outcomes))}"
    )
    client.drop_database("probe")


def main() -> None:
    if len(sys.argv) > 1:
        probe(sys.argv[1])
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc, uri = start_ferretdb(Path(tmp))
        try:
            probe(uri)
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
