from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.support import Client, RunningServer


async def test_a_whole_call(
    server: RunningServer, client: Callable[[str], Awaitable[Client]]
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await client("alice"), await client("bob")
    first = await alice.emit("join", {"call_id": call["id"]})
    assert first["ok"] and first["role"] == "waiting" and first["partner_present"] is False
    second = await bob.emit("join", {"call_id": call["id"]})
    assert second["role"] == "offerer" and second["partner_present"] is True
    assert (await alice.wait_for("partner_joined"))[0] == {
        "call_id": call["id"],
        "role": "answerer",
    }
    assert await bob.emit("signal", {"call_id": call["id"], "type": "offer", "sdp": "v=0"}) == {
        "ok": True
    }
    assert (await alice.wait_for("signal"))[0]["from"] == "bob"
    for peer in (alice, bob):
        assert (await peer.emit("connected", {"call_id": call["id"]}))["ok"]
    for peer in (alice, bob):
        await peer.wait_for("countdown")
        await peer.wait_for("live")
        assert (await peer.wait_for("ended"))[0] == {"call_id": call["id"], "reason": "time_limit"}
