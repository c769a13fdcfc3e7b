"""The local stack's FerretDB watchdog (supervisord's `watchdog` program, `make run` only).

    .venv/bin/python devtools/db_watchdog.py   (devtools/stack_env.sh's variables)

supervisord restarts a FerretDB that exits, not one that hangs: FerretDB v1.24.2 can
wedge (its registry lock or its PostgreSQL pool, docs/ferretdb.md) and then answers
`buildInfo` but never `ping`; a frozen one (SIGSTOP, a stuck host) answers nothing. Every
WATCHDOG_INTERVAL_S (1 s) this pings it with a budget of WATCHDOG_TIMEOUT_S (3 s). After a
ping that did not answer within that budget, it says why on one line (buildInfo answers
or not) and SIGKILLs the server (a frozen process gets no other signal), which supervisord
starts again at once. It also restarts a FerretDB that has reported its PostgreSQL
unreachable for WATCHDOG_TIMEOUT_S while PostgreSQL accepts connections (measured: FerretDB
reconnects by itself within 0.3 s of PostgreSQL's return, so this is a backstop). A
refused connection is supervisord's business (the server is down or starting): nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

ROOT = Path(__file__).resolve().parent.parent
STORAGE_DOWN = re.compile(r"failed to connect|SQLSTATE (08\w{3}|57P0\d|53300)")


def log(event: str, message: str, **fields: object) -> None:
    line = {"logger": "watchdog", "event": event, "message": message, **fields}
    print(json.dumps(line), flush=True)


def database_pid() -> int | None:
    done = subprocess.run(
        ["bash", "devtools/stackctl", "pid", "database"],
        cwd=ROOT, capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    try:
        pid = int(done.stdout.strip())
    except ValueError:
        return None
    return pid or None


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def probe(uri: str, timeout_s: float) -> str:
    """'ok', 'refused', 'storage' (FerretDB says PostgreSQL is unreachable) or 'hung'."""
    client: pymongo.MongoClient = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=int(timeout_s * 1000), connectTimeoutMS=500,
        socketTimeoutMS=int(timeout_s * 1000), directConnection=True,
    )  # fmt: skip
    try:
        with pymongo.timeout(timeout_s):
            client.admin.command("ping")
        return "ok"
    except OperationFailure as exc:
        return "storage" if STORAGE_DOWN.search(str(exc)) else "ok"
    except ConnectionFailure as exc:
        if "refused" in str(exc).lower():
            return "refused"
        return "hung"
    except PyMongoError:
        return "hung"
    finally:
        client.close()


def answers_build_info(uri: str) -> bool:
    client: pymongo.MongoClient = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=1000, socketTimeoutMS=1000, directConnection=True
    )
    try:
        return "version" in client.admin.command("buildInfo")
    except PyMongoError:
        return False
    finally:
        client.close()


def restart(why: str) -> None:
    pid = database_pid()
    if pid is None:
        return
    log("ferretdb_restart", f"FerretDB {why}: restarting it (SIGKILL pid {pid})", pid=pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def main() -> int:
    uri = f"mongodb://127.0.0.1:{os.environ['STACK_MONGO_PORT']}/"
    pg_port = int(os.environ["STACK_PG_PORT"])
    interval = float(os.environ.get("WATCHDOG_INTERVAL_S", "1"))
    timeout_s = float(os.environ.get("WATCHDOG_TIMEOUT_S", "3"))
    log("watchdog_started", f"watching FerretDB at {uri} every {interval:g} s", timeout_s=timeout_s)
    storage_since: float | None = None
    while True:
        state = probe(uri, timeout_s)
        now = time.monotonic()
        if state == "hung":
            if answers_build_info(uri):
                restart(f"answers buildInfo but not ping within {timeout_s:g} s (wedged)")
            else:
                restart(f"answers nothing within {timeout_s:g} s (frozen or hung)")
            storage_since = None
        elif state == "storage" and accepts(pg_port):
            storage_since = storage_since or now
            if now - storage_since >= timeout_s:
                restart(
                    f"has reported PostgreSQL unreachable for {now - storage_since:.0f} s "
                    "while PostgreSQL accepts connections"
                )
                storage_since = None
        else:
            storage_since = None
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
