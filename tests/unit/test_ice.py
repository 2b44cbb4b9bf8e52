"""signaling.ice: ICE servers per user and coturn ``use-auth-secret`` credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any

import pytest

from signaling.config import ConfigError, Settings
from signaling.ice import (
    CREDENTIAL_MARGIN_S,
    IceServerProvider,
    credential_ttl_s,
    needs_credentials,
    turn_credential,
)

NOW = 1_700_000_000.0
SECRET = "north-wind-secret"
STUN = {"urls": "stun:stun.example.org:3478"}
TURN = {"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]}
MIXED = {"urls": ["stun:turn.example.org:3478", "turn:turn.example.org:3478"]}


def clock() -> float:
    return NOW


def provider(
    *servers: dict[str, Any], secret: str = SECRET, ttl_s: float = 1000.0
) -> IceServerProvider:
    return IceServerProvider(servers, secret=secret, ttl_s=ttl_s, clock=clock)


def test_hmac_sha1_matches_the_published_test_vector() -> None:
    # RFC 2202, test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?")
    # = effcdf6ae5eb2fa2d27416d5f184df9c259a7c79, here in base64.
    assert turn_credential("Jefe", "what do ya want for nothing?") == "7/zfauXrL6LSdBbV8YTfnCWafHk="


def test_turn_credential_known_answer() -> None:
    # Worked out by hand with coturn's formula, independently of this code:
    #   printf '%s' 1700000000:alice \
    #     | openssl dgst -sha1 -hmac north-wind-secret -binary | base64
    assert turn_credential(SECRET, "1700000000:alice") == "r/l6ttQtMIfbS2lfULS0mDRRNUg="


def test_turn_entries_get_username_and_credential() -> None:
    [server] = provider(TURN, ttl_s=600).for_user("alice")
    assert server == {
        "urls": TURN["urls"],
        "username": "1700000600:alice",
        "credential": turn_credential(SECRET, "1700000600:alice"),
    }
    # coturn's check, written out: base64 of the raw HMAC-SHA1 digest of the username.
    digest = hmac.new(SECRET.encode(), b"1700000600:alice", hashlib.sha1).digest()
    assert base64.b64decode(server["credential"]) == digest


def test_each_user_gets_their_own_credentials() -> None:
    ice = provider(TURN)
    [alice], [bob] = ice.for_user("alice"), ice.for_user("bob")
    assert alice["username"].endswith(":alice") and bob["username"].endswith(":bob")
    assert alice["credential"] != bob["credential"]


@pytest.mark.parametrize("now", [NOW, NOW + 0.2, NOW + 0.999])
def test_expiry_is_now_plus_ttl_rounded_up(now: float) -> None:
    ice = IceServerProvider([TURN], secret=SECRET, ttl_s=965.5, clock=lambda: now)
    [server] = ice.for_user("alice")
    expiry = int(server["username"].split(":", 1)[0])
    assert now + 965.5 <= expiry < now + 965.5 + 1
    assert expiry == ice.expiry()


def test_expiry_follows_the_clock() -> None:
    instants = iter([NOW, NOW + 30])
    ice = IceServerProvider([TURN], secret=SECRET, ttl_s=100, clock=lambda: next(instants))
    first, second = ice.for_user("alice")[0], ice.for_user("alice")[0]
    assert first["username"] == f"{int(NOW) + 100}:alice"
    assert second["username"] == f"{int(NOW) + 130}:alice"


def test_ttl_covers_the_longest_call_after_a_join() -> None:
    settings = Settings(
        jwt_secret="x", countdown_s=5, limit_s=60, notify_before_s=300, join_grace_s=600
    )
    ttl = credential_ttl_s(settings)
    # Joined when the window opened, partner came as it closed, then countdown + call.
    assert ttl >= 300 + 600 + 5 + 60
    assert ttl == 300 + 600 + 5 + 60 + CREDENTIAL_MARGIN_S
    # ... and still "a little longer than the call": well under the usual 24 h.
    assert ttl < 3600


def test_from_settings_uses_the_settings() -> None:
    settings = Settings(
        jwt_secret="x",
        ice_servers=(STUN, TURN),
        turn_secret=SECRET,
        countdown_s=1,
        limit_s=2,
        notify_before_s=3,
        join_grace_s=4,
    )
    ice = IceServerProvider.from_settings(settings, clock=clock)
    assert ice.ttl_s == 10 + CREDENTIAL_MARGIN_S
    stun, turn = ice.for_user("alice")
    assert stun == STUN
    assert turn["username"] == f"{int(NOW + 10 + CREDENTIAL_MARGIN_S)}:alice"
    assert turn["credential"] == turn_credential(SECRET, turn["username"])


def test_stun_entries_are_untouched() -> None:
    stun_list = {"urls": ["stun:a.example:3478", "stuns:b.example:5349"]}
    assert provider(STUN, stun_list, TURN).for_user("alice")[:2] == [STUN, stun_list]


def test_an_entry_with_stun_and_turn_urls_gets_credentials() -> None:
    [server] = provider(MIXED).for_user("alice")
    assert server["urls"] == MIXED["urls"]
    assert server["credential"] == turn_credential(SECRET, server["username"])


def test_configured_static_credentials_are_replaced_with_a_secret() -> None:
    static = {**TURN, "username": "static", "credential": "static-password"}
    [server] = provider(static).for_user("alice")
    assert server["username"].endswith(":alice")
    assert server["credential"] != "static-password"


def test_without_a_secret_the_list_is_returned_unchanged() -> None:
    static = {**TURN, "username": "static", "credential": "static-password"}
    configured: list[dict[str, Any]] = [STUN, static, MIXED]
    assert provider(*configured, secret="").for_user("alice") == configured
    assert IceServerProvider([]).for_user("alice") == []


def test_the_configuration_is_never_mutated() -> None:
    configured = {"urls": ["turn:turn.example.org:3478"]}
    ice = provider(configured)
    first = ice.for_user("alice")
    first[0]["urls"].append("turn:evil.example")
    first[0]["username"] = "tampered"
    assert configured == {"urls": ["turn:turn.example.org:3478"]}
    assert ice.for_user("bob")[0]["urls"] == ["turn:turn.example.org:3478"]


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        ("turn:t.example", True),
        ("TURNS:t.example:5349", True),
        (["stun:s.example", "turn:t.example"], True),
        ("stun:s.example", False),
        (["stun:s.example", "stuns:s.example"], False),
        ([], False),
    ],
)
def test_needs_credentials(urls: Any, expected: bool) -> None:
    assert needs_credentials({"urls": urls}) is expected


@pytest.mark.parametrize("urls", [None, 3478, ["turn:t.example", 1], {"url": "turn:t"}])
def test_malformed_urls_stop_the_server_at_start_up(urls: Any) -> None:
    with pytest.raises(ConfigError, match="ICE_SERVERS"):
        IceServerProvider([{"urls": urls}], secret=SECRET)


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        IceServerProvider([TURN], secret=SECRET, ttl_s=0)


def test_a_secret_without_turn_servers_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="signaling.ice"):
        ice = provider(STUN)
    assert "TURN_SECRET is set but no ICE server has a turn: URL" in caplog.text
    assert ice.for_user("alice") == [STUN]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="signaling.ice"):
        provider(STUN, secret="")
        provider(TURN)
    assert caplog.text == ""
