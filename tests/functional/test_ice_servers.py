"""ICE servers in the ``join`` ack of a real server: configured STUN entries as
they are, TURN entries with per-user coturn ``use-auth-secret`` credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from tests.functional.conftest import Lab, both_in

TURN_SECRET = "functional-turn-secret"
STUN = {"urls": "stun:stun.example.org:3478"}
TURN = {"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]}


def coturn_accepts(entry: dict[str, Any], user_id: str, at: float) -> bool:
    """What coturn with ``--use-auth-secret --static-auth-secret=TURN_SECRET``
    checks: the username carries an unexpired timestamp, and the credential is
    base64(HMAC-SHA1(secret, username))."""
    expiry, _, name = entry["username"].partition(":")
    digest = hmac.new(TURN_SECRET.encode(), entry["username"].encode(), hashlib.sha1).digest()
    return (
        name == user_id
        and int(expiry) > at
        and hmac.compare_digest(base64.b64encode(digest).decode(), entry["credential"])
    )


async def test_join_ack_carries_per_user_turn_credentials(lab: Lab) -> None:
    server = await lab.start(ice_servers=(STUN, TURN), turn_secret=TURN_SECRET)
    call = await server.schedule("alice", "bob")
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    before = time.time()
    first = await alice.join(call["id"])
    second = await bob.join(call["id"])
    after = time.time()
    assert (first["role"], second["role"]) == ("waiting", "offerer")

    # The call could last (window + countdown + limit) after a join: the
    # credentials must outlive it, but not by days.
    settings = server.settings
    longest_call_s = (
        settings.notify_before_s + settings.join_grace_s + settings.countdown_s + settings.limit_s
    )
    for ack, user_id in ((first, "alice"), (second, "bob")):
        stun, turn = ack["ice_servers"]
        assert stun == STUN, ack
        assert turn["urls"] == TURN["urls"], ack
        assert set(turn) == {"urls", "username", "credential"}, ack
        assert coturn_accepts(turn, user_id, at=after + longest_call_s), turn
        expiry = int(turn["username"].split(":", 1)[0])
        assert before + longest_call_s < expiry <= after + longest_call_s + 3600, turn
    assert first["ice_servers"][1]["credential"] != second["ice_servers"][1]["credential"]


async def test_without_a_turn_secret_the_configured_list_is_handed_out(lab: Lab) -> None:
    static = {**TURN, "username": "static-user", "credential": "static-password"}
    server = await lab.start(ice_servers=(STUN, static))
    call = await server.schedule("alice", "bob")
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    second = await both_in(alice, bob, call["id"])
    assert second["ice_servers"] == [STUN, static]
