"""Settings come from the environment, with defaults and clear errors."""

import pytest

from chatbot.settings import DEV_SECRET_KEY, ConfigError, Settings


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
        ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "soon", "must be an integer"),
        ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "0", "must be >= 1"),
        ("REDIS_SOCKET_TIMEOUT_S", "fast", "must be a number"),
        ("LOG_LEVEL", "LOUD", "must be one of"),
        ("CHATBOT_ENV", "staging", "must be one of"),
    ],
)
def test_malformed_values_name_the_variable(name, value, fragment):
    with pytest.raises(ConfigError, match=name) as info:
        Settings.from_env({name: value})
    assert fragment in str(info.value)


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
