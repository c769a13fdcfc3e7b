"""One Redis connection pool per worker process, guarded by a circuit breaker.

The cache, the rate limiter and the per-user locks all share this pool. During a
Redis outage the breaker opens after the first failure, so each request pays no
Redis timeout at all until the next trial, instead of one timeout per command.

With REDIS_SENTINELS the pool asks the sentinels for the current master on every new
connection (redis-py's Sentinel support), so after a Sentinel failover the first
failure opens the breaker, and the next trial connects to the promoted master.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pybreaker
import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from chatbot.settings import Settings

T = TypeVar("T")


def _is_not_an_outage(exc: BaseException) -> bool:
    """Let command errors (WRONGTYPE, NOSCRIPT, ...) through without tripping the breaker."""
    return not isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError))


class BreakerConnection(redis.Connection):
    """A redis-py connection whose connects and reads pass through a shared breaker."""

    # Set by chatbot.metrics: told (seconds, exception or None) once per round trip
    # (a command and its reply; a pipeline counts once), and about failed connects and sends.
    observer: Callable[[float, BaseException | None], None] | None = None

    def __init__(self, *, breaker: pybreaker.CircuitBreaker, **kwargs: Any) -> None:
        # redis-py leaves Connection.__init__, disconnect and send_packed_command unannotated,
        # and mypy's untyped_calls_exclude cannot name a super() call or an inherited method.
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.breaker = breaker
        self._sent_at: float | None = None

    def _guarded(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            with self.breaker.calling():
                return fn(*args, **kwargs)
        except pybreaker.CircuitBreakerError as exc:
            # A read may have been skipped: the socket's state is unknown, so drop it.
            self.disconnect()  # type: ignore[no-untyped-call]  # see __init__
            raise redis.ConnectionError(f"Redis unavailable (circuit open): {exc}") from exc

    def connect(self) -> None:
        try:
            self._guarded(super().connect)
        except BaseException as exc:
            if self.observer is not None:
                self.observer(0.0, exc)
            raise

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().send_packed_command(*args, **kwargs)  # type: ignore[no-untyped-call]  # see __init__
        except BaseException as exc:
            if self.observer is not None:
                self.observer(0.0, exc)
            raise
        # Stamped after the send: a health-check PING inside it has its own round trip.
        self._sent_at = time.perf_counter()

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if self.observer is None:
            return self._guarded(super().read_response, *args, **kwargs)
        sent_at, self._sent_at = self._sent_at, None
        try:
            response = self._guarded(super().read_response, *args, **kwargs)
        except BaseException as exc:
            self.observer(time.perf_counter() - sent_at if sent_at else 0.0, exc)
            raise
        if sent_at is not None:
            self.observer(time.perf_counter() - sent_at, None)
        return response


class BreakerSentinelConnection(BreakerConnection, SentinelManagedConnection):
    """The same breaker on a connection to whichever server the sentinels call master.

    Its connect asks the sentinels first (inside the breaker: no sentinel answering is
    an outage too); a master demoted under it answers READONLY, which redis-py turns
    into a ConnectionError that opens the breaker.
    """


def _sentinel_pool(settings: Settings, **kwargs: Any) -> redis.ConnectionPool:
    """A pool on the master of REDIS_SENTINEL_SERVICE, as the sentinels name it.

    REDIS_URL still gives the database number, the password and the options; its host
    and port are not used.
    """
    options = {k: v for k, v in parse_url(settings.redis_url).items() if k not in ("host", "port")}
    options.pop("connection_class", None)  # rediss:// would choose SSLConnection
    timeouts = {
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
    }
    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs=timeouts)
    return SentinelConnectionPool(
        settings.redis_sentinel_service,
        sentinel,
        connection_class=BreakerSentinelConnection,
        **options,
        **kwargs,
    )


class RedisStore:
    """Holds the worker's Redis pool; build it with `init_app` after the fork."""

    def __init__(self) -> None:
        self.pool: redis.ConnectionPool | None = None
        self.client: redis.Redis | None = None
        self.breaker: pybreaker.CircuitBreaker | None = None
        self.prefix = ""

    def init_app(self, settings: Settings) -> None:
        self.prefix = settings.redis_key_prefix
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=1,
            reset_timeout=settings.redis_breaker_reset_s,
            exclude=[_is_not_an_outage],
            name="redis",
        )
        # redis-py pools check the pid on every checkout and rebuild themselves in a
        # forked child, so one pool object per app is one pool per worker process.
        pool_options = {
            "breaker": self.breaker,
            "socket_timeout": settings.redis_socket_timeout_s,
            "socket_connect_timeout": settings.redis_connect_timeout_s,
            "max_connections": settings.redis_max_connections,
            # No retries: a retry against a dead server only doubles the wait.
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 30,
        }
        if settings.redis_sentinels:
            self.pool = _sentinel_pool(settings, **pool_options)
        else:
            self.pool = redis.ConnectionPool.from_url(
                settings.redis_url, connection_class=BreakerConnection, **pool_options
            )
        self.client = redis.Redis(connection_pool=self.pool, retry=Retry(NoBackoff(), 0))

    def key(self, *parts: str) -> str:
        """Build a namespaced key, e.g. key("lock", user_id) -> "chatbot:lock:<id>"."""
        return self.prefix + ":".join(parts)

    def ping(self) -> None:
        """Ping Redis once; raise redis.RedisError when it is unreachable."""
        assert self.client is not None, "RedisStore.init_app was not called"
        self.client.ping()
