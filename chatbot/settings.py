"""Settings for the service, read once from the environment.

Every value has a documented default (see docs/configuration.md); secrets come only
from the environment, and production refuses to start without them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENVIRONMENTS = ("development", "testing", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# A placeholder that is fine on a laptop and refused in production.
T = TypeVar("T", int, float)

DEV_SECRET_KEY = "dev-insecure-secret-key"  # noqa: S105 -- a known placeholder, refused in production


# The development code sender (OTP_SENDER's default), in load_sender's dotted form.
LOG_CODE_SENDER = "chatbot.auth.LogCodeSender"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value if value else default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    return _number(env, name, default, minimum, int, "an integer")


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    return _number(env, name, default, minimum, float, "a number")


def _number(
    env: Mapping[str, str], name: str, default: T, minimum: T, cast: Callable[[str], T], kind: str
) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if value < minimum:  # type: ignore[operator]
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(env, name, default)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _addresses(env: Mapping[str, str], name: str) -> tuple[tuple[str, int], ...]:
    """ "host:port,host:port" -> ((host, port), ...); empty -> ()."""
    raw = env.get(name, "").strip()
    found = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be host:port[,host:port...], got {item!r}")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def _timezone(env: Mapping[str, str], name: str, default: str) -> str:
    value = _str(env, name, default)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{name} must be an IANA time zone such as Asia/Jakarta, got {value!r}"
        ) from None
    return value


@dataclass(frozen=True)
class Settings:
    """Typed settings; build with `Settings.from_env()`."""

    env: str = "development"
    secret_key: str = DEV_SECRET_KEY
    instance_id: str = "local"
    log_level: str = "INFO"

    mongo_uri: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "chatbot"
    mongo_server_selection_timeout_ms: int = 2000
    mongo_connect_timeout_ms: int = 2000
    mongo_socket_timeout_ms: int = 5000
    mongo_max_pool_size: int = 50
    mongo_request_timeout_s: float = 1.0

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_socket_timeout_s: float = 0.5
    redis_connect_timeout_s: float = 0.5
    redis_max_connections: int = 50
    redis_breaker_reset_s: float = 2.0
    redis_key_prefix: str = "chatbot:"
    # Redis through Sentinel: (host, port) of each sentinel; empty = REDIS_URL's server.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_service: str = "mymaster"

    health_timeout_s: float = 1.5
    retry_after_unavailable_s: int = 2
    max_content_length: int = 64 * 1024
    rate_limit_default: str = "300 per minute"
    cache_default_timeout_s: int = 60
    compress_level: int = 6
    compress_min_size: int = 1024
    cache_enabled: bool = True
    memory_cache_size: int = 4096
    memory_cache_ttl_s: int = 600
    redis_cache_ttl_s: int = 3600
    response_cache_s: int = 300

    token_max_age_s: int = 30 * 24 * 3600
    otp_sender: str = "chatbot.auth:LogCodeSender"
    # Production refuses the logging sender unless this says so (test stacks read codes from logs).
    allow_log_code_sender: bool = False
    otp_ttl_s: int = 300
    otp_max_attempts: int = 5
    otp_sends_per_window: int = 3
    otp_send_window_s: int = 900
    chat_rate_limit: str = "120 per minute"
    verify_rate_limit: str = "10 per minute"

    session_idle_minutes: int = 30
    session_cache_s: int = 300
    resume_window_hours: int = 24
    timezone: str = "Asia/Jakarta"
    lock_timeout_s: float = 10.0
    lock_wait_s: float = 2.0
    preterm_below_weeks: int = 37
    correct_until_months: int = 24
    stats_cache_s: int = 30
    settle_after_s: int = 60
    settle_batch_size: int = 500
    archive_after_days: int = 90
    archive_batch_size: int = 500
    # Monitoring (chatbot/metrics.py, chatbot/collector.py; docs/monitoring.md).
    metrics_enabled: bool = True
    metrics_interval_s: int = 30
    metrics_retention_hours: int = 7 * 24
    alert_memory_mb: int = 1024
    alert_cpu_percent: float = 80.0
    alert_response_time_ms: float = 1000.0
    alert_retention_days: int = 90
    alert_webhook_url: str = ""
    alert_webhook_timeout_s: float = 5.0
    alert_webhook_retries: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `env` (default: os.environ); raise ConfigError if invalid."""
        env = os.environ if env is None else env
        d = cls()
        settings = cls(
            env=_choice(env, "CHATBOT_ENV", d.env, ENVIRONMENTS),
            secret_key=_str(env, "SECRET_KEY", ""),
            instance_id=_str(env, "INSTANCE_ID", socket.gethostname()),
            log_level=_choice(env, "LOG_LEVEL", d.log_level, LOG_LEVELS),
            mongo_uri=_str(env, "MONGO_URI", d.mongo_uri),
            mongo_db=_str(env, "MONGO_DB", d.mongo_db),
            mongo_server_selection_timeout_ms=_int(
                env, "MONGO_SERVER_SELECTION_TIMEOUT_MS", d.mongo_server_selection_timeout_ms, 1
            ),
            mongo_connect_timeout_ms=_int(
                env, "MONGO_CONNECT_TIMEOUT_MS", d.mongo_connect_timeout_ms, 1
            ),
            mongo_socket_timeout_ms=_int(
                env, "MONGO_SOCKET_TIMEOUT_MS", d.mongo_socket_timeout_ms, 1
            ),
            mongo_max_pool_size=_int(env, "MONGO_MAX_POOL_SIZE", d.mongo_max_pool_size, 1),
            mongo_request_timeout_s=_float(
                env, "MONGO_REQUEST_TIMEOUT_S", d.mongo_request_timeout_s, 0.05
            ),
            redis_url=_str(env, "REDIS_URL", d.redis_url),
            redis_socket_timeout_s=_float(
                env, "REDIS_SOCKET_TIMEOUT_S", d.redis_socket_timeout_s, 0.01
            ),
            redis_connect_timeout_s=_float(
                env, "REDIS_CONNECT_TIMEOUT_S", d.redis_connect_timeout_s, 0.01
            ),
            redis_max_connections=_int(env, "REDIS_MAX_CONNECTIONS", d.redis_max_connections, 1),
            redis_breaker_reset_s=_float(
                env, "REDIS_BREAKER_RESET_S", d.redis_breaker_reset_s, 0.1
            ),
            redis_key_prefix=_str(env, "REDIS_KEY_PREFIX", d.redis_key_prefix),
            redis_sentinels=_addresses(env, "REDIS_SENTINELS"),
            redis_sentinel_service=_str(env, "REDIS_SENTINEL_SERVICE", d.redis_sentinel_service),
            health_timeout_s=_float(env, "HEALTH_TIMEOUT_S", d.health_timeout_s, 0.05),
            retry_after_unavailable_s=_int(
                env, "RETRY_AFTER_UNAVAILABLE_S", d.retry_after_unavailable_s, 1
            ),
            max_content_length=_int(env, "MAX_CONTENT_LENGTH", d.max_content_length, 1024),
            rate_limit_default=_str(env, "RATE_LIMIT_DEFAULT", d.rate_limit_default),
            cache_default_timeout_s=_int(
                env, "CACHE_DEFAULT_TIMEOUT_S", d.cache_default_timeout_s, 1
            ),
            compress_level=_int(env, "COMPRESS_LEVEL", d.compress_level, 1),
            compress_min_size=_int(env, "COMPRESS_MIN_SIZE", d.compress_min_size, 0),
            cache_enabled=_choice(env, "CACHE_ENABLED", "1", ("0", "1")) == "1",
            memory_cache_size=_int(env, "MEMORY_CACHE_SIZE", d.memory_cache_size, 1),
            memory_cache_ttl_s=_int(env, "MEMORY_CACHE_TTL_S", d.memory_cache_ttl_s, 1),
            redis_cache_ttl_s=_int(env, "REDIS_CACHE_TTL_S", d.redis_cache_ttl_s, 1),
            response_cache_s=_int(env, "RESPONSE_CACHE_S", d.response_cache_s, 0),
            token_max_age_s=_int(env, "TOKEN_MAX_AGE_S", d.token_max_age_s, 60),
            otp_sender=_str(env, "OTP_SENDER", d.otp_sender),
            allow_log_code_sender=_choice(env, "ALLOW_LOG_CODE_SENDER", "0", ("0", "1")) == "1",
            otp_ttl_s=_int(env, "OTP_TTL_S", d.otp_ttl_s, 30),
            otp_max_attempts=_int(env, "OTP_MAX_ATTEMPTS", d.otp_max_attempts, 1),
            otp_sends_per_window=_int(env, "OTP_SENDS_PER_WINDOW", d.otp_sends_per_window, 1),
            otp_send_window_s=_int(env, "OTP_SEND_WINDOW_S", d.otp_send_window_s, 60),
            chat_rate_limit=_str(env, "CHAT_RATE_LIMIT", d.chat_rate_limit),
            verify_rate_limit=_str(env, "VERIFY_RATE_LIMIT", d.verify_rate_limit),
            session_idle_minutes=_int(env, "SESSION_IDLE_MINUTES", d.session_idle_minutes, 1),
            session_cache_s=_int(env, "SESSION_CACHE_S", d.session_cache_s, 1),
            resume_window_hours=_int(env, "RESUME_WINDOW_HOURS", d.resume_window_hours, 1),
            timezone=_timezone(env, "TIMEZONE", d.timezone),
            lock_timeout_s=_float(env, "LOCK_TIMEOUT_S", d.lock_timeout_s, 0.5),
            lock_wait_s=_float(env, "LOCK_WAIT_S", d.lock_wait_s, 0.0),
            preterm_below_weeks=_int(env, "PRETERM_BELOW_WEEKS", d.preterm_below_weeks, 20),
            correct_until_months=_int(env, "CORRECT_UNTIL_MONTHS", d.correct_until_months, 0),
            stats_cache_s=_int(env, "STATS_CACHE_S", d.stats_cache_s, 0),
            settle_after_s=_int(env, "SETTLE_AFTER_S", d.settle_after_s, 1),
            settle_batch_size=_int(env, "SETTLE_BATCH_SIZE", d.settle_batch_size, 1),
            archive_after_days=_int(env, "ARCHIVE_AFTER_DAYS", d.archive_after_days, 1),
            archive_batch_size=_int(env, "ARCHIVE_BATCH_SIZE", d.archive_batch_size, 1),
            metrics_enabled=_choice(env, "METRICS_ENABLED", "1", ("0", "1")) == "1",
            metrics_interval_s=_int(env, "METRICS_INTERVAL_S", d.metrics_interval_s, 1),
            metrics_retention_hours=_int(
                env, "METRICS_RETENTION_HOURS", d.metrics_retention_hours, 1
            ),
            alert_memory_mb=_int(env, "ALERT_MEMORY_MB", d.alert_memory_mb, 1),
            alert_cpu_percent=_float(env, "ALERT_CPU_PERCENT", d.alert_cpu_percent, 0.0),
            alert_response_time_ms=_float(
                env, "ALERT_RESPONSE_TIME_MS", d.alert_response_time_ms, 0.0
            ),
            alert_retention_days=_int(env, "ALERT_RETENTION_DAYS", d.alert_retention_days, 1),
            alert_webhook_url=_str(env, "ALERT_WEBHOOK_URL", d.alert_webhook_url),
            alert_webhook_timeout_s=_float(
                env, "ALERT_WEBHOOK_TIMEOUT_S", d.alert_webhook_timeout_s, 0.1
            ),
            alert_webhook_retries=_int(env, "ALERT_WEBHOOK_RETRIES", d.alert_webhook_retries, 0),
        )
        return settings.checked()

    def checked(self) -> Settings:
        """Fill the dev secret outside production; refuse to run production without one,
        or with the development code sender (it logs every one-time code) unless
        ALLOW_LOG_CODE_SENDER=1 says so."""
        if self.env == "production" and self.secret_key in ("", DEV_SECRET_KEY):
            raise ConfigError(
                "SECRET_KEY is required when CHATBOT_ENV=production; "
                'generate one with: python -c "import secrets; print(secrets.token_hex(32))"'
            )
        if (
            self.env == "production"
            and self.otp_sender.replace(":", ".") == LOG_CODE_SENDER
            and not self.allow_log_code_sender
        ):
            raise ConfigError(
                "OTP_SENDER=chatbot.auth:LogCodeSender (the default) writes one-time codes to "
                "the log and is refused when CHATBOT_ENV=production; set OTP_SENDER to a real "
                "sender, or ALLOW_LOG_CODE_SENDER=1 for a test stack that reads codes from its log"
            )
        if self.secret_key:
            return self
        return replace(self, secret_key=DEV_SECRET_KEY)

    @property
    def is_production(self) -> bool:
        return self.env == "production"
