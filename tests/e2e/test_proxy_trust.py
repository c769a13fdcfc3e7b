"""Who may set X-Forwarded-For: nginx (by PROXY_SECRET), not a process on the host.

Seen from outside: nginx forwards the same headers from every location, and the
instances count a request under the address it really came from. Loopback has a whole
/8, so each test's client binds an address of its own (127.0.0.x) and its rate-limit
bucket is its own, apart from every other e2e test's (127.0.0.1).
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.harness import PROXY_SECRET, Nginx, free_port

pytestmark = pytest.mark.e2e

# A body /chat/verify refuses (400) after counting it against VERIFY_RATE_LIMIT (10/min).
GUESS = {"challengeId": "x" * 20, "code": "123456"}
VERIFY_LIMIT = 10


def request(
    port: int,
    method: str,
    path: str,
    *,
    source: str,
    headers: dict[str, str] | None = None,
    body: dict | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request to 127.0.0.1:port sent from the loopback address `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- nginx: every proxied location forwards the same headers --------------------------


class Recorder(BaseHTTPRequestHandler):
    """An upstream that answers 200 (500 on /boom) and remembers each request's headers."""

    seen: dict[str, dict[str, str]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen[self.path] = {k.lower(): v for k, v in self.headers.items()}
        boom = self.path.endswith("/boom")
        body = b'{"error":{"code":"internal_error"}}' if boom else b"{}"
        self.send_response(500 if boom else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "max-age=60")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 -- http.server's names

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorded(tmp_path) -> Iterator[tuple[Nginx, dict[str, dict[str, str]]]]:
    seen: dict[str, dict[str, str]] = {}
    handler = type("Handler", (Recorder,), {"seen": seen})
    upstream = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    nginx = Nginx(tmp_path / "nginx", [upstream.server_address[1]])
    try:
        nginx.start()
        yield nginx, seen
    finally:
        nginx.stop()
        upstream.shutdown()
        upstream.server_close()


# One path per location of nginx/nginx.conf.template that proxies.
PROXIED = [
    ("GET", "/api/v1/me"),  # location /
    ("GET", "/health"),  # location / (the probes' upstream)
    ("POST", "/api/v1/chat/messages"),  # its own location (non_idempotent retries)
    ("GET", "/static/chat.js"),  # the cached location
    ("GET", "/api/v1/openapi.json"),  # the cached location
]


def test_every_proxied_location_forwards_the_request_id_client_and_secret(recorded):
    nginx, seen = recorded
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Proxy-Secret": "forged-by-the-client"}
    for method, path in PROXIED:
        body = {} if method == "POST" else None
        status, _, _ = request(
            nginx.port, method, path, source="127.0.0.5", headers=forged, body=body
        )
        assert status == 200, path
    for _, path in PROXIED:
        got = seen[path]
        assert len(got.get("x-request-id", "")) == 32, (path, got)
        # The client's claim kept in front, the address nginx saw last (ProxyFix's one hop).
        assert got.get("x-forwarded-for") == "203.0.113.9, 127.0.0.5", (path, got)
        assert got.get("x-forwarded-proto") == "http", (path, got)
        assert got.get("x-forwarded-host") == "127.0.0.1", (path, got)
        # nginx's secret replaces the client's forged one.
        assert got.get("x-proxy-secret") == PROXY_SECRET, (path, got)


def test_an_instances_own_500_passes_nginx_unchanged(recorded):
    # nginx turns only its own 500s (out of connections under overload) into a 503 to
    # retry; the app's answer, with its error envelope, reaches the client as it is.
    nginx, _ = recorded
    status, headers, body = request(nginx.port, "GET", "/api/v1/boom", source="127.0.0.5")
    assert status == 500
    assert json.loads(body) == {"error": {"code": "internal_error"}}
    assert "Retry-After" not in headers


# --- the instances: the real peer counts, whatever it claims --------------------------


def _guesses(port: int, source: str, n: int, via: str) -> list[int]:
    statuses = []
    for _ in range(n):
        # A different made-up client every time: would be a fresh allowance if trusted.
        claimed = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
        status, _, _ = request(
            port,
            "POST",
            "/api/v1/chat/verify",
            source=source,
            headers={"X-Forwarded-For": claimed, "X-Proxy-Secret": via},
            body=GUESS,
        )
        statuses.append(status)
    return statuses


def test_a_spoofed_forwarded_for_sent_straight_to_an_instance_is_ignored(stack):
    # A process on the host, talking to gunicorn's port directly with a new
    # X-Forwarded-For (and a wrong secret) on every request: one bucket, its own address.
    port = stack.apps[0].port
    statuses = _guesses(port, "127.0.0.2", VERIFY_LIMIT + 1, via="not-the-secret-at-all")
    assert statuses == [400] * VERIFY_LIMIT + [429], statuses
    # Its limit is its own: another local address is not affected.
    assert _guesses(port, "127.0.0.12", 1, via="") == [400]


def test_through_nginx_each_client_keeps_its_own_address(stack):
    port = _port(stack.url)
    # The client's made-up X-Forwarded-For does not help it either: nginx appends the
    # address it saw, and the app takes that last hop.
    statuses = _guesses(port, "127.0.0.3", VERIFY_LIMIT + 1, via="")
    assert statuses == [400] * VERIFY_LIMIT + [429], statuses
    # Another client through the same nginx has its own allowance: the instances see the
    # clients' addresses, not nginx's.
    assert _guesses(port, "127.0.0.4", 3, via="") == [400, 400, 400]


def test_the_secret_never_reaches_the_logs(stack):
    request(_port(stack.url), "GET", "/livez", source="127.0.0.6")
    for app in stack.apps:
        assert PROXY_SECRET not in app.log_path.read_text(errors="replace")
