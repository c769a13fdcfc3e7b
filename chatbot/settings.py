"""Settings for the service, read once from the environment with pydantic-settings.

Each setting is written once, as a field: its type and bounds, its default and the
environment variable it comes from (docs/configuration.md explains each for operators).
A malformed value stops start-up with a ConfigError naming the variable; production
refuses to start without its secret or with the logging code sender.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import multiprocessing
import os
import re
import socket
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, create_model
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode

from chatbot.errors import ConfigError

ENVIRONMENTS = ("development", "testing", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The WhatsApp channel's development placeholders (the emulator's too), refused in production.
DEV_WHATSAPP = {
    "whatsapp_app_secret": "dev-whatsapp-app-secret",
    "whatsapp_verify_token": "dev-whatsapp-verify-token",
    "whatsapp_access_token": "dev-whatsapp-access-token",
    "whatsapp_phone_number_id": "100000000000001",
}
# A placeholder that is fine on a laptop and refused in production.
DEV_SECRET_KEY = "dev-insecure-secret-key"  # noqa: S105 -- a known placeholder, refused in production

# The development code sender (OTP_SENDER's default), in load_sender's dotted form.
LOG_CODE_SENDER = "chatbot.auth.LogCodeSender"

# The header nginx sets to PROXY_SECRET on every request it passes (chatbot/proxy.py).
PROXY_SECRET_HEADER = "X-Proxy-Secret"  # noqa: S105 -- a header name, not a secret

T = TypeVar("T")


# --- How a field reads its variable ----------------------------------------------


def var(name: str, default: Any = None, *, default_factory: Any = None, **bounds: Any) -> Any:
    """The field read from environment variable `name` (bounds: ge=, le=)."""
    if default_factory is not None:
        return Field(default_factory=default_factory, validation_alias=name, **bounds)
    return Field(default, validation_alias=name, **bounds)


@dataclasses.dataclass(frozen=True)
class Expect:
    """What a value must look like, for the error message ("must be <this>")."""

    what: str
    secret: bool = False  # never repeat the value in the message


def _zero_or_one(value: Any) -> Any:
    if isinstance(value, str):
        if value not in ("0", "1"):
            raise ValueError("must be 0 or 1")
        return value == "1"
    return value


def _addresses(value: Any) -> Any:
    """ "host:port,host:port" -> ((host, port), ...); empty -> ()."""
    if not isinstance(value, str):
        return value
    found = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad item {item!r}")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def _timezone(value: Any) -> Any:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError("unknown zone") from None
    return value


_PROXY_SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")


def _proxy_secret(value: Any) -> Any:
    if isinstance(value, str) and value and not _PROXY_SECRET.match(value):
        raise ValueError("bad secret")
    return value


def _ip_list(value: Any) -> Any:
    if isinstance(value, str):
        for item in filter(None, (part.strip() for part in value.split(","))):
            if item != "*":
                try:
                    ipaddress.ip_network(item)
                except ValueError:
                    raise ValueError(f"bad item {item!r}") from None
    return value


def _path(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith("/"):
        raise ValueError("not a path")
    return value


Flag = Annotated[bool, BeforeValidator(_zero_or_one), Expect("0 or 1")]
Environment = Literal["development", "testing", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Addresses = Annotated[
    tuple[tuple[str, int], ...],
    NoDecode,  # not JSON: "host:port,host:port"
    BeforeValidator(_addresses),
    Expect("host:port[,host:port...]"),
]
TimeZone = Annotated[
    str, BeforeValidator(_timezone), Expect("an IANA time zone such as Asia/Jakarta")
]
ProxySecret = Annotated[
    str,
    BeforeValidator(_proxy_secret),
    Expect("empty or 16 to 256 characters of letters, digits and ._~+/=-", secret=True),
]
IpList = Annotated[
    str, BeforeValidator(_ip_list), Expect("addresses or networks, comma separated, or *")
]
UrlPath = Annotated[str, BeforeValidator(_path), Expect("a path starting with /")]

# Settings are values: frozen, validated on construction (dataclasses.replace too), and
# built from field names in code and tests or from variable names by from_environment().
SETTINGS_CONFIG = ConfigDict(
    validate_by_name=True, validate_by_alias=True, extra="forbid", allow_inf_nan=False
)


# --- Reading the environment (pydantic-settings) ----------------------------------


class _Environ(EnvSettingsSource):
    """pydantic-settings' environment source over one mapping (os.environ by default).

    Names are case-sensitive and values stripped; a blank value counts as unset.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k: v.strip() for k, v in self._environ.items() if v and v.strip()}


_SOURCES: dict[type, type[BaseSettings]] = {}


def _source_model(cls: type) -> type[BaseSettings]:
    """The BaseSettings twin of a settings dataclass: the same fields, for the source."""
    if cls not in _SOURCES:
        fields = fields_of(cls)
        # create_model's overloads type fields given as literal keywords; these are built
        # from the dataclass's own fields, which mypy cannot match to an overload.
        _SOURCES[cls] = create_model(  # type: ignore[call-overload]
            f"{cls.__name__}Environment",
            __base__=BaseSettings,
            **{name: (field.annotation, field) for name, field in fields.items()},
        )
    return _SOURCES[cls]


def fields_of(cls: type) -> dict[str, FieldInfo]:
    """A settings dataclass's fields (pydantic's FieldInfo, with the variable as alias)."""
    # Set by @pydantic.dataclasses.dataclass at class creation; `type` does not declare it.
    fields: dict[str, FieldInfo] = cls.__pydantic_fields__  # type: ignore[attr-defined]
    return fields


def variable_of(field: FieldInfo, name: str) -> str:
    alias = field.validation_alias
    return alias if isinstance(alias, str) else name


def _expect(field: FieldInfo) -> Expect | None:
    return next((item for item in field.metadata if isinstance(item, Expect)), None)


def _describe(field: FieldInfo) -> str:
    if expect := _expect(field):
        return expect.what
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(annotation))
    kinds: dict[object, str] = {int: "an integer", float: "a number"}
    kind = kinds.get(annotation, "a string")
    bounds = [
        f"{symbol} {getattr(item, attr)}"
        for item in field.metadata
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if hasattr(item, attr)
    ]
    return " ".join([kind, *bounds])


def config_error(cls: type, exc: ValidationError, raw: Mapping[str, Any]) -> ConfigError:
    """One message per malformed variable: "NAME must be <what>, got '<value>'"."""
    fields = fields_of(cls)
    by_variable = {variable_of(f, n): (n, f) for n, f in fields.items()}
    problems = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        name, field = by_variable.get(key) or (key, fields.get(key))
        variable = variable_of(field, name) if field else key
        value = raw.get(variable, error.get("input"))
        what = _describe(field) if field else error["msg"]
        expect = _expect(field) if field else None
        shown = f"{len(str(value))} characters" if expect and expect.secret else repr(value)
        problems.append(f"{variable} must be {what}, got {shown}")
    return ConfigError("; ".join(problems))


def from_environment(cls: type[T], env: Mapping[str, str] | None = None, **defaults: Any) -> T:
    """Build the settings dataclass `cls` from `env` (default: os.environ).

    `defaults` are variable values used when the variable is unset or blank.
    """
    environ = os.environ if env is None else env
    raw: dict[str, Any] = {**defaults, **_Environ(_source_model(cls), environ)()}
    try:
        return cls(**raw)
    except ValidationError as exc:
        raise config_error(cls, exc, raw) from None


# --- The application ---------------------------------------------------------------


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class Settings:
    """The app's settings; build with `Settings.from_env()` (docs/configuration.md)."""

    env: Environment = var("CHATBOT_ENV", "development")
    # Signs tokens; from the environment only. Outside production an unset one is the
    # placeholder; production refuses both (checked()).
    secret_key: str = var("SECRET_KEY", DEV_SECRET_KEY)
    # Names this instance in /health, X-Instance-Id and every log line (from_env: host name).
    instance_id: str = var("INSTANCE_ID", "local")
    log_level: LogLevel = var("LOG_LEVEL", "INFO")
    # The header value nginx adds to every request it passes; only a request carrying it
    # has its X-Forwarded-* headers trusted (chatbot/proxy.py). Empty: nobody's are.
    proxy_secret: ProxySecret = var("PROXY_SECRET", "")

    mongo_uri: str = var("MONGO_URI", "mongodb://127.0.0.1:27017/")
    mongo_db: str = var("MONGO_DB", "chatbot")
    mongo_server_selection_timeout_ms: int = var("MONGO_SERVER_SELECTION_TIMEOUT_MS", 2000, ge=1)
    mongo_connect_timeout_ms: int = var("MONGO_CONNECT_TIMEOUT_MS", 2000, ge=1)
    mongo_socket_timeout_ms: int = var("MONGO_SOCKET_TIMEOUT_MS", 5000, ge=1)
    # Connections per worker process: GUNICORN_THREADS's default, since a worker runs at
    # most that many requests at once (more could never be used; docs/ferretdb.md counts
    # them against FerretDB's PostgreSQL pool).
    mongo_max_pool_size: int = var("MONGO_MAX_POOL_SIZE", 16, ge=1)
    # Every request's database calls together (pymongo.timeout()).
    mongo_request_timeout_s: float = var("MONGO_REQUEST_TIMEOUT_S", 1.0, ge=0.05)

    redis_url: str = var("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_socket_timeout_s: float = var("REDIS_SOCKET_TIMEOUT_S", 0.5, ge=0.01)
    redis_connect_timeout_s: float = var("REDIS_CONNECT_TIMEOUT_S", 0.5, ge=0.01)
    redis_max_connections: int = var("REDIS_MAX_CONNECTIONS", 50, ge=1)
    redis_breaker_reset_s: float = var("REDIS_BREAKER_RESET_S", 2.0, ge=0.1)
    redis_key_prefix: str = var("REDIS_KEY_PREFIX", "chatbot:")
    # Redis through Sentinel: (host, port) of each sentinel; empty = REDIS_URL's server.
    redis_sentinels: Addresses = var("REDIS_SENTINELS", ())
    redis_sentinel_service: str = var("REDIS_SENTINEL_SERVICE", "mymaster")

    health_timeout_s: float = var("HEALTH_TIMEOUT_S", 1.5, ge=0.05)
    retry_after_unavailable_s: int = var("RETRY_AFTER_UNAVAILABLE_S", 2, ge=1)
    max_content_length: int = var("MAX_CONTENT_LENGTH", 64 * 1024, ge=1024)
    rate_limit_default: str = var("RATE_LIMIT_DEFAULT", "300 per minute")
    cache_default_timeout_s: int = var("CACHE_DEFAULT_TIMEOUT_S", 60, ge=1)
    compress_level: int = var("COMPRESS_LEVEL", 6, ge=1)
    compress_min_size: int = var("COMPRESS_MIN_SIZE", 1024, ge=0)
    cache_enabled: Flag = var("CACHE_ENABLED", True)
    memory_cache_size: int = var("MEMORY_CACHE_SIZE", 4096, ge=1)
    memory_cache_ttl_s: int = var("MEMORY_CACHE_TTL_S", 600, ge=1)
    redis_cache_ttl_s: int = var("REDIS_CACHE_TTL_S", 3600, ge=1)
    response_cache_s: int = var("RESPONSE_CACHE_S", 300, ge=0)

    token_max_age_s: int = var("TOKEN_MAX_AGE_S", 30 * 24 * 3600, ge=60)
    otp_sender: str = var("OTP_SENDER", "chatbot.auth:LogCodeSender")
    # Production refuses the logging sender unless this says so (test stacks read codes from logs).
    allow_log_code_sender: Flag = var("ALLOW_LOG_CODE_SENDER", False)
    otp_ttl_s: int = var("OTP_TTL_S", 300, ge=30)
    otp_max_attempts: int = var("OTP_MAX_ATTEMPTS", 5, ge=1)
    otp_sends_per_window: int = var("OTP_SENDS_PER_WINDOW", 3, ge=1)
    otp_send_window_s: int = var("OTP_SEND_WINDOW_S", 900, ge=60)
    chat_rate_limit: str = var("CHAT_RATE_LIMIT", "120 per minute")
    verify_rate_limit: str = var("VERIFY_RATE_LIMIT", "10 per minute")

    session_idle_minutes: int = var("SESSION_IDLE_MINUTES", 30, ge=1)
    session_cache_s: int = var("SESSION_CACHE_S", 300, ge=1)
    resume_window_hours: int = var("RESUME_WINDOW_HOURS", 24, ge=1)
    timezone: TimeZone = var("TIMEZONE", "Asia/Jakarta")
    lock_timeout_s: float = var("LOCK_TIMEOUT_S", 10.0, ge=0.5)
    lock_wait_s: float = var("LOCK_WAIT_S", 2.0, ge=0.0)
    redis_fallback_poll_s: float = var("REDIS_FALLBACK_POLL_S", 0.5, ge=0.05, le=5.0)
    preterm_below_weeks: int = var("PRETERM_BELOW_WEEKS", 37, ge=20)
    correct_until_months: int = var("CORRECT_UNTIL_MONTHS", 24, ge=0)
    stats_cache_s: int = var("STATS_CACHE_S", 30, ge=0)
    settle_after_s: int = var("SETTLE_AFTER_S", 60, ge=1)
    settle_batch_size: int = var("SETTLE_BATCH_SIZE", 500, ge=1)
    archive_after_days: int = var("ARCHIVE_AFTER_DAYS", 90, ge=1)
    archive_batch_size: int = var("ARCHIVE_BATCH_SIZE", 500, ge=1)
    # Monitoring (chatbot/metrics.py, chatbot/collector.py; docs/monitoring.md).
    metrics_enabled: Flag = var("METRICS_ENABLED", True)
    metrics_interval_s: int = var("METRICS_INTERVAL_S", 30, ge=1)
    metrics_retention_hours: int = var("METRICS_RETENTION_HOURS", 7 * 24, ge=1)
    alert_memory_mb: int = var("ALERT_MEMORY_MB", 1024, ge=1)
    alert_cpu_percent: float = var("ALERT_CPU_PERCENT", 80.0, ge=0.0)
    alert_response_time_ms: float = var("ALERT_RESPONSE_TIME_MS", 1000.0, ge=0.0)
    alert_retention_days: int = var("ALERT_RETENTION_DAYS", 90, ge=1)
    alert_webhook_url: str = var("ALERT_WEBHOOK_URL", "")
    alert_webhook_timeout_s: float = var("ALERT_WEBHOOK_TIMEOUT_S", 5.0, ge=0.1)
    alert_webhook_retries: int = var("ALERT_WEBHOOK_RETRIES", 3, ge=0)

    # --- Reminders (chatbot/chat/reminders.py, docs/reminders.md) ----------------------
    # Sent by the sweeper's loop; only between these hours in the parent's zone (TIMEZONE).
    reminders_enabled: Flag = var("REMINDERS_ENABLED", True)
    reminder_start_hour: int = var("REMINDER_START_HOUR", 8, ge=0, le=23)
    reminder_end_hour: int = var("REMINDER_END_HOUR", 20, ge=1, le=24)
    # One follow-up this many days after a reminder nobody acted on, then no more.
    reminder_follow_up_days: int = var("REMINDER_FOLLOW_UP_DAYS", 3, ge=1, le=60)
    # Due reminders (and schedule changes) handled per run.
    reminder_batch_size: int = var("REMINDER_BATCH_SIZE", 200, ge=1)

    # --- WhatsApp (chatbot/channels/whatsapp.py, docs/whatsapp.md) ---------------------
    # Off by default. On: the webhook answers, and outside production empty secrets get
    # the development placeholders below (the emulator, devtools/graph_emulator.py, uses
    # them too); production refuses to start with any of them empty or a placeholder.
    whatsapp_enabled: Flag = var("WHATSAPP_ENABLED", False)
    whatsapp_app_secret: str = var("WHATSAPP_APP_SECRET", "", repr=False)
    whatsapp_verify_token: str = var("WHATSAPP_VERIFY_TOKEN", "", repr=False)
    whatsapp_access_token: str = var("WHATSAPP_ACCESS_TOKEN", "", repr=False)
    whatsapp_phone_number_id: str = var("WHATSAPP_PHONE_NUMBER_ID", "")
    whatsapp_api_version: str = var("WHATSAPP_API_VERSION", "v21.0")
    whatsapp_api_base_url: str = var("WHATSAPP_API_BASE_URL", "https://graph.facebook.com")
    # Messages per second per phone number id (Meta's default throughput is about 80).
    whatsapp_rate_per_s: int = var("WHATSAPP_RATE_PER_S", 80, ge=1)
    # At least this long between two messages to one parent (Meta's pair rate limit,
    # 131056, allows bursts; 0: no pace of our own, a 131056 is retried with backoff).
    whatsapp_recipient_pace_s: float = var("WHATSAPP_RECIPIENT_PACE_S", 0.0, ge=0.0, le=60.0)
    # One Graph API call; a call with no answer by then is not retried (it may have sent).
    whatsapp_send_timeout_s: float = var("WHATSAPP_SEND_TIMEOUT_S", 10.0, ge=0.5)
    # Backoff after throttling, a 5xx or no connection: doubling from 0.5 s up to this.
    whatsapp_retry_max_s: float = var("WHATSAPP_RETRY_MAX_S", 30.0, ge=0.5)
    # A message whose turn fails this often is dropped (logged), so later ones go on.
    whatsapp_turn_attempts: int = var("WHATSAPP_TURN_ATTEMPTS", 5, ge=1)
    # Threads per queue worker process (supervisord runs WHATSAPP_WORKERS processes).
    whatsapp_worker_threads: int = var("WHATSAPP_WORKER_THREADS", 8, ge=1)
    # Unfinished work older than this is queued again (a task lost with Redis's data).
    whatsapp_requeue_after_s: float = var("WHATSAPP_REQUEUE_AFTER_S", 10.0, ge=1.0)
    # Message templates (chatbot/data/whatsapp_templates.json), the only messages Meta
    # delivers outside the 24-hour window: the translations approved for the account (the
    # first is used for a parent of another language), and `key=name,...` for templates
    # approved under another name than the data file's.
    whatsapp_template_languages: str = var("WHATSAPP_TEMPLATE_LANGUAGES", "id,en")
    whatsapp_template_names: str = var("WHATSAPP_TEMPLATE_NAMES", "")
    # An alert when the oldest queued send is older than this (docs/monitoring.md).
    whatsapp_queue_age_alert_s: float = var("WHATSAPP_QUEUE_AGE_ALERT_S", 60.0, ge=1.0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `env` (default: os.environ); raise ConfigError if invalid."""
        # Unset, INSTANCE_ID is the host name and SECRET_KEY empty (checked() decides).
        settings = from_environment(cls, env, INSTANCE_ID=socket.gethostname(), SECRET_KEY="")
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
        checked = self if self.secret_key else dataclasses.replace(self, secret_key=DEV_SECRET_KEY)
        return checked._whatsapp_checked()

    def _whatsapp_checked(self) -> Settings:
        """Production refuses the channel on without every secret; elsewhere the empty
        ones get the development placeholders (what the emulator signs and expects)."""
        if not self.whatsapp_enabled:
            return self
        fields = {
            "whatsapp_app_secret": "WHATSAPP_APP_SECRET",
            "whatsapp_verify_token": "WHATSAPP_VERIFY_TOKEN",
            "whatsapp_access_token": "WHATSAPP_ACCESS_TOKEN",
            "whatsapp_phone_number_id": "WHATSAPP_PHONE_NUMBER_ID",
        }
        if self.env == "production":
            bad = [
                name
                for attr, name in fields.items()
                if getattr(self, attr) in ("", DEV_WHATSAPP[attr])
            ]
            if bad:
                raise ConfigError(
                    f"WHATSAPP_ENABLED=1 with CHATBOT_ENV=production needs {', '.join(bad)} "
                    "(from Meta's app dashboard); they are empty or development placeholders"
                )
            return self
        filled: dict[str, Any] = {
            attr: DEV_WHATSAPP[attr] for attr in fields if not getattr(self, attr)
        }
        return dataclasses.replace(self, **filled) if filled else self

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def check_proxy_secret(value: str) -> str:
    """PROXY_SECRET as the renderer of nginx's configuration takes it; ConfigError if bad."""
    return from_environment(Settings, {"PROXY_SECRET": value}).proxy_secret


# --- gunicorn (gunicorn.conf.py explains each for operators) -------------------------


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class GunicornSettings:
    """What gunicorn.conf.py and nginx's renderer read; build with `from_env()`."""

    bind: str = var("GUNICORN_BIND", "127.0.0.1:8000")
    backlog: int = var("GUNICORN_BACKLOG", 2048, ge=1)
    workers: int = var("WEB_CONCURRENCY", default_factory=multiprocessing.cpu_count, ge=1)
    worker_class: str = var("GUNICORN_WORKER_CLASS", "gthread")
    threads: int = var("GUNICORN_THREADS", 16, ge=1)
    # None: threads + 64 (see worker_connections()).
    worker_connections: int | None = var("GUNICORN_WORKER_CONNECTIONS", None, ge=1)
    timeout: int = var("GUNICORN_TIMEOUT", 30, ge=0)
    graceful_timeout: int = var("GUNICORN_GRACEFUL_TIMEOUT", 20, ge=0)
    keepalive: int = var("GUNICORN_KEEPALIVE", 5, ge=0)
    max_requests: int = var("GUNICORN_MAX_REQUESTS", 200000, ge=0)
    max_requests_jitter: int = var("GUNICORN_MAX_REQUESTS_JITTER", 20000, ge=0)
    max_worker_rss_mb: int = var("GUNICORN_MAX_WORKER_RSS_MB", 1024, ge=0)
    # gunicorn's own trust (the scheme headers); the app's is PROXY_SECRET's.
    forwarded_allow_ips: IpList = var("GUNICORN_FORWARDED_ALLOW_IPS", "")
    access_log: Flag = var("GUNICORN_ACCESS_LOG", False)
    log_level: LogLevel = var("LOG_LEVEL", "INFO")
    instance_id: str = var("INSTANCE_ID", "local")
    # Empty: the defaults gunicorn.conf.py derives from the instance id and port.
    run_dir: str = var("GUNICORN_RUN_DIR", "")
    control_socket: str = var("GUNICORN_CONTROL_SOCKET", "")
    pidfile: str = var("GUNICORN_PIDFILE", "")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GunicornSettings:
        # Unset, INSTANCE_ID is the host name, as for the app (Settings.from_env): the
        # process name, run files and metrics directory name the same instance /health does.
        return from_environment(cls, env, INSTANCE_ID=socket.gethostname())

    @property
    def worker_threads(self) -> int:
        """Threads per worker: gunicorn turns "sync" with threads > 1 into gthread silently,
        so any other class gets one."""
        return self.threads if self.worker_class == "gthread" else 1

    @property
    def connections_per_worker(self) -> int:
        return self.worker_connections or self.worker_threads + 64

    @property
    def capacity(self) -> int:
        """Requests the instance serves at once: workers x threads (nginx's max_conns)."""
        return self.workers * self.worker_threads


# --- The active health checker (chatbot/ops/checker.py) ------------------------------


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class CheckerSettings:
    """The design's health-check parameters, each overridable from the environment."""

    path: UrlPath = var("HEALTHCHECK_PATH", "/health")
    interval_s: float = var("HEALTHCHECK_INTERVAL_S", 30.0, ge=0.05)
    timeout_s: float = var("HEALTHCHECK_TIMEOUT_S", 5.0, ge=0.05)
    unhealthy_after: int = var("HEALTHCHECK_UNHEALTHY_AFTER", 3, ge=1)
    healthy_after: int = var("HEALTHCHECK_HEALTHY_AFTER", 2, ge=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CheckerSettings:
        return from_environment(cls, env)


ALL_SETTINGS: tuple[type, ...] = (Settings, GunicornSettings, CheckerSettings)
