"""Two real aiortc peers connect using nothing but this server's /call
signaling (no STUN, no TURN), then the server runs the call to its limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests import support
from tests.functional.peers import WAIT_S, RtcPeer, TimedClient, parse_time
from tests.support import RunningServer, serve_in_process

COUNTDOWN_S = 0.5
LIMIT_S = 2.0
#: How late a timed event may arrive after the instant the server announced.
LATE_S = 0.5
#: How early it may arrive (the server and the test share one clock).
EARLY_S = 0.05


@pytest.fixture
async def short_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = support.server_settings(tmp_path, countdown_s=COUNTDOWN_S, limit_s=LIMIT_S)
    async with serve_in_process(settings) as running:
        yield running


async def _until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Poll ``condition()`` until it is true, for at most ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_aiortc_peers_connect_through_the_server_and_the_call_ends_at_its_limit(
    short_server: RunningServer,
) -> None:
    server = short_server
    call = await server.schedule("alice", "bob")
    call_id = call["id"]
    alice, bob = TimedClient(server, "alice"), TimedClient(server, "bob")
    peers: list[RtcPeer] = []
    try:
        await alice.connect()
        await bob.connect()

        # Join: the first waits, the late joiner is the offerer.
        first = await alice.emit("join", {"call_id": call_id})
        assert first["ok"] is True, first
        assert first["role"] == "waiting" and first["partner_present"] is False
        assert first["countdown_s"] == COUNTDOWN_S and first["limit_s"] == LIMIT_S
        assert first["ice_servers"] == []  # nothing configured: loopback only
        answerer = RtcPeer(alice, call_id, "bob", first["ice_servers"])
        peers.append(answerer)
        answerer.start()

        second = await bob.emit("join", {"call_id": call_id})
        assert second["ok"] is True, second
        assert second["role"] == "offerer" and second["partner_present"] is True
        assert (await alice.wait_for("partner_joined", timeout=WAIT_S))[0] == {
            "call_id": call_id,
            "role": "answerer",
        }
        offerer = RtcPeer(bob, call_id, "alice", second["ice_servers"])
        peers.append(offerer)
        offerer.start()

        # Offer, answer and trickled candidates, all through `signal`.
        await offerer.make_offer()
        await asyncio.gather(offerer.wait_connected(), answerer.wait_connected())

        for peer, partner in ((offerer, answerer), (answerer, offerer)):
            await _until(
                lambda peer=peer: peer.received_end_of_candidates,  # type: ignore[misc]
                f"{peer.client.user_id}: end-of-candidates",
            )
            # The descriptions carried no candidate: the candidate signals did.
            assert peer.received_sdp_candidates == 0
            assert peer.received_candidates == partner.sent_candidates > 0
        assert alice.events["signal"][0]["type"] == "offer"
        assert bob.events["signal"][0]["type"] == "answer"

        # Media flows both ways: a decoded video frame from each side ...
        for peer in peers:
            videos = [t for t in peer.remote_tracks if t.kind == "video"]
            assert len(videos) == 1, f"{peer.client.user_id}: remote tracks {peer.remote_tracks}"
            frame = await asyncio.wait_for(videos[0].recv(), WAIT_S)
            assert frame.width > 0 and frame.height > 0  # type: ignore[union-attr]
        # ... and a data channel round trip.
        await asyncio.wait_for(offerer.channel_open.wait(), WAIT_S)
        await asyncio.wait_for(answerer.channel_open.wait(), WAIT_S)
        assert offerer.channel is not None and answerer.channel is not None
        offerer.channel.send("ping")
        assert await asyncio.wait_for(answerer.messages.get(), WAIT_S) == "ping"
        answerer.channel.send("pong")
        assert await asyncio.wait_for(offerer.messages.get(), WAIT_S) == "pong"

        # Each reports `connected`; the countdown starts when both have.
        assert await alice.emit("connected", {"call_id": call_id}) == {"ok": True}
        assert alice.events["countdown"] == [] and bob.events["countdown"] == []
        assert await bob.emit("connected", {"call_id": call_id}) == {"ok": True}

        countdowns = [(await c.wait_for("countdown", timeout=WAIT_S))[0] for c in (alice, bob)]
        assert countdowns[0] == countdowns[1]
        assert countdowns[0]["call_id"] == call_id
        assert countdowns[0]["seconds"] == COUNTDOWN_S
        live_at = parse_time(countdowns[0]["live_at"])

        for client in (alice, bob):
            live = (await client.wait_for("live", timeout=COUNTDOWN_S + WAIT_S))[0]
            assert live["call_id"] == call_id
            question = live["question"]
            assert isinstance(question, dict) and isinstance(question.get("text"), str)
            assert question["text"].strip(), live
            ends_at = parse_time(live["ends_at"])
            assert abs((ends_at - live_at).total_seconds() - LIMIT_S) < 0.002, live
            arrived = client.arrivals["live"][0]
            assert live_at - timedelta(seconds=EARLY_S) <= arrived, (arrived, live_at)
            assert arrived <= live_at + timedelta(seconds=LATE_S), (arrived, live_at)
        assert alice.events["live"][0] == bob.events["live"][0]
        ends_at = parse_time(alice.events["live"][0]["ends_at"])

        # The media stays up until the server ends the call, at ends_at.
        for client in (alice, bob):
            ended = await client.wait_for("ended", timeout=LIMIT_S + WAIT_S)
            assert ended[0] == {"call_id": call_id, "reason": "time_limit"}
            arrived = client.arrivals["ended"][0]
            assert ends_at - timedelta(seconds=EARLY_S) <= arrived, (arrived, ends_at)
            assert arrived <= ends_at + timedelta(seconds=LATE_S), (arrived, ends_at)
        assert all(p.pc.connectionState == "connected" for p in peers)
        await asyncio.sleep(0.3)  # a second `ended` would arrive by now
        assert len(alice.events["ended"]) == 1 and len(bob.events["ended"]) == 1

        status, body = await server.request("GET", f"/api/calls/{call_id}", "alice")
        assert status == 200, body
        stored = body["call"]
        assert stored["state"] == "ended" and stored["end_reason"] == "time_limit", stored
        assert parse_time(stored["started_at"]) == live_at
        assert abs((parse_time(stored["ended_at"]) - ends_at).total_seconds()) <= LATE_S
    finally:
        for peer in peers:
            await peer.close()
        for client in (alice, bob):
            await client.close()
