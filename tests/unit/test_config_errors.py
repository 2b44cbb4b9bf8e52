"""signaling.config: the variables as pydantic-settings reads them.

Casting and bounds are pydantic's; what a caller sees stays a ``ConfigError``
naming the variable and the value it held.
"""

from __future__ import annotations

import pytest

from signaling.config import ConfigError, Settings, load_settings
from tests.support import SECRET, variables_load_settings_reads

BASE = {"SIGNALING_JWT_SECRET": SECRET}

#: (variable, smallest, largest) of every integer setting
INTEGERS = [
    ("PORT", 0, 65535),
    ("SIGNAL_QUEUE_MAX", 1, 10_000),
    ("HELD_BYTES_MAX", 0, 2**40),
    ("SEND_BUDGET", 0, 2**40),
    ("CALLS_OPEN_MAX", 0, 1_000_000),
    ("CALLS_PER_DAY", 0, 1_000_000),
    ("GIFTS_PER_MINUTE", 0, 1_000_000),
    ("SIGNALS_PER_S", 0, 1_000_000),
    ("CHAT_PER_S", 0, 1_000_000),
    ("CONNECTIONS_PER_USER", 0, 1_000_000),
    ("PUSH_SUBSCRIPTIONS_MAX", 1, 100),
    ("PUSH_WORKERS", 1, 256),
    ("PUSH_QUEUE_MAX", 1, 1_000_000),
]


@pytest.mark.parametrize(("name", "least", "most"), INTEGERS)
def test_integer_bounds(name: str, least: int, most: int) -> None:
    attribute = name.lower()
    for good in (least, most):
        settings = load_settings({**BASE, f"SIGNALING_{name}": f" {good} "})
        assert getattr(settings, attribute) == good
    for bad in (least - 1, most + 1):
        with pytest.raises(ConfigError, match=f"^SIGNALING_{name}: .*, got '{bad}'$"):
            load_settings({**BASE, f"SIGNALING_{name}": str(bad)})


@pytest.mark.parametrize(
    "name",
    ["COUNTDOWN_S", "NOTIFY_BEFORE_S", "JOIN_GRACE_S", "TAKEOVER_S"],
)
def test_seconds_are_finite_and_not_negative(name: str) -> None:
    attribute = name.lower()
    assert getattr(load_settings({**BASE, f"SIGNALING_{name}": "0"}), attribute) == 0.0
    assert getattr(load_settings({**BASE, f"SIGNALING_{name}": "1e3"}), attribute) == 1000.0
    for bad in ("-0.5", "inf", "-inf", "nan", "5s"):
        with pytest.raises(ConfigError, match=f"^SIGNALING_{name}: .*, got '{bad}'$"):
            load_settings({**BASE, f"SIGNALING_{name}": bad})


def test_the_write_linger_is_at_most_a_second() -> None:
    assert load_settings({**BASE, "SIGNALING_WRITE_LINGER_S": "0"}).write_linger_s == 0.0
    assert load_settings({**BASE, "SIGNALING_WRITE_LINGER_S": "1"}).write_linger_s == 1.0
    assert load_settings(BASE).write_linger_s == 0.02
    with pytest.raises(ConfigError, match=r"^SIGNALING_WRITE_LINGER_S must be 0 to 1$"):
        load_settings({**BASE, "SIGNALING_WRITE_LINGER_S": "1.5"})


@pytest.mark.parametrize("raw", ["t", "y", "f", "n", "2", "enabled"])
def test_only_the_documented_words_are_booleans(raw: str) -> None:
    """pydantic's own bool would take t/y/f/n; the variables never did."""
    with pytest.raises(ConfigError, match=f"^SIGNALING_WS_DEFLATE: .*, got '{raw}'$"):
        load_settings({**BASE, "SIGNALING_WS_DEFLATE": raw})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Yes ", True), ("ON", True), ("False", False), ("OFF", False), (" ", False)],
)
def test_booleans_ignore_case_and_spaces(raw: str, expected: bool) -> None:
    # A blank value is "off", unlike an empty one (the default, on for this one).
    assert load_settings({**BASE, "SIGNALING_GC_FREEZE": raw}).gc_freeze is expected


def test_a_validation_error_is_one_config_error_naming_each_variable() -> None:
    env = {**BASE, "SIGNALING_PORT": "http", "SIGNALING_DEV": "maybe"}
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert type(raised.value) is ConfigError
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    message = str(raised.value)
    assert message.startswith("SIGNALING_PORT: ")
    assert "got 'http'" in message
    assert "; SIGNALING_DEV: " in message
    assert "got 'maybe'" in message


def test_the_names_are_the_variables_not_the_attributes() -> None:
    """``SIGNALING_CALL_LIMIT_S`` sets ``limit_s``; there is no ``SIGNALING_LIMIT_S``."""
    assert load_settings({**BASE, "SIGNALING_CALL_LIMIT_S": "7"}).limit_s == 7.0
    assert load_settings({**BASE, "SIGNALING_LIMIT_S": "7"}).limit_s == 60.0
    with pytest.raises(ConfigError, match=r"^SIGNALING_CALL_LIMIT_S: .*, got '-7'$"):
        load_settings({**BASE, "SIGNALING_CALL_LIMIT_S": "-7"})


def test_names_are_case_sensitive() -> None:
    env = {**BASE, "signaling_port": "9000", "SIGNALING_port": "9001", "Signaling_Port": "x"}
    assert load_settings(env).port == 8080


def test_a_given_mapping_is_the_only_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALING_PORT", "9123")
    monkeypatch.setenv("SIGNALING_DEV", "maybe")
    assert load_settings(BASE).port == 8080


def test_every_variable_is_asked_for_by_name() -> None:
    names = variables_load_settings_reads()
    assert {"SIGNALING_CALL_LIMIT_S", "SIGNALING_ICE_SERVERS", "SIGNALING_ADMIN_IDS"} <= names
    assert "SIGNALING_LIMIT_S" not in names
    assert "SIGNALING_JWT_SECRET_GENERATED" not in names  # not a variable
    assert len(names) == 52, sorted(names)


def test_an_empty_value_is_the_default_for_variables_load_settings_reads() -> None:
    env = {name: "" for name in variables_load_settings_reads()}
    assert load_settings({**env, **BASE}) == Settings(jwt_secret=SECRET)


def test_a_bad_ice_server_is_named_by_its_index() -> None:
    raw = '[{"urls": "stun:stun.example.org"}, {"username": "u"}]'
    with pytest.raises(ConfigError, match=r"^SIGNALING_ICE_SERVERS\[1\]: .*'urls'"):
        load_settings({**BASE, "SIGNALING_ICE_SERVERS": raw})


def test_ice_servers_are_kept_as_given() -> None:
    raw = '[{"urls": "stun:s.example", "x-extra": {"a": [1, null]}}]'
    settings = load_settings({**BASE, "SIGNALING_ICE_SERVERS": raw})
    assert settings.ice_servers == ({"urls": "stun:s.example", "x-extra": {"a": [1, None]}},)


def test_admin_ids_are_at_most_64_characters() -> None:
    longest = "a" * 64
    assert load_settings({**BASE, "SIGNALING_ADMIN_IDS": f"x,{longest}"}).admin_ids == {
        "x",
        longest,
    }
    with pytest.raises(ConfigError, match=r"^SIGNALING_ADMIN_IDS\[1\]: .*'a{65}'$"):
        load_settings({**BASE, "SIGNALING_ADMIN_IDS": f"x, {longest}a"})


def test_overrides_skip_the_environment_casting() -> None:
    """Overrides (CLI flags, tests) are Settings values, checked by _validated only."""
    settings = load_settings({**BASE, "SIGNALING_PORT": "9000"}, port=0, cors_origins=("*",))
    assert (settings.port, settings.cors_origins) == (0, ("*",))
