"""Chat through a Redis outage: MongoDB leases, the outage window, the caches after it.

Real FerretDB and Redis; an app that "cannot reach Redis" is one whose REDIS_URL names a
port where nothing listens (a partition, as tests/e2e/test_contention.py makes one).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chatbot import create_app
from chatbot.cache import CacheMode
from chatbot.chat.locks import OutageWatch, UserLocks
from chatbot.clock import Clock
from chatbot.db.indexes import ensure_indexes
from chatbot.db.leases import LeaseRepository, OutageRepository
from chatbot.errors import BusyError
from chatbot.extensions import mongo
from chatbot.redis_store import RedisStore
from chatbot.services import services
from tests.harness import free_port
from tests.support import TODDLER, ApiChat

pytestmark = pytest.mark.integration

T0 = datetime(2031, 3, 10, 3, 0, tzinfo=UTC)


@pytest.fixture
def db(app):
    with app.app_context():
        yield mongo.db


def test_a_lease_is_held_by_one_owner_released_by_it_and_taken_over_once_expired(db):
    leases = LeaseRepository(db)
    later = T0 + timedelta(seconds=10)
    assert leases.acquire("user:1", "a", T0, later)
    assert not leases.acquire("user:1", "b", T0 + timedelta(seconds=1), later)
    assert not leases.release("user:1", "b")  # only the owner gives it back
    assert leases.release("user:1", "a")
    assert leases.acquire("user:1", "b", T0, later)
    # Expired: the next taker deletes it and takes it; the old owner's release does nothing.
    assert leases.acquire("user:1", "c", later, later + timedelta(seconds=10))
    assert not leases.release("user:1", "b")
    assert db["leases"].find_one({"_id": "user:1"})["owner"] == "c"
    assert leases.delete_expired(later + timedelta(seconds=11)) == 1


def test_of_many_racing_takers_of_one_expired_lease_exactly_one_wins(db):
    leases = LeaseRepository(db)
    assert leases.acquire("user:2", "old", T0, T0 + timedelta(seconds=1))
    now = T0 + timedelta(seconds=5)
    won: list[str] = []
    barrier = threading.Barrier(8)

    def take(owner: str) -> None:
        barrier.wait()
        if leases.acquire("user:2", owner, now, now + timedelta(seconds=10)):
            won.append(owner)

    threads = [threading.Thread(target=take, args=(f"t{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert db["leases"].find_one({"_id": "user:2"})["owner"] == won[0]


def test_the_outage_window_is_extended_while_open_and_a_new_one_counts_an_epoch(db):
    outages = OutageRepository(db)
    assert outages.read().epoch == 0 and not outages.read().active(T0)
    first = outages.declare(T0, T0 + timedelta(seconds=10))
    assert first.epoch == 1 and first.active(T0 + timedelta(seconds=9))
    extended = outages.declare(T0 + timedelta(seconds=5), T0 + timedelta(seconds=15))
    assert extended.epoch == 1 and extended.since == first.since
    assert extended.until == T0 + timedelta(seconds=15)
    # An earlier `until` never shortens the window.
    assert outages.declare(T0 + timedelta(seconds=6), T0 + timedelta(seconds=8)).until == (
        T0 + timedelta(seconds=15)
    )
    second = outages.declare(T0 + timedelta(seconds=20), T0 + timedelta(seconds=30))
    assert second.epoch == 2 and second.since == T0 + timedelta(seconds=20)
    assert outages.read() == second


def _locks(settings, redis_url: str) -> UserLocks:
    """The lock service of one instance: its own Redis pool (reaching `redis_url`), watch
    and cache mode, on the test's database (the app fixture's client)."""
    settings = replace(settings, redis_url=redis_url)
    store = RedisStore()
    store.init_app(settings)
    outages = OutageRepository(mongo.db)
    watch = OutageWatch(outages, CacheMode(suspended=True), Clock(), settings.redis_fallback_poll_s)
    watch.start()
    return UserLocks(store, LeaseRepository(mongo.db), outages, watch, settings, Clock())


def test_an_instance_that_sees_redis_waits_for_the_lease_of_one_that_does_not(settings, db):
    settings = replace(settings, lock_wait_s=0.5, redis_fallback_poll_s=0.1)
    seeing = _locks(settings, settings.redis_url)
    blind = _locks(settings, f"redis://127.0.0.1:{free_port()}/0")
    assert not seeing.watch.active()  # no window yet: the Redis lock alone
    held, release = threading.Event(), threading.Event()

    def hold_blind() -> None:
        with blind.hold("u1"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_blind)
    holder.start()
    try:
        assert held.wait(10), "the blind instance never took its lease"
        assert blind.watch.mode.suspended and blind.watch.mode.epoch == 1
        # The seeing instance's watch reads the window within a poll: then it takes the
        # lease too, which the blind instance holds.
        time.sleep(0.3)
        assert seeing.watch.active() and seeing.watch.mode.suspended
        started = time.monotonic()
        with pytest.raises(BusyError), seeing.hold("u1"):
            pass
        assert time.monotonic() - started >= 0.5  # it waited LOCK_WAIT_S for the lease
    finally:
        release.set()
        holder.join()
    # Given back: now the seeing instance holds it (its Redis lock plus the lease).
    with seeing.hold("u1"):
        assert db["leases"].find_one({"_id": "user:u1"}) is not None
    assert db["leases"].count_documents({}) == 0
    seeing.watch.stop()
    blind.watch.stop()


def test_a_falling_back_instance_waits_for_the_window_to_settle_once(settings, db):
    settings = replace(settings, redis_fallback_poll_s=0.1)
    blind = _locks(settings, f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with blind.hold("u2"):
        first = time.monotonic() - started
    started = time.monotonic()
    with blind.hold("u2"):
        second = time.monotonic() - started
    # poll 0.1 s + MONGO_REQUEST_TIMEOUT_S 1 s + 0.25 s margin, then no more waiting.
    assert first >= blind.settle_s - 0.05
    assert second < 0.5
    blind.watch.stop()


def test_chat_goes_on_through_a_redis_outage_and_the_caches_trust_nothing_from_before(
    settings, own_redis
):
    server = own_redis
    # A short lock (and so outage window) so that the test sees the window close.
    settings = replace(
        settings, redis_url=server.url, lock_timeout_s=1.0, redis_fallback_poll_s=0.1
    )
    app = create_app(settings)
    with app.app_context():
        ensure_indexes(mongo.db)
        mode = services().chat.outage_watch.mode
    chat = ApiChat(app.test_client(), "081300000720")
    chat.register_with_child("Budi", TODDLER)
    chat.say("ya")  # the screening starts
    before = chat.get("/api/v1/chat/messages?limit=100").get_json()["messages"]  # cached
    assert mode.epoch == 0 and not mode.suspended
    # Frozen, not killed: Redis keeps every entry it had (the stale session and history).
    server.proc.send_signal(signal.SIGSTOP)
    try:
        answered = [chat.say("ya") for _ in range(3)]
        assert all(answered)
        assert mode.epoch == 1 and mode.suspended
    finally:
        server.proc.send_signal(signal.SIGCONT)
    # The window closes (settle + LOCK_TIMEOUT_S + 0.25 s) after the last falling-back turn.
    deadline = time.monotonic() + 5
    while mode.suspended and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not mode.suspended and mode.epoch == 1
    time.sleep(settings.redis_breaker_reset_s + 0.1)
    # History and the conversation go on from what MongoDB holds, not from the old entries.
    history = chat.get("/api/v1/chat/messages?limit=100").get_json()["messages"]
    assert len(history) > len(before) + 3  # three turns more, each with its replies
    texts = [m["text"] for m in history if m["direction"] == "inbound"]
    assert texts[:4] == ["ya"] * 4
    chat.say("ya")
    with app.app_context():
        questionnaire = mongo.db["questionnaires"].find_one({"status": "in_progress"})
        assert [a["number"] for a in questionnaire["answers"]] == [1, 2, 3, 4]
        assert mongo.db["leases"].count_documents({}) == 0
    # Redis is trusted again, under the new epoch's keys.
    keys = [k.decode() for k in server_keys(server.url, settings.redis_key_prefix + "f1:*")]
    assert any(":session:" in k for k in keys), keys
    server.stop()


def server_keys(url: str, pattern: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return list(client.scan_iter(match=pattern))
    finally:
        client.close()
