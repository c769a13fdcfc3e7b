"""Settings come from the environment, with defaults and clear errors."""

import dataclasses
import re
from pathlib import Path

import pytest

from chatbot.errors import ConfigError
from chatbot.settings import (
    ALL_SETTINGS,
    DEV_SECRET_KEY,
    CheckerSettings,
    GunicornSettings,
    Settings,
    fields_of,
    variable_of,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_defaults_when_environment_is_empty():
    s = Settings.from_env({})
    assert s.env == "development"
    assert s.mongo_uri == "mongodb://127.0.0.1:27017/"
    assert s.mongo_db == "chatbot"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.mongo_server_selection_timeout_ms == 2000
    assert s.redis_socket_timeout_s == 0.5
    assert s.log_level == "INFO"
    assert s.secret_key == DEV_SECRET_KEY
    assert s.instance_id  # the host name by default


def test_values_are_read_and_typed():
    s = Settings.from_env(
        {
            "MONGO_URI": "mongodb://db.example:27017/",
            "MONGO_DB": "prod",
            "MONGO_SERVER_SELECTION_TIMEOUT_MS": "750",
            "REDIS_URL": "redis://cache:6379/2",
            "REDIS_SOCKET_TIMEOUT_S": "0.25",
            "LOG_LEVEL": "DEBUG",
            "INSTANCE_ID": "web-3",
            "SECRET_KEY": "s3cret",
        }
    )
    assert s.mongo_uri == "mongodb://db.example:27017/"
    assert s.mongo_db == "prod"
    assert s.mongo_server_selection_timeout_ms == 750
    assert s.redis_url == "redis://cache:6379/2"
    assert s.redis_socket_timeout_s == 0.25
    assert s.log_level == "DEBUG"
    assert s.instance_id == "web-3"
    assert s.secret_key == "s3cret"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "soon", "must be an integer >= 1, got 'soon'"),
        ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "0", "must be an integer >= 1, got '0'"),
        ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "1.5", "must be an integer >= 1"),
        ("REDIS_SOCKET_TIMEOUT_S", "fast", "must be a number >= 0.01, got 'fast'"),
        ("REDIS_SOCKET_TIMEOUT_S", "nan", "must be a number >= 0.01"),
        ("LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("CHATBOT_ENV", "staging", "must be one of development, testing, production"),
        ("CACHE_ENABLED", "true", "must be 0 or 1, got 'true'"),
        ("REDIS_SENTINELS", "10.0.0.21", "must be host:port"),
        ("TIMEZONE", "Mars/Olympus", "must be an IANA time zone"),
        ("PROXY_SECRET", "short", "must be empty or 16 to 256 characters"),
    ],
)
def test_malformed_values_name_the_variable(name, value, fragment):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert str(info.value).startswith(f"{name} {fragment}")


def test_every_malformed_variable_is_named_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"OTP_TTL_S": "1", "LOCK_WAIT_S": "-1"})
    assert "OTP_TTL_S must be an integer >= 30, got '1'" in str(info.value)
    assert "LOCK_WAIT_S must be a number >= 0.0, got '-1'" in str(info.value)


def test_a_bad_proxy_secret_is_not_repeated_in_the_error():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"PROXY_SECRET": "not a secret; with spaces"})
    assert "with spaces" not in str(info.value)
    assert "got 25 characters" in str(info.value)


def test_blank_values_count_as_unset():
    s = Settings.from_env({"MONGO_DB": "  ", "MONGO_MAX_POOL_SIZE": "", "LOG_LEVEL": " DEBUG "})
    default_pool = Settings().mongo_max_pool_size
    assert (s.mongo_db, s.mongo_max_pool_size, s.log_level) == ("chatbot", default_pool, "DEBUG")


def test_values_built_in_code_are_validated_too():
    # Tests and tools build settings with dataclasses.replace(); a bad value still fails.
    with pytest.raises(ValueError, match="mongo_max_pool_size"):
        dataclasses.replace(Settings(), mongo_max_pool_size=0)
    assert dataclasses.replace(Settings(), cache_enabled=False).cache_enabled is False


def test_gunicorn_and_checker_settings_name_the_variable():
    with pytest.raises(ConfigError, match=r"^WEB_CONCURRENCY must be an integer >= 1, got 'x'$"):
        GunicornSettings.from_env({"WEB_CONCURRENCY": "x"})
    with pytest.raises(ConfigError, match=r"^GUNICORN_FORWARDED_ALLOW_IPS must be"):
        GunicornSettings.from_env({"GUNICORN_FORWARDED_ALLOW_IPS": "10.0.0.10,nginx"})
    with pytest.raises(ConfigError, match=r"^HEALTHCHECK_PATH must be a path starting with /"):
        CheckerSettings.from_env({"HEALTHCHECK_PATH": "health"})


def _documented_defaults() -> dict[str, str]:
    """variable -> the default column of docs/configuration.md's tables."""
    found = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        defaults = cells[1].split(" / ") if len(names) > 1 else [cells[1]]
        for name, default in zip(names, defaults, strict=False):
            found[name] = default
    return found


def _plain(value: object) -> str | None:
    """How the docs write a default that is a plain value; None for the others."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float, str)) and value != "":
        return str(value)
    return None


def test_every_setting_is_documented_with_the_default_the_code_has():
    documented = _documented_defaults()
    for cls in ALL_SETTINGS:
        for name, field in fields_of(cls).items():
            variable = variable_of(field, name)
            assert variable in documented, f"{variable} is not in docs/configuration.md"
            default = documented[variable]
            literal = re.match(r"^`([^`]*)`", default)
            if default.startswith("empty"):
                assert not field.default, variable
                continue
            code = _plain(field.default) if field.default_factory is None else None
            if code is None or literal is None or variable == "SECRET_KEY":
                continue  # "the host name", "CPU count", "empty": said in words
            if isinstance(field.default, (int, float)) and not isinstance(field.default, bool):
                assert float(literal.group(1)) == field.default, variable
            else:
                assert literal.group(1) == code, variable


def test_production_without_secret_key_refuses_to_start():
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        Settings.from_env({"CHATBOT_ENV": "production"})


def test_production_refuses_the_development_placeholder():
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        Settings.from_env({"CHATBOT_ENV": "production", "SECRET_KEY": DEV_SECRET_KEY})


def test_production_with_secret_key_starts():
    s = Settings.from_env(
        {"CHATBOT_ENV": "production", "SECRET_KEY": "x" * 32, "OTP_SENDER": "sms.gateway:Sender"}
    )
    assert s.is_production


@pytest.mark.parametrize(
    "sender", [None, "chatbot.auth:LogCodeSender", "chatbot.auth.LogCodeSender"]
)
def test_production_refuses_the_logging_code_sender(sender):
    env = {"CHATBOT_ENV": "production", "SECRET_KEY": "x" * 32}
    if sender:
        env["OTP_SENDER"] = sender
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    for name in ("OTP_SENDER", "CHATBOT_ENV=production", "ALLOW_LOG_CODE_SENDER=1"):
        assert name in str(info.value)


def test_production_accepts_the_logging_code_sender_when_allowed():
    s = Settings.from_env(
        {"CHATBOT_ENV": "production", "SECRET_KEY": "x" * 32, "ALLOW_LOG_CODE_SENDER": "1"}
    )
    assert s.is_production and s.allow_log_code_sender


@pytest.mark.parametrize("env", ["development", "testing"])
def test_the_logging_code_sender_needs_no_permission_outside_production(env):
    assert not Settings.from_env({"CHATBOT_ENV": env}).allow_log_code_sender


def test_allow_log_code_sender_is_0_or_1():
    with pytest.raises(ConfigError, match="ALLOW_LOG_CODE_SENDER"):
        Settings.from_env({"ALLOW_LOG_CODE_SENDER": "yes"})
