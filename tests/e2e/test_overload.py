"""Overload through the real nginx and gunicorn: the excess is refused at once, not queued.

A stack of its own: one gunicorn instance behind nginx rendered with max_conns=1, and a
"database" that accepts connections and never answers (a hung host), so one API request
stays in flight for seconds and holds the instance's only slot.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness import Gunicorn, Nginx, Redis, free_port, http, render_nginx

pytestmark = pytest.mark.e2e

# A request that needs the database: 401 when admitted without a token is not it, so
# the slow one starts a chat (the user lookup waits on the silent database).
SLOW = "/api/v1/chat/start"
# Admitted, it answers 401 at once (no token, no database); refused, nginx's 503.
CHEAP = "/api/v1/chat/messages"
STALL_S = 5  # how long the database makes the slow request wait


class TightNginx(Nginx):
    """nginx with an explicit max_conns per instance."""

    def __init__(self, workdir, upstream_ports, max_conns: int) -> None:
        super().__init__(workdir, upstream_ports)
        self.max_conns = max_conns

    def command(self) -> list[str]:
        render_nginx(
            self.workdir,
            f"127.0.0.1:{self.port}",
            [f"127.0.0.1:{p}" for p in self.upstream_ports],
            max_conns=self.max_conns,
        )
        return ["nginx", "-e", "stderr", "-p", f"{self.workdir}/", "-c", "nginx.conf"]


@dataclass
class TightStack:
    url: str
    app: Gunicorn
    nginx: Nginx

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in (self.app, self.nginx))


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TightStack]:
    root = tmp_path_factory.mktemp("overload")
    # Listens, completes the TCP handshake, never reads or answers: a frozen database.
    silent_db = socket.socket()
    silent_db.bind(("127.0.0.1", free_port()))
    silent_db.listen(64)
    redis = Redis(root / "redis")
    started: list = []
    try:
        redis.start()
        started.append(redis)
        app = Gunicorn(
            root / "app",
            "tight",
            {
                "CHATBOT_ENV": "production",
                "SECRET_KEY": "e2e-secret-key-not-for-real-use",
                # Production refuses the default (logging) code sender unless told.
                "ALLOW_LOG_CODE_SENDER": "1",
                "MONGO_URI": f"mongodb://127.0.0.1:{silent_db.getsockname()[1]}/",
                "MONGO_SERVER_SELECTION_TIMEOUT_MS": str(STALL_S * 1000),
                "MONGO_CONNECT_TIMEOUT_MS": str(STALL_S * 1000),
                "MONGO_REQUEST_TIMEOUT_S": str(STALL_S),
                "REDIS_URL": redis.url,
                "WEB_CONCURRENCY": "1",
                "GUNICORN_THREADS": "4",
                "LOG_LEVEL": "WARNING",
            },
        )
        app.start()
        started.append(app)
        nginx = TightNginx(root / "nginx", [app.port], max_conns=1)
        nginx.start()
        started.append(nginx)
        stack = TightStack(nginx.url, app, nginx)
        # No init-db: the database never answers (the instances serve without it).
        deadline = time.monotonic() + 20
        while http("GET", stack.url + CHEAP, timeout=5).status != 401:
            assert time.monotonic() < deadline, f"stack never answered\n{stack.logs()}"
            time.sleep(0.1)
        yield stack
    finally:
        for service in reversed(started):
            service.stop()
        silent_db.close()


def timed(method: str, url: str, **kwargs):
    started = time.perf_counter()
    reply = http(method, url, **kwargs)
    return reply, time.perf_counter() - started


def test_excess_requests_get_503_at_once_while_the_slot_is_taken(tight):
    slow: dict = {}

    def hold_the_slot() -> None:
        slow["reply"], slow["elapsed"] = timed(
            "POST", tight.url + SLOW, body={"phoneNumber": "081200000301"}, timeout=STALL_S + 10
        )

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        # Nothing else is sent meanwhile: a request racing it could take the slot first.
        time.sleep(0.5)
        assert holder.is_alive(), f"the slow request did not stay in flight: {slow}"

        latencies = []
        for _ in range(20):
            reply, elapsed = timed("GET", tight.url + CHEAP)
            latencies.append(elapsed)
            assert reply.status == 503
            assert reply.headers["Retry-After"] == "1"
            error = reply.json()["error"]
            assert error["code"] == "service_unavailable"
            assert error["details"] == {"reason": "no_free_instance"}
            assert error["request_id"] == reply.headers["X-Request-Id"]
            # nginx answered: no instance saw it.
            assert "X-Instance-Id" not in reply.headers
        print(
            f"\nrefused while busy: median {statistics.median(latencies) * 1000:.1f} ms,"
            f" max {max(latencies) * 1000:.1f} ms over {len(latencies)} requests"
        )
        # The goal is well under 100 ms; 1 s keeps a loaded CI machine from flaking.
        assert max(latencies) < 1.0

        # Probes are not admission-controlled: /livez reaches the busy instance.
        livez, elapsed = timed("GET", tight.url + "/livez")
        assert livez.status == 200, livez.body
        assert livez.headers["X-Instance-Id"] == "tight"
        print(f"/livez while busy: {elapsed * 1000:.1f} ms")
    finally:
        holder.join(STALL_S + 15)

    # The slow request was served (the app's own 503: its database never answered)...
    assert slow["reply"].status == 503
    assert slow["reply"].headers["X-Instance-Id"] == "tight"
    assert slow["reply"].headers["Retry-After"] == "2"  # RETRY_AFTER_UNAVAILABLE_S
    print(f"the slow request took {slow['elapsed']:.2f} s")
    # ...and with the slot free again, requests are admitted.
    assert http("GET", tight.url + CHEAP).status == 401


def test_health_with_a_silent_database_answers_503_within_its_budget(tight):
    reply, elapsed = timed("GET", tight.url + "/health", timeout=10)
    print(f"\n/health with a silent database: {reply.status} in {elapsed:.2f} s")
    assert reply.status == 503
    body = reply.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["mongodb"]["status"] == "down"
    assert reply.headers["Retry-After"] == "2"
    # HEALTH_TIMEOUT_S (1.5 s), not the 5 s the API requests wait here.
    assert elapsed < 2.5


def test_no_reachable_instance_answers_503_with_retry_after(tmp_path):
    # Two instances nobody listens on: connects are refused.
    nginx = TightNginx(tmp_path / "nginx", [free_port(), free_port()], max_conns=4)
    nginx.start()
    try:
        reply, elapsed = timed("GET", nginx.url + CHEAP)
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "1"
        assert reply.json()["error"]["details"] == {"reason": "unreachable"}
        # Both are now marked failed for fail_timeout: nginx picks none, and cannot
        # tell that from every instance being busy.
        again = http("GET", nginx.url + CHEAP)
        assert again.status == 503
        assert again.json()["error"]["details"] == {"reason": "no_free_instance"}
        print(f"\nno instance reachable: 503 in {elapsed * 1000:.1f} ms")
        assert elapsed < 1.0
    finally:
        nginx.stop()
