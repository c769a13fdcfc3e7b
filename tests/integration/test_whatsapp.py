"""The WhatsApp channel against real FerretDB, Redis, the Graph API emulator and a real
dramatiq worker: webhooks in through the app (served over HTTP in this process), turns
and sends through the queue, replies and statuses back through the emulator."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from http.server import ThreadingHTTPServer

import pytest
from bson import ObjectId
from werkzeug.serving import make_server

from chatbot import create_app
from chatbot.channels.whatsapp import sign
from chatbot.cli import run_sweep
from chatbot.db.indexes import ensure_indexes
from chatbot.extensions import mongo
from chatbot.services import services
from chatbot.settings import DEV_WHATSAPP
from tests.harness import ROOT, free_port, http
from tests.support import TODDLER_TODAY, ApiChat

sys.path.insert(0, str(ROOT / "devtools"))  # devtools is not a package
from graph_emulator import (
    Emulator,
    envelope,
    make_handler,
    message_of,
    status_webhook,
)

pytestmark = pytest.mark.integration


class Stack:
    """The app on a real port, the emulator on another, a worker of the app's queue."""

    def __init__(self, settings, statuses: bool = False, **overrides) -> None:
        self.port, self.graph_port = free_port(), free_port()
        self.settings = replace(
            settings,
            whatsapp_enabled=True,
            whatsapp_api_base_url=f"http://127.0.0.1:{self.graph_port}",
            whatsapp_retry_max_s=1.0,
            whatsapp_requeue_after_s=1.0,
            **overrides,
        ).checked()
        self.app = create_app(self.settings)
        self.app.config.update(TESTING=True)
        with self.app.app_context():
            ensure_indexes(mongo.db)
            self.services = services()
        self.url = f"http://127.0.0.1:{self.port}"
        self.emulator = Emulator(
            self.url + "/webhooks/whatsapp",
            DEV_WHATSAPP["whatsapp_app_secret"],
            DEV_WHATSAPP["whatsapp_access_token"],
            statuses=statuses,
        )
        self.graph = ThreadingHTTPServer(
            ("127.0.0.1", self.graph_port), make_handler(self.emulator)
        )
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        for target in (self.graph.serve_forever, self.server.serve_forever):
            threading.Thread(target=target, daemon=True).start()
        self.worker = self.services.tasks.worker(4)
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.services.tasks.close()
        self.services.graph.close()
        for server in (self.server, self.graph):
            server.shutdown()
            server.server_close()

    def say(self, phone: str, text: str | None = None, **spec) -> dict:
        return self.emulator.inbound(phone, text, **spec)

    def replies(self, phone: str, count: int, timeout: float = 15.0, until=None) -> list[dict]:
        """What the emulator received for `phone`, once there are `count` messages (and
        `until(messages)` holds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.emulator.lock:
                mine = [s["body"] for s in self.emulator.sent if s["to"] == phone]
            if len(mine) >= count and (until is None or until(mine)):
                return mine
            time.sleep(0.05)
        raise AssertionError(f"{len(mine)} of {count} replies to {phone}: {mine}")


@pytest.fixture
def stack(settings):
    s = Stack(settings)
    yield s
    s.stop()


def text_of(body: dict) -> str:
    return body["text"]["body"] if body["type"] == "text" else body["interactive"]["body"]["text"]


def test_verification_answers_the_challenge_only_for_the_configured_token(stack):
    ok = http("GET", stack.url + "/webhooks/whatsapp?hub.mode=subscribe"
              "&hub.verify_token=dev-whatsapp-verify-token&hub.challenge=12345")  # fmt: skip
    assert ok.status == 200 and ok.body == b"12345"
    assert ok.headers["Content-Type"].startswith("text/plain")
    wrong = http("GET", stack.url + "/webhooks/whatsapp?hub.mode=subscribe"
                 "&hub.verify_token=nope&hub.challenge=12345")  # fmt: skip
    assert wrong.status == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert http("GET", stack.url + "/webhooks/whatsapp?hub.challenge=1").status == 403


def _post(stack, raw: bytes, signature: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    url = stack.url + "/webhooks/whatsapp"
    request = urllib.request.Request(url, data=raw, headers=headers)  # noqa: S310 -- loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_wrong_or_missing_signature_is_refused_and_nothing_is_stored(stack):
    raw = json.dumps(
        envelope(
            "100000000000001", {"messages": [message_of("6281300000901", "halo", None, None, None)]}
        )
    ).encode()
    for signature in (None, "sha256=" + "0" * 64, sign("another-secret", raw), "md5=abc"):
        status, body = _post(stack, raw, signature)
        assert status == 401 and body["error"]["code"] == "unauthorized"
    with stack.app.app_context():
        assert mongo.db["whatsapp_inbound"].count_documents({}) == 0
        assert mongo.db["messages"].count_documents({}) == 0
    status, _ = _post(stack, raw, sign(DEV_WHATSAPP["whatsapp_app_secret"], raw))
    assert status == 200


def test_signed_garbage_is_answered_200_and_ignored(stack):
    secret = DEV_WHATSAPP["whatsapp_app_secret"]
    for raw in (
        b"not json",
        b"[1,2]",
        b'{"object": "page"}',
        json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [{"changes": [{"field": "messages", "value": {"metadata": {}}}]}],
            }
        ).encode(),  # no phone_number_id
    ):
        status, body = _post(stack, raw, sign(secret, raw))
        assert status == 200 and body["status"] == "ignored", body
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    status, body = _post(stack, big, sign(secret, big))
    assert status == 413
    with stack.app.app_context():
        assert mongo.db["whatsapp_inbound"].count_documents({}) == 0


def test_a_conversation_on_whatsapp_with_buttons_and_a_redelivered_message(stack):
    phone = "6281300000902"
    first = stack.say(phone, "halo")
    assert first["status"] == 200
    greeting = stack.replies(phone, 1, until=lambda m: m[-1]["type"] == "interactive")
    buttons = greeting[-1]
    assert buttons["interactive"]["type"] == "button"
    ids = [b["reply"]["id"] for b in buttons["interactive"]["action"]["buttons"]]
    # Tapping the first button answers with its id, as if typed.
    count = len(greeting)
    stack.say(phone, button={"id": ids[0]})
    after = stack.replies(phone, count + 1)
    # Meta redelivers the first message: processed once, answered once.
    again = stack.say(phone, "halo", wamid=first["wamid"])
    assert again["status"] == 200
    time.sleep(1.5)
    with stack.app.app_context():
        db = mongo.db
        user = db["users"].find_one({"phoneNumber": "+" + phone})
        assert (
            db["messages"].count_documents(
                {"userId": user["_id"], "direction": "inbound", "turn": "wa:" + first["wamid"]}
            )
            == 1
        )
    with stack.emulator.lock:
        assert len([s for s in stack.emulator.sent if s["to"] == phone]) == len(after)


def test_the_same_number_is_the_same_user_on_the_web_and_on_whatsapp(stack):
    web = ApiChat(stack.app.test_client(), "081300000903")
    web.register_with_child("Budi", TODDLER_TODAY)
    phone = "6281300000903"
    stack.say(phone, "menu")
    stack.replies(phone, 1)
    with stack.app.app_context():
        users = list(mongo.db["users"].find({"phoneNumber": "+" + phone}))
        assert len(users) == 1
    # The web page's history shows the WhatsApp turn: one conversation, two channels.
    time.sleep(0.3)
    history = web.get("/api/v1/chat/messages?limit=5").get_json()["messages"]
    assert "menu" in [m["text"] for m in history if m["direction"] == "inbound"], history
    outbound = [m for m in history if m["direction"] == "outbound"]
    assert outbound and outbound[0]["status"] in ("queued", "sent"), outbound


def test_a_photo_gets_the_polite_answer_in_the_users_language(stack):
    phone = "6281300000904"
    stack.say(phone, kind="image")
    replies = stack.replies(phone, 1)
    assert "teks" in text_of(replies[0])


def test_throttling_is_retried_and_every_reply_is_sent_once_in_order(stack):
    phone = "6281300000905"
    stack.emulator.set_faults({"throttle_s": 2.0})
    for text in ("halo", "bantuan", "menu"):
        assert stack.say(phone, text)["status"] == 200
    with stack.app.app_context():
        user_id = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            user = mongo.db["users"].find_one({"phoneNumber": "+" + phone})
            done = mongo.db["whatsapp_outbox"].count_documents({}) == 0
            inbox = mongo.db["whatsapp_inbound"].count_documents({}) == 0
            if user and done and inbox:
                user_id = user["_id"]
                break
            time.sleep(0.2)
        assert user_id is not None, "the queue never finished"
        stored = list(
            mongo.db["messages"]
            .find({"userId": user_id, "direction": "outbound"})
            .sort("createdAt", 1)
        )
    assert stack.emulator.refused["throttled"] >= 1  # the fault was met, and waited out
    with stack.emulator.lock:
        bodies = [s["body"] for s in stack.emulator.sent if s["to"] == phone]
    # Every reply sent once, in the order the turns made them (one part each here).
    assert [text_of(b) for b in bodies] == [m["text"] for m in stored]


def test_statuses_reach_the_history_through_the_sweep_and_never_go_back(settings):
    s = Stack(settings, statuses=True)
    try:
        phone = "6281300000906"
        s.say(phone, "halo")
        s.replies(phone, 1)
        time.sleep(1.5)  # the emulator's sent/delivered/read webhooks
        with s.app.app_context():
            run_sweep()
            db = mongo.db
            user = db["users"].find_one({"phoneNumber": "+" + phone})
            statuses = {
                d["status"]
                for d in db["messages"].find({"userId": user["_id"], "direction": "outbound"})
            }
            assert statuses == {"read"}, statuses
            # A late "delivered" for the same message changes nothing.
            sent_id = db["whatsapp_sent"].find_one({})["_id"]
            s.emulator.post(status_webhook("100000000000001", sent_id, phone, "delivered"))
            run_sweep()
            statuses = {
                d["status"]
                for d in db["messages"].find({"userId": user["_id"], "direction": "outbound"})
            }
            assert statuses == {"read"}
    finally:
        s.stop()


def test_a_reply_meta_refuses_is_failed_in_the_history_with_metas_code_and_title(stack):
    web = ApiChat(stack.app.test_client(), "081300000907")
    stack.emulator.set_faults({"refuse_s": 30.0})
    phone = "6281300000907"
    first = stack.say(phone, "halo")
    with stack.app.app_context():
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
            mongo.db["whatsapp_outbox"].count_documents({}) or not stack.emulator.refused["refused"]
        ):
            time.sleep(0.1)
        run_sweep()
    stack.emulator.set_faults({"refuse_s": 0.0})
    history = web.get("/api/v1/chat/messages?limit=10").get_json()["messages"]
    failed = [m for m in history if m["direction"] == "outbound"]
    assert failed and all(m["status"] == "failed" for m in failed), failed
    assert failed[0]["failureReason"] == "whatsapp_refused"
    assert failed[0]["error"] == {"code": 131026, "title": "Message undeliverable"}
    with stack.emulator.lock:
        assert [s for s in stack.emulator.sent if s["to"] == phone] == []
    # Meta redelivers the message after refusing its reply: the turn was answered (its
    # replies failed at Meta, not in processing), so it is not run, stored or sent again.
    assert stack.say(phone, "halo", wamid=first["wamid"])["status"] == 200
    time.sleep(1.5)
    again = web.get("/api/v1/chat/messages?limit=10").get_json()["messages"]
    assert [m["id"] for m in again] == [m["id"] for m in history]
    with stack.emulator.lock:
        assert [s for s in stack.emulator.sent if s["to"] == phone] == []


def test_a_pace_per_recipient_spaces_the_messages_to_one_parent(settings):
    s = Stack(settings, whatsapp_recipient_pace_s=0.4)
    try:
        phone = "6281300000908"
        s.say(phone, "halo")  # the greeting and the consent question
        s.replies(phone, 2)
        with s.emulator.lock:
            times = [m["at"] for m in s.emulator.sent if m["to"] == phone]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps and min(gaps) >= 0.35, gaps
    finally:
        s.stop()


def test_metrics_count_the_webhooks_and_the_sends_of_every_worker(stack):
    def scrape() -> str:
        time.sleep(1.2)  # the web process's counters are flushed every second
        return http("GET", stack.url + "/metrics").body.decode()

    def value(text: str, name: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(name + " ")]
        return float(lines[0].split()[-1]) if lines else 0.0

    bad = 'chatbot_whatsapp_webhooks_total{outcome="bad_signature"}'
    before = value(scrape(), bad)  # this process's counters live as long as the test run
    phone = "6281300000909"
    stack.say(phone, "halo")
    replies = stack.replies(phone, 2)
    _post(stack, b"{}", "sha256=" + "0" * 64)  # one refused webhook
    text = scrape()
    sent = [line for line in text.splitlines() if line.startswith("chatbot_whatsapp_sends_total")]
    assert any(
        'outcome="sent"' in line and float(line.split()[-1]) >= len(replies) for line in sent
    )
    assert value(text, bad) == before + 1
    assert 'chatbot_whatsapp_queue_depth{queue="inbox"}' in text
    assert "chatbot_whatsapp_send_seconds_bucket" in text
    assert "chatbot_whatsapp_oldest_work_seconds" in text


def test_a_message_meeting_the_users_lock_held_waits_and_is_answered_not_dropped(stack):
    import redis as redis_py

    web = ApiChat(stack.app.test_client(), "081300000910")
    web.say("halo")
    with stack.app.app_context():
        user = mongo.db["users"].find_one({"phoneNumber": "+6281300000910"})
    client = redis_py.Redis.from_url(stack.settings.redis_url)
    key = f"{stack.settings.redis_key_prefix}lock:user:{user['_id']}"
    held = client.lock(key, timeout=10)
    assert held.acquire(blocking=False)  # as a web turn that takes long would hold it
    try:
        stack.say("6281300000910", "bantuan")
        time.sleep(stack.settings.lock_wait_s + 1.0)  # the turn met the lock: BusyError
        with stack.emulator.lock:
            assert [s for s in stack.emulator.sent if s["to"] == "6281300000910"] == []
    finally:
        held.release()
        client.close()
    replies = stack.replies("6281300000910", 1, timeout=20)  # retried by the queue
    assert replies
    with stack.app.app_context():
        assert mongo.db["whatsapp_inbound"].count_documents({}) == 0
        turns = mongo.db["messages"].count_documents(
            {"userId": user["_id"], "direction": "inbound", "turn": {"$regex": "^wa:"}}
        )
        assert turns == 1


def _drained(stack, timeout: float = 15.0) -> None:
    with stack.app.app_context():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = mongo.db["whatsapp_outbox"].count_documents({}) + mongo.db[
                "whatsapp_inbound"
            ].count_documents({})
            if not busy:
                return
            time.sleep(0.1)
    raise AssertionError("the queue never finished")


def test_outside_the_24_hour_window_a_reply_is_not_sent_and_a_template_is(stack):
    web = ApiChat(stack.app.test_client(), "081300000911")
    web.say("halo")
    phone = "6281300000911"
    # Meta redelivers a message a parent sent 25 hours ago: its turn runs, but a
    # free-form reply would fall outside the window, so it is not sent.
    message = message_of(phone, "bantuan", None, None, None)
    message["timestamp"] = str(int(time.time()) - 25 * 3600)
    late = envelope(DEV_WHATSAPP["whatsapp_phone_number_id"], {"messages": [message]})
    assert stack.emulator.post(late)[0] == 200
    _drained(stack)
    with stack.app.app_context():
        run_sweep()
    history = web.get("/api/v1/chat/messages?limit=5").get_json()["messages"]
    reply = next(m for m in history if m["direction"] == "outbound")
    assert reply["status"] == "failed" and reply["failureReason"] == "outside_window"
    assert reply["error"]["code"] == 131047
    with stack.emulator.lock:
        assert [s for s in stack.emulator.sent if s["to"] == phone] == []
    # An approved template goes out at any time, in the parent's language, its text in
    # the history; then Meta's statuses move it on like a reply.
    with stack.app.app_context():
        notified = stack.services.whatsapp.notify(
            phone, "screening_due", {"child": "Ayu", "when": "usia 9 bulan"}, ref="t1"
        )
        stack.services.tasks.enqueue_send(phone)
    assert notified is not None and "Ayu" in notified["text"] and "usia 9 bulan" in notified["text"]
    [body] = stack.replies(phone, 1)
    assert body["type"] == "template"
    assert body["template"]["name"] == "kpsp_screening_due"
    assert body["template"]["language"] == {"code": "id"}
    params = body["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == ["Ayu", "usia 9 bulan"]
    _drained(stack)
    with stack.app.app_context():
        run_sweep()
    history = web.get("/api/v1/chat/messages?limit=5").get_json()["messages"]
    assert history[0]["id"] == notified["id"] and history[0]["status"] == "sent"


def test_a_template_meta_has_not_approved_is_failed_with_metas_code(settings):
    # The account's template is approved under another name than the one configured.
    s = Stack(settings, whatsapp_template_names="screening_due=kpsp_not_approved")
    try:
        phone = "6281300000912"
        with s.app.app_context():
            notified = s.services.whatsapp.notify(
                phone, "screening_due", {"child": "Budi", "when": "9 bulan"}, ref="t2"
            )
            s.services.tasks.enqueue_send(phone)
        assert notified is not None
        _drained(s)
        with s.app.app_context():
            run_sweep()
            stored = mongo.db["messages"].find_one({"_id": ObjectId(notified["id"])})
        assert stored["status"] == "failed" and stored["failureReason"] == "whatsapp_refused"
        assert stored["waError"]["code"] == 132001
        with s.emulator.lock:
            assert [x for x in s.emulator.sent if x["to"] == phone] == []
    finally:
        s.stop()


def test_the_notify_command_queues_a_template_and_refuses_bad_input(stack):
    runner = stack.app.test_cli_runner()
    phone = "6281300000913"
    ok = runner.invoke(
        args=["chatbot", "whatsapp-notify", phone, "referral_follow_up", "child=Citra"]
    )
    assert ok.exit_code == 0, ok.output
    assert "Citra" in ok.output
    [body] = stack.replies(phone, 1)
    assert body["template"]["name"] == "kpsp_referral_follow_up"
    unknown = runner.invoke(args=["chatbot", "whatsapp-notify", phone, "nope"])
    assert unknown.exit_code != 0 and "screening_due" in unknown.output
    missing = runner.invoke(args=["chatbot", "whatsapp-notify", phone, "screening_due"])
    assert missing.exit_code != 0 and "child" in missing.output
