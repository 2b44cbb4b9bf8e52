"""signaling.config.load_settings: the one reader of the environment."""

from __future__ import annotations

import pytest

from signaling.config import ConfigError, Settings, load_settings
from tests.support import SECRET

BASE = {"SIGNALING_JWT_SECRET": SECRET}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings == Settings(jwt_secret=SECRET)
    assert (settings.host, settings.port, settings.media) == ("127.0.0.1", 8080, "p2p")
    assert (settings.countdown_s, settings.limit_s) == (5.0, 60.0)
    assert (settings.notify_before_s, settings.join_grace_s) == (300.0, 600.0)
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert (settings.dev, settings.jwt_secret_generated, settings.cors_origins) == (
        False,
        False,
        (),
    )
    assert (settings.redis_url, settings.message_store_url, settings.ice_servers) == ("", "", ())


def test_every_variable_is_parsed() -> None:
    env = {
        "SIGNALING_HOST": " 0.0.0.0 ",
        "SIGNALING_PORT": "9000",
        "SIGNALING_JWT_SECRET": SECRET,
        "SIGNALING_DEV": "yes",
        "SIGNALING_CORS_ORIGINS": "https://a.example, https://b.example,,",
        "SIGNALING_DATABASE_URL": "mysql+aiomysql://u:p@db/calls",
        "SIGNALING_MESSAGE_STORE_URL": "mongodb://mongo/chat",
        "SIGNALING_REDIS_URL": "redis://redis:6379/0",
        "SIGNALING_MEDIA": " OpenVidu ",
        "SIGNALING_OPENVIDU_URL": "https://openvidu.example",
        "SIGNALING_OPENVIDU_SECRET": "ov-secret",
        "SIGNALING_OPENVIDU_WEBHOOK_SECRET": "hook-secret",
        "SIGNALING_ICE_SERVERS": '[{"urls": ["turn:turn.example:3478"], "username": "u"}]',
        "SIGNALING_TURN_SECRET": "turn-secret",
        "SIGNALING_COUNTDOWN_S": "0.5",
        "SIGNALING_CALL_LIMIT_S": "1.5",
        "SIGNALING_NOTIFY_BEFORE_S": "30",
        "SIGNALING_JOIN_GRACE_S": "0",
        "SIGNALING_SWEEP_INTERVAL_S": "2.5",
        "SIGNALING_SIGNAL_QUEUE_MAX": "16",
        "SIGNALING_LOG_LEVEL": "DEBUG",
    }
    assert load_settings(env) == Settings(
        host="0.0.0.0",
        port=9000,
        jwt_secret=SECRET,
        dev=True,
        cors_origins=("https://a.example", "https://b.example"),
        database_url="mysql+aiomysql://u:p@db/calls",
        message_store_url="mongodb://mongo/chat",
        redis_url="redis://redis:6379/0",
        media="openvidu",
        openvidu_url="https://openvidu.example",
        openvidu_secret="ov-secret",
        openvidu_webhook_secret="hook-secret",
        ice_servers=({"urls": ["turn:turn.example:3478"], "username": "u"},),
        turn_secret="turn-secret",
        countdown_s=0.5,
        limit_s=1.5,
        notify_before_s=30.0,
        join_grace_s=0.0,
        sweep_interval_s=2.5,
        signal_queue_max=16,
        log_level="DEBUG",
    )


def test_empty_variables_keep_the_defaults() -> None:
    names = ("PORT", "COUNTDOWN_S", "MEDIA", "DEV", "ICE_SERVERS", "CORS_ORIGINS", "HOST")
    env = {**BASE, **{f"SIGNALING_{name}": "" for name in names}}
    assert load_settings(env) == Settings(jwt_secret=SECRET)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False), ("off", False)],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert load_settings({**BASE, "SIGNALING_DEV": raw}).dev is expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "http"),
        ("PORT", "-1"),
        ("PORT", "65536"),
        ("PORT", "8080.5"),
        ("COUNTDOWN_S", "soon"),
        ("COUNTDOWN_S", "-1"),
        ("COUNTDOWN_S", "nan"),
        ("CALL_LIMIT_S", "0"),
        ("CALL_LIMIT_S", "inf"),
        ("NOTIFY_BEFORE_S", "5m"),
        ("JOIN_GRACE_S", "-600"),
        ("SWEEP_INTERVAL_S", "0"),
        ("SIGNAL_QUEUE_MAX", "0"),
        ("SIGNAL_QUEUE_MAX", "many"),
        ("DEV", "maybe"),
        ("MEDIA", "webrtc"),
        ("ICE_SERVERS", "stun:stun.example.org"),
        ("ICE_SERVERS", '{"urls": "stun:stun.example.org"}'),
        ("ICE_SERVERS", '[{"username": "u"}]'),
        ("ICE_SERVERS", '["stun:stun.example.org"]'),
    ],
)
def test_a_bad_value_names_its_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"SIGNALING_{name}"):
        load_settings({**BASE, f"SIGNALING_{name}": raw})


def test_openvidu_needs_its_url_and_secret() -> None:
    env = {**BASE, "SIGNALING_MEDIA": "openvidu", "SIGNALING_OPENVIDU_SECRET": "s"}
    with pytest.raises(ConfigError, match="SIGNALING_OPENVIDU_URL"):
        load_settings(env)


@pytest.mark.parametrize("env", [{}, {"SIGNALING_DEV": "0"}, {"SIGNALING_JWT_SECRET": "  "}])
def test_a_missing_secret_outside_dev_mode_is_an_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="SIGNALING_JWT_SECRET"):
        load_settings(env)


def test_dev_mode_generates_a_fresh_secret() -> None:
    first = load_settings({"SIGNALING_DEV": "1"})
    second = load_settings({"SIGNALING_DEV": "1"})
    assert first.jwt_secret_generated and second.jwt_secret_generated
    assert len(first.jwt_secret.encode()) >= 32  # HS256 wants at least 32 bytes
    assert first.jwt_secret != second.jwt_secret


def test_dev_mode_keeps_a_configured_secret() -> None:
    settings = load_settings({**BASE, "SIGNALING_DEV": "1"})
    assert (settings.jwt_secret, settings.jwt_secret_generated) == (SECRET, False)


def test_overrides_win_over_the_environment_unless_none() -> None:
    env = {**BASE, "SIGNALING_PORT": "9000", "SIGNALING_HOST": "0.0.0.0"}
    settings = load_settings(env, port=9100, host=None)
    assert (settings.port, settings.host) == (9100, "0.0.0.0")


def test_overrides_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="SIGNALING_MEDIA"):
        load_settings(BASE, media="sfu")


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALING_JWT_SECRET", SECRET)
    monkeypatch.setenv("SIGNALING_PORT", "9123")
    assert load_settings().port == 9123


def test_quota_settings_are_parsed_and_zero_turns_one_off() -> None:
    env = {
        **BASE,
        "SIGNALING_CALLS_OPEN_MAX": "3",
        "SIGNALING_CALLS_PER_DAY": "0",
        "SIGNALING_GIFTS_PER_MINUTE": "7",
        "SIGNALING_SIGNALS_PER_S": "9",
        "SIGNALING_CHAT_PER_S": "4",
        "SIGNALING_CONNECTIONS_PER_USER": "2",
    }
    settings = load_settings(env)
    assert (
        settings.calls_open_max,
        settings.calls_per_day,
        settings.gifts_per_minute,
        settings.signals_per_s,
        settings.chat_per_s,
        settings.connections_per_user,
    ) == (3, 0, 7, 9, 4, 2)
    with pytest.raises(ConfigError, match="SIGNALING_CHAT_PER_S"):
        load_settings({**BASE, "SIGNALING_CHAT_PER_S": "-1"})


@pytest.mark.parametrize("secret", ["a", "x" * 31, "é" * 15])
def test_a_short_jwt_secret_is_refused_outside_dev_mode(secret: str) -> None:
    """F11: HS256 with a secret under 32 bytes does not start, except in dev mode."""
    with pytest.raises(ConfigError, match="SIGNALING_JWT_SECRET must be at least 32 bytes"):
        load_settings({"SIGNALING_JWT_SECRET": secret})
    dev = load_settings({"SIGNALING_JWT_SECRET": secret, "SIGNALING_DEV": "1"})
    assert dev.jwt_secret == secret and not dev.jwt_secret_generated
    assert load_settings({"SIGNALING_JWT_SECRET": "x" * 32}).jwt_secret == "x" * 32
    assert load_settings({"SIGNALING_JWT_SECRET": "é" * 16}).jwt_secret == "é" * 16
