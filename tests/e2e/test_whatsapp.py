"""WhatsApp end to end: the emulator's signed webhooks through nginx to two instances, two
queue worker processes, replies back to the emulator; and the faults of issue 15 (a worker
SIGKILLed, Redis killed and started empty, Meta throttling, then failing with 5xx) under
load from several parents at once: every message answered, nothing processed or sent twice,
every parent's replies in order."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request

import pymongo
import pytest

from tests.harness import FerretDB, GraphEmulator, Gunicorn, Nginx, QueueWorker, Redis, init_db

pytestmark = pytest.mark.e2e

# Short fault runs for the suite; FAULT_SCALE=6 gives issue 15's (30 s of throttling, 10 s of 5xx).
SCALE = float(os.environ.get("FAULT_SCALE", "1"))
PARENTS = 8


class Stack:
    def __init__(self, root) -> None:
        self.ferretdb = FerretDB(root / "ferretdb")
        self.redis = Redis(root / "redis")
        self.workers: list[QueueWorker] = []
        self.apps: list[Gunicorn] = []
        try:
            self._start(root)
        except BaseException:
            self.stop()
            raise

    def _start(self, root) -> None:
        self.ferretdb.start()
        self.redis.start()
        self.env = {
            "CHATBOT_ENV": "production",
            "SECRET_KEY": "e2e-secret-key-not-for-real-use",
            "ALLOW_LOG_CODE_SENDER": "1",
            "MONGO_URI": self.ferretdb.uri,
            "MONGO_DB": "e2e_whatsapp",
            "REDIS_URL": self.redis.url,
            "REDIS_BREAKER_RESET_S": "0.5",
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "INFO",
            "WHATSAPP_ENABLED": "1",
            "WHATSAPP_APP_SECRET": "e2e-app-secret",
            "WHATSAPP_VERIFY_TOKEN": "e2e-verify-token",
            "WHATSAPP_ACCESS_TOKEN": "e2e-access-token",
            "WHATSAPP_PHONE_NUMBER_ID": "100000000000042",
            "WHATSAPP_RETRY_MAX_S": "2",
            "WHATSAPP_REQUEUE_AFTER_S": "3",
        }
        self.apps = [Gunicorn(root / n, n, self.env) for n in ("wa1", "wa2")]
        self.nginx = Nginx(root / "nginx", [a.port for a in self.apps])
        self.graph = GraphEmulator(root / "graph", self.nginx.url + "/webhooks/whatsapp")
        # The emulator checks the same secrets the app has.
        self.graph_command = self.graph.command
        self.graph.command = lambda: [  # type: ignore[method-assign]
            *self.graph_command(),
            "--app-secret",
            "e2e-app-secret",
            "--token",
            "e2e-access-token",
        ]
        self.env["WHATSAPP_API_BASE_URL"] = self.graph.url
        init_db(self.env)
        self.graph.start()
        for app in self.apps:
            app.start()
        self.nginx.start()
        self.workers = [QueueWorker(root / f"w{n}", str(n), self.env) for n in (1, 2)]
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for service in (
            *self.workers,
            self.nginx,
            *self.apps,
            self.graph,
            self.redis,
            self.ferretdb,
        ):
            service.stop()

    def call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 -- loopback
            self.graph.url + path, data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 -- loopback
            return json.loads(response.read())

    def say(self, phone: str, text: str) -> dict:
        return self.call("POST", "/_emulator/inbound", {"from": phone, "text": text})

    def sent(self) -> list[dict]:
        return self.call("GET", "/_emulator/sent")["sent"]

    def db(self):
        client = pymongo.MongoClient(self.ferretdb.uri)
        return client, client[self.env["MONGO_DB"]]

    def drained(self, timeout: float) -> bool:
        client, db = self.db()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                busy = db["whatsapp_inbound"].count_documents({}) + db[
                    "whatsapp_outbox"
                ].count_documents({})
                if busy == 0:
                    return True
                time.sleep(0.25)
            return False
        finally:
            client.close()

    def logs(self) -> str:
        parts = [*self.workers, *self.apps, self.graph]
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(30)}" for p in parts)


@pytest.fixture(scope="module")
def wa(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("whatsapp"))
    yield stack
    stack.stop()


def test_a_parent_chats_through_nginx_and_gets_buttons(wa):
    phone = "6281300001001"
    assert wa.say(phone, "halo")["status"] == 200
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        mine = [s["body"] for s in wa.sent() if s["to"] == phone]
        if mine and mine[-1]["type"] == "interactive":
            break
        time.sleep(0.1)
    assert mine and mine[-1]["interactive"]["type"] == "button", wa.logs()


def check_exactly_once(wa, phones: list[str], accepted: dict[str, list[str]]) -> dict:
    """Every accepted message processed once and answered; every stored reply sent once,
    in each parent's order. Returns the counts (printed by the test)."""
    client, db = wa.db()
    try:
        sent = wa.sent()
        report = {"accepted": sum(map(len, accepted.values())), "sends": len(sent)}
        unconfirmed = 0
        for phone in phones:
            user = db["users"].find_one({"phoneNumber": "+" + phone})
            inbound = list(db["messages"].find({"userId": user["_id"], "direction": "inbound"}))
            turns = [m["turn"] for m in inbound]
            assert sorted(turns) == sorted("wa:" + w for w in accepted[phone]), phone  # once each
            replies = list(
                db["messages"]
                .find({"userId": user["_id"], "direction": "outbound"})
                .sort("createdAt", 1)
            )
            assert {r["turn"] for r in replies} == set(turns), phone  # every one answered
            unsent = {
                e["messageId"] for e in db["whatsapp_events"].find(
                    {"userId": user["_id"], "kind": "failed", "failureReason": "send_unconfirmed"}
                )
            }  # fmt: skip
            unconfirmed += len(unsent)
            expected = [r["text"] for r in replies if r["_id"] not in unsent]
            got = [
                s["body"]["text"]["body"] if s["body"]["type"] == "text"
                else s["body"]["interactive"]["body"]["text"]
                for s in sent if s["to"] == phone
            ]  # fmt: skip
            # Each reply once, in order; an unconfirmed one (its worker died mid-call) may
            # have gone out once, never twice.
            if unsent:
                assert len(expected) <= len(got) <= len(replies), phone
            else:
                assert got == expected, (phone, got, expected)
        report["unconfirmed"] = unconfirmed
        return report
    finally:
        client.close()


def test_faults_under_load_lose_nothing_and_send_nothing_twice(wa):
    phones = [f"62813000020{n:02d}" for n in range(PARENTS)]
    accepted: dict[str, list[str]] = {p: [] for p in phones}
    refused: list[int] = []
    stop = threading.Event()

    def parent(phone: str, offset: float) -> None:
        time.sleep(offset)
        n = 0
        while not stop.is_set():
            answer = wa.say(phone, ["halo", "bantuan", "menu"][n % 3])
            if answer["status"] == 200:
                accepted[phone].append(answer["wamid"])
            else:
                refused.append(answer["status"])
            n += 1
            stop.wait(1.0)

    threads = [
        threading.Thread(target=parent, args=(p, i / PARENTS), daemon=True)
        for i, p in enumerate(phones)
    ]
    for t in threads:
        t.start()
    timeline = []
    try:
        time.sleep(2)
        timeline.append("worker 1 SIGKILLed")
        wa.workers[0].stop(signal.SIGKILL)
        time.sleep(1)
        wa.workers[0].start()
        time.sleep(2)
        timeline.append("redis SIGKILLed and started empty")
        wa.redis.stop(signal.SIGKILL)
        time.sleep(1)
        wa.redis.start()
        time.sleep(2)
        timeline.append(f"meta throttling {5 * SCALE:.0f} s")
        wa.call("POST", "/_emulator/faults", {"throttle_s": 5 * SCALE})
        time.sleep(5 * SCALE + 1)
        timeline.append(f"meta 5xx {2 * SCALE:.0f} s")
        wa.call("POST", "/_emulator/faults", {"fail_s": 2 * SCALE})
        time.sleep(2 * SCALE + 2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert wa.drained(60), "the queue did not drain\n" + wa.logs()
    faults = wa.call("GET", "/_emulator/sent")["refused"]
    report = check_exactly_once(wa, phones, accepted)
    report |= {"webhooks_refused": len(refused), "meta_refusals": faults}
    print(f"\nwhatsapp faults ({'; '.join(timeline)}): {json.dumps(report)}")
    assert refused == []  # every webhook was answered 200 (recorded), Redis or not
    assert faults["throttled"] > 0 and faults["failed"] > 0  # the faults were really met
    assert report["unconfirmed"] <= 1  # at most the one call the killed worker was making
