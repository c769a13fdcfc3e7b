"""Reminders when a screening is due, against real FerretDB, Redis, the Graph API emulator
and a queue worker: children screened at the frozen date, the clock moved forward, the
templates counted where the emulator received them."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis as redis_py
import redis.lock
from bson import ObjectId

from chatbot.chat.reminders import ReminderSchedule, ReminderService
from chatbot.extensions import mongo
from chatbot.redis_store import RedisStore
from tests.integration.test_whatsapp import Stack
from tests.support import FROZEN_AT, TODDLER, ApiChat

pytestmark = pytest.mark.integration

JAKARTA = ZoneInfo("Asia/Jakarta")


@pytest.fixture
def stack(settings):
    s = Stack(settings)
    yield s
    s.stop()


def screened(stack, phone: str, answers: list[str], name: str = "Ayu") -> ApiChat:
    chat = ApiChat(stack.app.test_client(), phone)
    chat.register_with_child(name, TODDLER)
    chat.say("ya")  # screen now
    chat.answer_all(answers)
    return chat


def run(stack) -> dict:
    with stack.app.app_context():
        return stack.services.reminders.run(stack.services.clock.now())


def templates_to(stack, wa_id: str, count: int = 0, timeout: float = 0.5) -> list[dict]:
    """The templates the emulator received for `wa_id`, once there are `count` (or after
    `timeout`, to see that no more come)."""
    deadline = time.monotonic() + timeout
    while True:
        with stack.emulator.lock:
            found = [s["body"] for s in stack.emulator.sent
                     if s["to"] == wa_id and s["body"]["type"] == "template"]  # fmt: skip
        if (count and len(found) >= count) or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def texts_to(stack, wa_id: str, count: int) -> list[str]:
    """The texts (plain or interactive) sent to `wa_id`, templates left out, once there
    are `count` of them."""

    def said(bodies: list[dict]) -> list[str]:
        return [
            b["text"]["body"] if b["type"] == "text" else b["interactive"]["body"]["text"]
            for b in bodies
            if b["type"] in ("text", "interactive")
        ]

    return said(stack.replies(wa_id, count, until=lambda mine: len(said(mine)) >= count))


def due_at(stack, child_id) -> datetime | None:
    client = redis_py.Redis.from_url(stack.settings.redis_url)
    try:
        score = client.zscore(f"{stack.settings.redis_key_prefix}reminders:due", str(child_id))
    finally:
        client.close()
    return None if score is None else datetime.fromtimestamp(score, JAKARTA)


def child_of(stack, phone: str) -> dict:
    with stack.app.app_context():
        user = mongo.db["users"].find_one({"phoneNumber": phone})
        return mongo.db["children"].find_one({"userId": user["_id"]})


def at_jakarta(day, hour: int) -> datetime:
    return datetime.combine(day, datetime.min.time(), JAKARTA).replace(hour=hour)


def test_a_due_screening_is_reminded_once_in_its_hours_then_followed_up_once(stack, frozen_clock):
    screened(stack, "081300000801", ["ya"] * 10)
    child = child_of(stack, "+6281300000801")
    due = child["lastScreening"]["nextDueAt"].date()
    assert due > FROZEN_AT.date()  # the 24-month form's date
    wa_id = "6281300000801"
    # Scheduled by the turn itself, in Redis, at 08:00 Jakarta of the due day.
    assert due_at(stack, child["_id"]) == at_jakarta(due, 8)
    assert run(stack).get("reminderChanges") == 0
    assert templates_to(stack, wa_id) == []  # not due yet
    # The due day before 08:00 in Jakarta: not yet. A scheduler down all day that runs
    # at 21:00: deferred to the next morning, nothing sent at night.
    frozen_clock.move_to(at_jakarta(due, 6))
    assert "reminders_sent" not in run(stack)
    frozen_clock.move_to(at_jakarta(due, 21))
    assert run(stack).get("reminders_deferred") == 1
    assert templates_to(stack, wa_id) == []
    due += timedelta(days=1)
    frozen_clock.move_to(at_jakarta(due, 9))
    assert run(stack).get("reminders_sent") == 1
    [sent] = templates_to(stack, wa_id, 1, 10)
    assert sent["template"]["name"] == "kpsp_screening_due"
    params = [p["text"] for p in sent["template"]["components"][0]["parameters"]]
    assert params[0] == "Ayu" and (due - timedelta(days=1)).strftime("%d-%m-%Y") in params[1]
    # Runs again, two at once, on the same day: nothing more.
    assert "reminders_sent" not in run(stack)
    # The follow-up after REMINDER_FOLLOW_UP_DAYS (3), by two schedulers at once: once.
    frozen_clock.move_to(at_jakarta(due + timedelta(days=3), 10))
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(run(stack))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.get("reminders_sent", 0) for r in reports) == 1, reports
    assert len(templates_to(stack, wa_id, 3, 2)) == 2
    # Then nothing, ever.
    frozen_clock.move_to(at_jakarta(due + timedelta(days=30), 10))
    assert "reminders_sent" not in run(stack)
    assert len(templates_to(stack, wa_id, 3, 1)) == 2
    # The parent answers (here on WhatsApp: the same user as on the web page): the reminder
    # is the first thing said, and the screening of that child starts directly.
    assert texts_to(stack, wa_id, 0) == []
    stack.say(wa_id, "halo")
    said = texts_to(stack, wa_id, 3)
    assert "Sudah waktunya skrining perkembangan Ayu" in said[0]
    assert said[1].startswith("Skrining Ayu") and said[2].startswith("Pertanyaan 1/"), said


def test_redis_losing_the_schedule_rebuilds_it_without_sending_again(stack, frozen_clock):
    screened(stack, "081300000802", ["ya"] * 10)
    due = child_of(stack, "+6281300000802")["lastScreening"]["nextDueAt"].date()
    run(stack)
    frozen_clock.move_to(at_jakarta(due, 9))
    assert run(stack).get("reminders_sent") == 1
    client = redis_py.Redis.from_url(stack.settings.redis_url)
    prefix = stack.settings.redis_key_prefix
    for key in client.scan_iter(match=f"{prefix}reminders:*"):
        client.delete(key)
    client.close()
    report = run(stack)  # rebuilt from the children and reminders_sent
    assert report["remindersRebuilt"] == 1 and "reminders_sent" not in report
    frozen_clock.move_to(at_jakarta(due + timedelta(days=3), 9))
    assert run(stack).get("reminders_sent") == 1  # the follow-up, once
    assert len(templates_to(stack, "6281300000802", 3, 2)) == 2


def test_a_parent_who_opted_out_gets_nothing_until_they_opt_in(stack, frozen_clock):
    chat = screened(stack, "081300000803", ["ya"] * 10)
    wa_id = "6281300000803"
    assert "tidak akan menerima pengingat" in chat.say("berhenti")
    with stack.app.app_context():
        user = mongo.db["users"].find_one({"phoneNumber": "+6281300000803"})
    assert user["remindersOptOutAt"] is not None
    due = child_of(stack, "+6281300000803")["lastScreening"]["nextDueAt"].date()
    run(stack)
    frozen_clock.move_to(at_jakarta(due, 9))
    report = run(stack)
    assert "reminders_sent" not in report and report.get("reminders_gone") == 1
    assert templates_to(stack, wa_id) == []
    stack.say(wa_id, "mulai")  # back in (the web token has expired by now: on WhatsApp)
    said = texts_to(stack, wa_id, 1)
    assert "pengingat skrining aktif kembali" in said[0], said
    with stack.app.app_context():
        user = mongo.db["users"].find_one({"phoneNumber": "+" + wa_id})
    assert user["remindersOptOutAt"] is None and user["remindersOptInAt"] is not None


def test_an_archived_child_has_nothing_due(stack, frozen_clock):
    chat = screened(stack, "081300000804", ["ya"] * 10)
    child = child_of(stack, "+6281300000804")
    due = child["lastScreening"]["nextDueAt"].date()
    archived = chat.client.post(f"/api/v1/children/{child['_id']}/archive", headers=chat.headers)
    assert archived.status_code in (200, 204), archived.get_json()
    frozen_clock.move_to(at_jakarta(due, 9))
    report = run(stack)
    assert "reminders_sent" not in report


def test_after_a_referral_the_follow_up_question_records_the_answer(stack, frozen_clock):
    screened(stack, "081300000805", ["tidak"] * 10, name="Budi")
    child = child_of(stack, "+6281300000805")
    assert child["lastScreening"]["nextAction"] == "refer"
    run(stack)
    frozen_clock.move_to(at_jakarta(FROZEN_AT.astimezone(JAKARTA).date() + timedelta(days=7), 9))
    assert run(stack).get("reminders_sent") == 1
    wa_id = "6281300000805"
    [sent] = templates_to(stack, wa_id, 1, 10)
    assert sent["template"]["name"] == "kpsp_referral_follow_up"
    stack.say(wa_id, "halo")  # the question first
    assert "puskesmas" in texts_to(stack, wa_id, 1)[-1]
    stack.say(wa_id, "ya")
    question, recorded, menu = texts_to(stack, wa_id, 3)
    assert "sudah disimpan" in recorded and menu.startswith("Menu"), (question, recorded)
    with stack.app.app_context():
        stored = mongo.db["children"].find_one({"_id": ObjectId(child["_id"])})
    assert stored["referral"]["visited"] is True
    assert stored["referral"]["answeredAt"].replace(tzinfo=UTC) > FROZEN_AT


def test_a_change_while_redis_is_down_is_kept_in_mongodb_and_applied_from_the_child(
    stack, frozen_clock
):
    screened(stack, "081300000806", ["ya"] * 10)
    child = child_of(stack, "+6281300000806")
    due = child["lastScreening"]["nextDueAt"].date()
    client = redis_py.Redis.from_url(stack.settings.redis_url)
    client.zrem(f"{stack.settings.redis_key_prefix}reminders:due", str(child["_id"]))
    client.close()
    down = RedisStore()
    down.init_app(replace(stack.settings, redis_url="redis://127.0.0.1:1/0"))
    with stack.app.app_context():
        plan = ReminderSchedule(mongo.db, down, stack.settings)
        ours = {"id": str(child["_id"]), "userId": str(child["userId"]), "name": "Ayu"}
        plan.changed(ours, child["lastScreening"], FROZEN_AT)  # Redis unreachable
        assert mongo.db["reminder_changes"].count_documents({"childId": ours["id"]}) == 1
    assert due_at(stack, child["_id"]) is None
    assert run(stack).get("reminderChanges") == 1  # applied from the child as it is now
    assert due_at(stack, child["_id"]) == at_jakarta(due, 8)
    with stack.app.app_context():
        assert mongo.db["reminder_changes"].count_documents({}) == 0


def test_a_corrected_birth_date_moves_the_next_screening_and_its_reminder(stack, frozen_clock):
    chat = screened(stack, "081300000811", ["ya"] * 10, name="Gita")
    child = child_of(stack, "+6281300000811")
    due = child["lastScreening"]["nextDueAt"].date()
    assert due_at(stack, child["_id"]) == at_jakarta(due, 8)
    # Born a month earlier than typed: the 24-month screening comes a month sooner.
    response = chat.client.patch(
        f"/api/v1/children/{child['_id']}", headers=chat.headers, json={"birthDate": "2029-04-10"}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["child"]["birthDate"] == "2029-04-10"
    moved = child_of(stack, "+6281300000811")["lastScreening"]["nextDueAt"].date()
    assert moved == datetime(2031, 3, 26).date()  # 23 months + 16 days after 2029-04-10
    assert due_at(stack, child["_id"]) == at_jakarta(moved, 8)
    # Born preterm (32 weeks): the corrected age puts the screening 8 weeks later.
    response = chat.client.patch(
        f"/api/v1/children/{child['_id']}", headers=chat.headers, json={"gestationalWeeks": 32}
    )
    assert response.status_code == 200
    later = child_of(stack, "+6281300000811")["lastScreening"]["nextDueAt"].date()
    assert later == moved + timedelta(weeks=8)
    assert due_at(stack, child["_id"]) == at_jakarta(later, 8)
    # Refused: birth dates in the future (the screening was today), an empty body.
    for body in ({"birthDate": "2031-04-01"}, {"birthDate": "2031-03-11"}, {}):
        bad = chat.client.patch(f"/api/v1/children/{child['_id']}", headers=chat.headers, json=body)
        assert bad.status_code == 400, body
        assert bad.get_json()["error"]["code"] == "validation_error"
    # Archived: nothing due any more.
    archived = chat.client.post(f"/api/v1/children/{child['_id']}/archive", headers=chat.headers)
    assert archived.status_code == 200
    assert due_at(stack, child["_id"]) is None


def test_a_scheduler_killed_mid_run_then_two_unlocked_send_no_reminder_twice(
    stack, frozen_clock, monkeypatch
):
    """The claim in `reminders_sent`, not the lock, is what keeps a reminder single: a run
    dies after claiming its third reminder (before sending it); its lock expires; two
    schedulers then run at once with no lock between them. Every other reminder goes
    once, the one claimed by the dead run never (at most once)."""
    phones = [f"08130000082{i}" for i in range(6)]
    for phone in phones:
        screened(stack, phone, ["ya"] * 10)
    due = child_of(stack, "+62" + phones[0][1:])["lastScreening"]["nextDueAt"].date()
    run(stack)
    frozen_clock.move_to(at_jakarta(due, 9))
    send = ReminderService._send
    calls: list[str] = []

    def dies_at_the_third(self, child_id, item, user):
        calls.append(child_id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies: claimed, not sent
        send(self, child_id, item, user)

    monkeypatch.setattr(ReminderService, "_send", dies_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        run(stack)
    monkeypatch.setattr(ReminderService, "_send", send)
    client = redis_py.Redis.from_url(stack.settings.redis_url)
    client.delete(f"{stack.settings.redis_key_prefix}reminders:run")  # its lock expired
    client.close()
    # Two schedulers at once, which the lock does not keep apart.
    monkeypatch.setattr(redis.lock.Lock, "acquire", lambda self, *a, **k: True)
    monkeypatch.setattr(redis.lock.Lock, "release", lambda self: None)
    reports: list[dict] = []
    threads = [threading.Thread(target=lambda: reports.append(run(stack))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wa_ids = ["62" + p[1:] for p in phones]
    templates_to(stack, wa_ids[-1], 1, 5)  # the queue worker has sent
    time.sleep(1)  # and anything sent twice has arrived by now
    sent = {wa_id: templates_to(stack, wa_id) for wa_id in wa_ids}
    assert sorted(len(s) for s in sent.values()) == [0, 1, 1, 1, 1, 1], (sent, reports)
    with stack.app.app_context():
        assert mongo.db["reminders_sent"].count_documents({}) == 6
