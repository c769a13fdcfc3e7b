"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from pymongo import monitoring

from chatbot.screening.age import add_months

# The instant integration tests run at: tests/conftest.py moves the clock of this process
# (where their app runs) there, ticking on from it, so a child's age, its screening form
# and its next screening date are the same on every run. 10:00 in Jakarta, far from a day
# or month boundary. In the future, so a real MongoDB's TTL monitor, which runs on the
# real clock, never deletes what the app writes while the test runs.
FROZEN_AT = datetime(2031, 3, 10, 3, 0, tzinfo=UTC)


def born_ago(months: int) -> str:
    """A birth date (DD-MM-YYYY) making a child `months` old today in Jakarta, by this
    process's clock (FROZEN_AT in integration tests, the real date elsewhere)."""
    today = datetime.now(ZoneInfo("Asia/Jakarta")).date()
    return add_months(today, -months).strftime("%d-%m-%Y")


# A term child of 22 months at FROZEN_AT: the 21-month form, 10 items (integration tests).
TODDLER = "10-05-2029"
# The same child for the end-to-end tests. Their app runs in gunicorn processes, on the
# real clock that time-machine cannot reach, so the birth date follows the real date: 22
# months before today (22 months and a day should the run cross midnight in Jakarta,
# still the 21-month form), and the form a test expects does not drift with the calendar.
TODDLER_TODAY = born_ago(22)


class CapturingSender:
    """A CodeSender that keeps the codes it was asked to send (the tests read them)."""

    sent: ClassVar[list[tuple[str, str]]] = []

    def send(self, phone: str, code: str, language: str) -> None:
        CapturingSender.sent.append((phone, code))

    @classmethod
    def last_code(cls, phone: str) -> str:
        return next(code for p, code in reversed(cls.sent) if p == phone)


class ApiChat:
    """A web-chat client over Flask's test client: start, then talk."""

    _ids = itertools.count(1)

    def __init__(self, client: Any, phone: str, language: str | None = None) -> None:
        self.client = client
        self.phone = phone
        body = {"phoneNumber": phone} | ({"language": language} if language else {})
        response = client.post("/api/v1/chat/start", json=body)
        assert response.status_code == 201, response.get_json()
        self.token = response.get_json()["token"]
        self.last: dict[str, Any] = {}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def send(self, text: str, client_message_id: str | None = None) -> Any:
        cmid = client_message_id or f"c{next(self._ids)}"
        return self.client.post(
            "/api/v1/chat/messages",
            json={"text": text, "clientMessageId": cmid},
            headers=self.headers,
        )

    def say(self, text: str) -> str:
        response = self.send(text)
        assert response.status_code == 201, response.get_json()
        self.last = response.get_json()
        return "\n".join(r["text"] for r in self.last["replies"])

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=self.headers)

    def register_with_child(self, name: str, born: str, weeks: str = "38") -> None:
        for text in ("halo", "ya", "1", name, born, "1", weeks):
            self.say(text)

    def answer_all(self, pattern: list[str]) -> str:
        reply = ""
        for answer in pattern:
            reply = self.say(answer)
        return reply


class HttpChat:
    """The same client over real HTTP (through nginx) for the end-to-end tests."""

    _ids = itertools.count(1)

    def __init__(self, base_url: str, phone: str, token: str | None = None) -> None:
        from tests.harness import http

        self.http = http
        self.base = base_url
        self.phone = phone
        if token is None:
            reply = http("POST", base_url + "/api/v1/chat/start", {"phoneNumber": phone})
            assert reply.status == 201, reply.body
            token = reply.json()["token"]
        self.token = token
        self.last: dict[str, Any] = {}
        self.instances: set[str] = set()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def send(self, text: str, client_message_id: str | None = None) -> Any:
        cmid = client_message_id or f"h{next(self._ids)}-{self.phone[-4:]}"
        reply = self.http(
            "POST",
            self.base + "/api/v1/chat/messages",
            {"text": text, "clientMessageId": cmid},
            self.headers,
        )
        self.instances.add(reply.headers.get("X-Instance-Id", "?"))
        return reply

    def say(self, text: str) -> str:
        reply = self.send(text)
        assert reply.status == 201, reply.body
        self.last = reply.json()
        return "\n".join(r["text"] for r in self.last["replies"])

    def get(self, path: str) -> Any:
        return self.http("GET", self.base + path, headers=self.headers)


def assert_envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    """A Flask test response in the JSON error envelope, with this status and code."""
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    error: dict[str, Any] = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    return error


# What a request costs the database, counted with PyMongo's command monitoring
# (`mongo.add_listener(Commands())`): the turn, receipt and cached-read budgets.
WRITES = {"insert", "update", "delete", "findAndModify"}
READS = {"find", "aggregate", "count", "distinct", "getMore"}


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        # The outage watch's poll (chatbot/chat/locks.py) runs in a thread of its own,
        # every REDIS_FALLBACK_POLL_S, not in any request: it is no request's cost.
        if event.command.get(event.command_name) == "outages":
            return
        self.seen[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> tuple[int, int, dict[str, int]]:
        seen, self.seen = dict(self.seen), Counter()
        writes = sum(n for name, n in seen.items() if name in WRITES)
        reads = sum(n for name, n in seen.items() if name in READS)
        return writes, reads, seen
