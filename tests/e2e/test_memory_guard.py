"""The memory guard retires workers gracefully: under a steady load, no request fails.

Two instances whose guard is set below any worker's size (GUNICORN_MAX_WORKER_RSS_MB=1),
so every worker is retired at its 50th request and replaced, again and again, while
GETs and chat POSTs go through nginx. Counted as in test_failover.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.loadgen import Load, check, make_users, report, under_load
from tests.harness import Gunicorn, Nginx, http, init_db

pytestmark = pytest.mark.e2e


@dataclass
class Guarded:
    url: str
    mongo_uri: str
    mongo_db: str
    apps: list[Gunicorn]
    nginx: Nginx

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(lines)}" for p in (*self.apps, self.nginx))

    def retirements(self) -> int:
        return sum(p.log_path.read_text(errors="replace").count("retiring it") for p in self.apps)


@pytest.fixture(scope="module")
def guarded(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    root = tmp_path_factory.mktemp("memory-guard")
    env = dict(
        stack.apps[0].app_env,
        MONGO_DB=f"guard_{os.getpid()}",
        WEB_CONCURRENCY="1",
        GUNICORN_MAX_WORKER_RSS_MB="1",
        CHAT_RATE_LIMIT="100000 per minute",
        RATE_LIMIT_DEFAULT="100000 per minute",
    )
    init_db(env)
    apps = [Gunicorn(root / name, name, env) for name in ("guard1", "guard2")]
    started: list = []
    try:
        for app in apps:
            app.start()
            started.append(app)
        nginx = Nginx(root / "nginx", [app.port for app in apps])
        nginx.start()
        started.append(nginx)
        deadline = time.monotonic() + 20
        while http("GET", nginx.url + "/health", timeout=2).status != 200:
            assert time.monotonic() < deadline, "the guarded stack never became healthy"
            time.sleep(0.1)
        yield Guarded(nginx.url, env["MONGO_URI"], env["MONGO_DB"], apps, nginx)
    finally:
        for service in reversed(started):
            service.stop()


def test_workers_retired_by_the_memory_guard_fail_no_request(guarded: Guarded):
    load = Load(guarded, make_users(guarded))
    before = guarded.retirements()

    def event() -> str:
        time.sleep(6)
        return f"{guarded.retirements() - before} workers retired by the memory guard so far"

    outcomes, note = under_load(load, event, steady_s=2.0)
    counts = report("memory-guard", guarded, outcomes, note)
    retired = guarded.retirements() - before
    assert retired >= 2, (retired, counts)  # every 50th request of each worker
    check(counts, guarded)
