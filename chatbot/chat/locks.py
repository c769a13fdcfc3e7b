"""One message per user at a time, across every worker of every instance, Redis or not.

The lock is Redis's (`lock:user:{userId}`, redis-py's Lock: SET NX PX with a token)
while Redis answers. An instance that cannot reach Redis takes a lease in MongoDB
instead (chatbot/db/leases.py: a unique insert by user, with an expiry and an owner
token, released by a delete naming the owner), after declaring an outage window in
`outages`. While a window is open every instance, Redis or not, takes the lease as well
as its Redis lock, so two instances never disagree about who holds a user.

Why a declared window instead of the lease on every turn: the lease costs a turn two
writes (insert, delete); with the window it costs them only around an outage, and the
normal turn makes no extra database call at all. Each process learns of a window from
`OutageWatch`, a thread that reads the one `outages` document every REDIS_FALLBACK_POLL_S
(0.5 s), never from the request. An instance that opens a window waits before its first
leased turn until every other process has seen it and finished any turn it began under
the Redis lock alone: one poll, plus a turn's database deadline, plus a margin
(`settle_s`). The same watch suspends the Redis caches while the window is open and
names their keys by its epoch (chatbot/cache.py `CacheMode`): an instance writing to
MongoDB alone cannot invalidate what Redis holds, so nothing cached is trusted until
the window has passed, and nothing cached before it ever again.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import redis

from chatbot.cache import CacheMode
from chatbot.clock import Clock
from chatbot.db import DatabaseError, deadline
from chatbot.db.leases import NO_OUTAGE, LeaseRepository, Outage, OutageRepository
from chatbot.errors import BusyError, ServiceUnavailableError
from chatbot.redis_store import RedisStore
from chatbot.settings import Settings

log = logging.getLogger(__name__)

# How often a lease that another holds is tried again while waiting for it.
LEASE_RETRY_S = 0.05
# A falling-back instance renews the window at most this often (one write per second).
RENEW_EVERY_S = 1.0
# Added to the settle time and to the window's length: scheduling and clock slack.
MARGIN_S = 0.25


class OutageWatch:
    """What this process knows of the outage window, read by a thread of its own.

    Until its first read succeeds the Redis caches stay suspended: a process cannot
    know which epoch names the keys it may trust.
    """

    def __init__(
        self, outages: OutageRepository, mode: CacheMode, clock: Clock, poll_s: float
    ) -> None:
        self.outages = outages
        self.mode = mode
        self.clock = clock
        self.poll_s = poll_s
        self.outage: Outage = NO_OUTAGE
        self.known = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Read once now (so the first request knows), then every poll_s in a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="outage-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except DatabaseError as exc:
                if "after close" in str(exc):  # the app's client was closed: this watch is done
                    return

    def refresh(self) -> None:
        """Read the window; a database that does not answer leaves what was known."""
        try:
            with deadline(self.poll_s * 2):
                outage = self.outages.read()
        except DatabaseError as exc:
            if "after close" in str(exc):
                raise
            log.debug("outage watch: no answer from the database: %s", type(exc).__name__)
            return
        self.apply(outage)

    def apply(self, outage: Outage) -> None:
        self.outage = outage
        self.known = True
        self.mode.epoch = outage.epoch
        self.mode.suspended = outage.active(self.clock.now())

    def active(self) -> bool:
        """Whether turns must take the lease: a window is open (or nothing is known yet)."""
        return not self.known or self.outage.active(self.clock.now())


class UserLocks:
    def __init__(
        self,
        redis_store: RedisStore,
        leases: LeaseRepository,
        outages: OutageRepository,
        watch: OutageWatch,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self.redis = redis_store
        self.leases = leases
        self.outages = outages
        self.watch = watch
        self.clock = clock
        self.timeout_s = settings.lock_timeout_s
        self.wait_s = settings.lock_wait_s
        self.db_timeout_s = settings.mongo_request_timeout_s
        # Until every process has seen a new window and ended its Redis-only turns.
        self.settle_s = settings.redis_fallback_poll_s + settings.mongo_request_timeout_s + MARGIN_S
        # Renewed by every falling-back turn: outlasts its settling and the longest lease
        # it may then take (shorter, and the window could close under a held lease).
        self.window_s = self.settle_s + settings.lock_timeout_s + MARGIN_S
        self._renewed_at = -RENEW_EVERY_S

    @contextlib.contextmanager
    def hold(self, user_id: str) -> Iterator[None]:
        """Hold the user: Redis's lock, plus the lease while a window is open; the lease
        alone when Redis cannot be reached. BusyError when another holds it."""
        try:
            lock: redis.lock.Lock | None = self._redis_lock(user_id)
        except redis.RedisError:
            lock = None
        if lock is None:  # outside the except: the turn's own errors are not chained to it
            with self._fallback(user_id):
                yield
            return
        try:
            if self.watch.active():
                with self._lease(user_id):
                    yield
            else:
                yield
        finally:
            try:
                lock.release()
            except redis.RedisError as exc:  # expired or Redis gone: it times out by itself
                log.warning(
                    "could not release the lock of user %s: %s", user_id, type(exc).__name__
                )

    def _redis_lock(self, user_id: str) -> redis.lock.Lock:
        client = self.redis.client
        assert client is not None, "RedisStore.init_app was not called"
        lock: redis.lock.Lock = client.lock(
            self.redis.key("lock", "user", user_id),
            timeout=self.timeout_s,
            blocking_timeout=self.wait_s,
        )
        if not lock.acquire():
            raise BusyError("Another message from you is still being processed; retry shortly.")
        return lock

    @contextlib.contextmanager
    def _fallback(self, user_id: str) -> Iterator[None]:
        """Redis is out of reach: open (or renew) the window, let it settle, take the lease."""
        try:
            outage = self._declare()
        except DatabaseError:
            raise ServiceUnavailableError(
                "Chat is briefly unavailable; try again shortly."
            ) from None
        if outage.since is not None:
            settled_at = outage.since + timedelta(seconds=self.settle_s)
            wait = (settled_at - self.clock.now()).total_seconds()
            if wait > 0:
                log.info("redis unreachable: waiting %.2f s for the outage window to settle", wait)
                time.sleep(wait)
        with self._lease(user_id):
            yield

    def _declare(self) -> Outage:
        if time.monotonic() - self._renewed_at < RENEW_EVERY_S and self.watch.outage.active(
            self.clock.now()
        ):
            return self.watch.outage
        now = self.clock.now()
        with deadline(self.db_timeout_s):
            outage = self.outages.declare(now, now + timedelta(seconds=self.window_s))
        if outage.epoch != self.watch.outage.epoch:
            log.warning("redis unreachable: turns take MongoDB leases (epoch %d)", outage.epoch)
        self._renewed_at = time.monotonic()
        self.watch.apply(outage)  # this process's caches suspend at once
        return outage

    @contextlib.contextmanager
    def _lease(self, user_id: str) -> Iterator[None]:
        key, owner = f"user:{user_id}", secrets.token_hex(8)
        give_up = time.monotonic() + self.wait_s
        while True:
            now = self.clock.now()
            with deadline(self.db_timeout_s):
                taken = self.leases.acquire(
                    key, owner, now, now + timedelta(seconds=self.timeout_s)
                )
            if taken:
                break
            if time.monotonic() >= give_up:
                raise BusyError("Another message from you is still being processed; retry shortly.")
            time.sleep(LEASE_RETRY_S)
        try:
            yield
        finally:
            try:
                with deadline(self.db_timeout_s):
                    self.leases.release(key, owner)
            except DatabaseError as exc:  # it expires by itself
                log.warning(
                    "could not release the lease of user %s: %s", user_id, type(exc).__name__
                )
