"""The task queue: dramatiq on the stack's Redis, for the WhatsApp channel's work.

Why dramatiq (docs/whatsapp.md): a small, well-kept library whose Redis broker acks a
message only after its actor returns (a worker killed mid-task leaves it unacked, and the
broker gives it to another worker once the dead one's heartbeat is older than
`HEARTBEAT_MS`), with delayed messages and retries with backoff built in, and a
rate limiter on Redis. RQ has no per-message acknowledgement of that kind; Celery would
bring a scheduler, a result backend and far more configuration than two actors need.

Two actors, both keyed by the parent's `wa_id` and both safe to run twice:
- `whatsapp_process(wa_id)`: the sender's waiting messages as chat turns, oldest first,
  then a send for them;
- `whatsapp_send(wa_id)`: the recipient's ready replies, in order. A part Meta throttles
  (or cannot take now) is sent again after its backoff by a delayed message.
One of each runs per `wa_id` at a time (a Redis lock), so a parent's messages and
replies keep their order and wait for that parent's previous ones, never for others'.
MongoDB is the truth (chatbot/db/whatsapp.py): a task lost with Redis's data is queued
again by the requeuer (`requeue`), which every worker process runs every few seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Retries, ShutdownNotifications, TimeLimit
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from chatbot.chat.whatsapp import SendDeferredError, WhatsAppChannel
from chatbot.db import DatabaseError
from chatbot.settings import Settings

log = logging.getLogger(__name__)

QUEUE = "whatsapp"
# A dead worker's unacked tasks go back to the queue once its heartbeat is this old.
HEARTBEAT_MS = 15_000
# How often (1 in N fetches) a worker looks for dead workers' tasks.
MAINTENANCE_CHANCE = 50
# How long a second task for the same parent waits for the first to finish.
USER_WAIT_S = 30.0
REQUEUE_EVERY_S = 5.0
# Send latency buckets (seconds) for chatbot_whatsapp_send_seconds.
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class TaskQueue:
    """The broker and the two actors, for one app's settings (the web enqueues, the
    worker runs them)."""

    def __init__(self, settings: Settings, channel: Callable[[], WhatsAppChannel]) -> None:
        self.settings = settings
        self.channel = channel
        self.prefix = settings.redis_key_prefix
        self.redis = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=max(settings.redis_socket_timeout_s, 2.0),
            socket_connect_timeout=settings.redis_connect_timeout_s,
        )
        self.broker = RedisBroker(
            client=self.redis,
            namespace=f"{self.prefix}dramatiq",
            heartbeat_timeout=HEARTBEAT_MS,
            maintenance_chance=MAINTENANCE_CHANCE,
            middleware=[
                AgeLimit(),
                TimeLimit(),
                ShutdownNotifications(),
                Callbacks(),
                # Unexpected errors (a turn that raised): retried, from 0.5 s to 30 s apart.
                Retries(max_retries=20, min_backoff=500, max_backoff=30_000),
            ],
        )
        # No default broker of dramatiq's own: this one is passed to every actor.
        self.process = dramatiq.Actor(
            self._process, broker=self.broker, actor_name="whatsapp_process",
            queue_name=QUEUE, priority=0, options={"time_limit": 120_000},
        )  # fmt: skip
        self.send = dramatiq.Actor(
            self._send, broker=self.broker, actor_name="whatsapp_send",
            queue_name=QUEUE, priority=0, options={"time_limit": 120_000},
        )  # fmt: skip
        self.limiter = WindowRateLimiter(
            RedisBackend(client=self.redis),
            f"{self.prefix}whatsapp:rate:{settings.whatsapp_phone_number_id}",
            limit=settings.whatsapp_rate_per_s,
            window=1,
        )

    # --- enqueueing (the web, the requeuer) ------------------------------------------
    def enqueue_process(self, wa_id: str) -> None:
        self.process.send(wa_id)

    def enqueue_turns(self, senders: list[str]) -> bool:
        """Queue these senders' turns; False if Redis refused (MongoDB has the messages:
        the requeuer queues them later)."""
        try:
            for wa_id in senders:
                self.enqueue_process(wa_id)
        except (redis.RedisError, dramatiq.errors.DramatiqError):
            return False
        return True

    def enqueue_send(self, wa_id: str, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            self.send.send_with_options(args=(wa_id,), delay=int(delay_s * 1000))
        else:
            self.send.send(wa_id)

    # --- the actors -------------------------------------------------------------------
    def _process(self, wa_id: str) -> None:
        with self._one_at_a_time("process", wa_id):
            self.channel().process(wa_id)
        self.enqueue_send(wa_id)

    def _send(self, wa_id: str) -> None:
        with self._one_at_a_time("send", wa_id):
            try:
                self.channel().send(wa_id)
            except SendDeferredError as exc:
                # Acked now, and sent again by a delayed message; the outbox keeps the part.
                log.info(
                    "whatsapp send to %s deferred %.1f s: %s", mask(wa_id), exc.delay_s, exc.reason
                )
                self.enqueue_send(wa_id, exc.delay_s)

    def wait_for_rate(self, wa_id: str) -> None:
        """Block until this recipient's pace (WHATSAPP_RECIPIENT_PACE_S since the last
        message to them, off by default) and the phone number's window (WHATSAPP_RATE_PER_S)
        allow one more message."""
        pace_ms = int(self.settings.whatsapp_recipient_pace_s * 1000)
        if pace_ms:
            key = f"{self.prefix}whatsapp:pace:{wa_id}"
            # SET NX PX: taken for the next pace_ms by this send; else wait what is left.
            while not self.redis.set(key, 1, nx=True, px=pace_ms):
                time.sleep(max(int(self.redis.pttl(key) or 0), 10) / 1000)
        while True:
            with self.limiter.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return
            time.sleep(0.02)

    @contextlib.contextmanager
    def _one_at_a_time(self, what: str, wa_id: str) -> Iterator[None]:
        lock = self.redis.lock(
            f"{self.prefix}whatsapp:{what}:{wa_id}", timeout=150, blocking_timeout=USER_WAIT_S
        )
        if not lock.acquire():
            raise RuntimeError(f"whatsapp {what} of {mask(wa_id)} still busy")  # retried
        try:
            yield
        finally:
            with contextlib.suppress(redis.RedisError):
                lock.release()

    # --- the requeuer -------------------------------------------------------------------
    def requeue(self) -> dict[str, int]:
        """Queue again the work MongoDB holds that no task seems to be doing."""
        channel = self.channel()
        now = channel.clock.now()
        before = now - timedelta(seconds=self.settings.whatsapp_requeue_after_s)
        senders = channel.inbox.senders_waiting_since(before, 1000)
        for wa_id in senders:
            self.enqueue_process(wa_id)
        recipients = set()
        for doc in channel.outbox.stale(before, 1000):
            if not doc["ready"] and not channel.inbox.has(doc["_id"].removeprefix("wa:")):
                channel.outbox.make_ready(doc["_id"])  # its turn ended in a crash before
            recipients.add(doc["waId"])
        for wa_id in recipients:
            self.enqueue_send(wa_id)
        return {"senders": len(senders), "recipients": len(recipients)}

    def run_requeuer(self, stop: threading.Event) -> None:
        """Every REQUEUE_EVERY_S, in one worker process of all (a Redis lock)."""
        while not stop.wait(REQUEUE_EVERY_S):
            try:
                lock = self.redis.lock(f"{self.prefix}whatsapp:requeue", timeout=REQUEUE_EVERY_S)
                if lock.acquire(blocking=False):
                    report = self.requeue()
                    if any(report.values()):
                        log.info("whatsapp requeued: %s", report)
            except (redis.RedisError, dramatiq.errors.DramatiqError, DatabaseError) as exc:
                log.warning("whatsapp requeue failed: %s", type(exc).__name__)

    # --- what the channel's sends did, for the metrics (every worker, every host) ------
    def record_send(self, outcome: str, code: int | None, seconds: float) -> None:
        """Count one send by outcome and Meta's code, and its latency, in Redis: the
        workers of every host add to the same counters, which any instance's /metrics
        shows (chatbot/metrics.py). A Redis error loses the count, never the send."""
        bucket = next((b for b in SEND_BUCKETS if seconds <= b), "inf")
        with contextlib.suppress(redis.RedisError), self.redis.pipeline(transaction=False) as p:
            p.hincrby(self.stats_key, f"sends|{outcome}|{code or ''}", 1)
            if outcome in ("sent", "failed", "throttled", "retried", "unconfirmed"):
                p.hincrby(self.stats_key, f"latency|{bucket}", 1)
                p.hincrbyfloat(self.stats_key, "latency_sum", seconds)
            p.execute()

    @property
    def stats_key(self) -> str:
        return f"{self.prefix}whatsapp:stats"

    def send_stats(self) -> dict[str, float]:
        """The counters record_send keeps ({} when Redis does not answer)."""
        try:
            raw = self.redis.hgetall(self.stats_key)
        except redis.RedisError:
            return {}
        return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}

    def worker(self, threads: int) -> dramatiq.Worker:
        # worker_timeout: how long an idle consumer waits between fetches, and so how long
        # a stop waits for it (dramatiq's default is 1 s; the stack stops one program at a
        # time, so every second counts twice over).
        return dramatiq.Worker(
            self.broker, queues={QUEUE}, worker_threads=threads, worker_timeout=250
        )

    def close(self) -> None:
        self.broker.close()
        self.redis.close()

    def stats(self) -> dict[str, Any]:
        """Queue depth as the broker holds it (messages waiting, delayed)."""
        ns = f"{self.prefix}dramatiq"
        try:
            return {
                "queued": int(self.redis.llen(f"{ns}:{QUEUE}") or 0),
                "delayed": int(self.redis.llen(f"{ns}:{QUEUE}.DQ") or 0),
            }
        except redis.RedisError:
            return {"queued": -1, "delayed": -1}


def mask(wa_id: str) -> str:
    """A number as the logs show it: the last four digits."""
    return "*" * max(len(wa_id) - 4, 0) + wa_id[-4:]
