"""The whole stack for end-to-end tests: FerretDB, Redis, two gunicorn instances, nginx.

The stack has its own FerretDB and Redis, so the outage tests here can stop and
restart them without disturbing the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import FerretDB, Gunicorn, Nginx, Redis, http, init_db


@dataclass
class Stack:
    ferretdb: FerretDB | None
    redis: Redis
    apps: list[Gunicorn]
    nginx: Nginx

    @property
    def url(self) -> str:
        return self.nginx.url

    def logs(self) -> str:
        parts = [self.redis, *self.apps, self.nginx]
        if self.ferretdb:
            parts.insert(0, self.ferretdb)
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in parts)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("e2e")
    ferretdb = None if os.environ.get("MONGO_URI") else FerretDB(root / "ferretdb")
    redis = Redis(root / "redis")
    started: list = []
    try:
        for service in (ferretdb, redis):
            if service:
                service.start()
                started.append(service)
        app_env = {
            "CHATBOT_ENV": "production",
            "SECRET_KEY": "e2e-secret-key-not-for-real-use",
            # The tests read one-time codes from the app's log (the development sender),
            # which production refuses unless told explicitly.
            "ALLOW_LOG_CODE_SENDER": "1",
            "MONGO_URI": ferretdb.uri if ferretdb else os.environ["MONGO_URI"],
            "MONGO_DB": "e2e",
            "REDIS_URL": redis.url,
            "REDIS_BREAKER_RESET_S": "0.5",
            "WEB_CONCURRENCY": "2",
            "LOG_LEVEL": "INFO",
        }
        init_db(app_env)
        apps = [Gunicorn(root / name, name, app_env) for name in ("app1", "app2")]
        for app in apps:
            app.start()
            started.append(app)
        nginx = Nginx(root / "nginx", [app.port for app in apps])
        nginx.start()
        started.append(nginx)
        stack = Stack(ferretdb, redis, apps, nginx)
        wait_until_healthy(stack)
        yield stack
    finally:
        for service in reversed(started):
            service.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log scan reads what every other e2e test logged: run it last."""
    items.sort(key=lambda item: item.path.name == "test_log_hygiene.py")


def wait_until_healthy(stack: Stack, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = http("GET", stack.url + "/health", timeout=2)
        if reply.status == 200 and reply.json()["status"] == "ok":
            return
        time.sleep(0.1)
    raise AssertionError(f"stack never became healthy\n{stack.logs()}")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, and on a closed network: no sandbox, no background connections (see docs/testing.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
