"""A frozen database costs a request about a second, answered 503 with Retry-After."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.harness import http
from tests.support import TODDLER_TODAY, HttpChat

pytestmark = pytest.mark.e2e


def test_frozen_database_costs_about_a_second_then_everything_resumes(stack):
    if stack.ferretdb is None or stack.ferretdb.proc is None:
        pytest.skip("MONGO_URI points at an outside server the harness cannot freeze")
    chat = HttpChat(stack.url, "081300000501")
    for text in ("halo", "ya", "1", "Budi", TODDLER_TODAY, "1", "38", "ya"):
        chat.say(text)
    child_id = http("GET", stack.url + "/api/v1/children", headers=chat.headers).json()["children"][
        0
    ]["id"]
    assert (
        http("GET", stack.url + f"/api/v1/children/{child_id}", headers=chat.headers).status == 200
    )
    assert http("GET", stack.url + "/api/v1/chat/messages", headers=chat.headers).status == 200
    os.kill(stack.ferretdb.proc.pid, signal.SIGSTOP)
    try:
        timings = []
        for n in range(4):
            started = time.monotonic()
            reply = chat.send("ya", f"frozen-{n}")
            timings.append(time.monotonic() - started)
            assert reply.status == 503, reply.body
            assert reply.json()["error"]["code"] == "service_unavailable"
            assert int(reply.headers["Retry-After"]) >= 1
        print("chat POST with the database frozen (s):", [round(t, 2) for t in timings])
        assert max(timings) < 2.0, timings
        # What Redis holds is still served: the child summary and the first history page
        # (this user's were read or written just before).
        summary = http("GET", stack.url + f"/api/v1/children/{child_id}", headers=chat.headers)
        assert summary.status == 200
        assert http("GET", stack.url + "/api/v1/chat/messages", headers=chat.headers).status == 200
    finally:
        os.kill(stack.ferretdb.proc.pid, signal.SIGCONT)
    # Retried with the same ids, the refused messages are processed once each.
    deadline = time.monotonic() + 10
    while (reply := chat.send("ya", "frozen-0")).status == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reply.status in (200, 201), reply.body
    assert "Pertanyaan 2/10" in "\n".join(r["text"] for r in reply.json()["replies"])
    again = chat.send("ya", "frozen-0")
    assert again.status == 200 and again.json()["duplicate"] is True
