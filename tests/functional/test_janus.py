"""The Janus media backend against the real ``janus`` (Debian's package):
rooms, tokens, the event handler's posts, the limit, and Janus going down."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtc_bridge.janus import JanusClient, RoomKeys
from signaling.webhooks.janus import PATH
from tests.functional.conftest import Lab, TimedClient, assert_error, call_state
from tests.functional.janus_peers import JanusPeer
from tests.functional.relay_peers import BLUE, RED, close_to
from tests.media_servers import EVENT_USER, janus_settings, run_janus
from tests.support import RunningServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

EVENT_SECRET = "janus-event-secret-for-tests"


@dataclass
class JanusLab:
    """A server with ``SIGNALING_MEDIA=janus`` and the Janus it drives."""

    lab: Lab
    admin_key: str
    server: RunningServer
    admin: JanusClient

    @property
    def keys(self) -> RoomKeys:
        return RoomKeys(self.admin_key)

    async def room_exists(self, call_id: int) -> bool:
        return await self.admin.exists(call_id)

    async def participants(self, call_id: int) -> list[int]:
        data = await self.admin.videoroom({"request": "listparticipants", "room": call_id})
        return [p["id"] for p in data.get("participants", [])]

    async def pair(
        self, call_id: int
    ) -> tuple[TimedClient, TimedClient, dict[str, Any], dict[str, Any]]:
        """Alice waits, Bob joins; both clients and their acks."""
        alice = await self.lab.connect(self.server, "alice")
        bob = await self.lab.connect(self.server, "bob")
        return alice, bob, await alice.join(call_id), await bob.join(call_id)


async def start_with_janus(lab: Lab, folder: Path, **overrides: Any) -> RunningServer:
    """Janus, then a server driving it; stopped in reverse (the server first:
    Janus waits for open HTTP connections when it stops)."""
    port = overrides.pop("port", None) or free_port()
    janus = lab.stack.enter_context(
        run_janus(
            folder,
            event_url=f"http://127.0.0.1:{port}{PATH}",
            event_secret=EVENT_SECRET,
            port=overrides.pop("janus_port", None),
        )
    )
    return await lab.start(port=port, **janus_settings(janus, EVENT_SECRET), **overrides)


@pytest.fixture
async def jl(lab: Lab, tmp_path: Path) -> AsyncIterator[JanusLab]:
    server = await start_with_janus(lab, tmp_path / "janus", countdown_s=0.5, limit_s=1.0)
    admin = JanusClient(server.settings.janus_url)
    yield JanusLab(lab, server.settings.janus_admin_key, server, admin)
    await admin.close()


async def until(condition: Callable[[], Any], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def peers_in_call(
    alice_ack: dict[str, Any], bob_ack: dict[str, Any]
) -> tuple[JanusPeer, JanusPeer]:
    alice, bob = JanusPeer(alice_ack, RED), JanusPeer(bob_ack, BLUE)
    for peer in (alice, bob):
        joined = await peer.join()
        assert joined.get("videoroom") == "joined", joined
        await peer.publish()
    for peer in (alice, bob):
        await peer.subscribe()
    return alice, bob


# ------------------------------------------------------------------ rooms


async def test_each_call_gets_a_room_only_its_two_users_can_enter(jl: JanusLab) -> None:
    call_id = (await jl.server.schedule("alice", "bob"))["id"]
    # The join window is open: the room is made before anybody joins.
    await until(lambda: jl.room_exists(call_id), "the room")
    alice, _bob, first, second = await jl.pair(call_id)
    for user_id, ack in (("alice", first), ("bob", second)):
        assert ack["janus"] == {
            "url": jl.server.settings.janus_url,
            "room": call_id,
            "token": jl.keys.token(call_id, user_id),
            "feed_id": jl.keys.feed_id(call_id, user_id),
        }
    assert first["janus"]["token"] != second["janus"]["token"]

    # Without one of the two tokens Janus refuses the join.
    stranger = JanusPeer(first, RED)
    try:
        refused = await stranger.join(token="not-a-token")
        assert refused.get("error_code") == 433, refused  # unauthorized
    finally:
        await stranger.close()
    # The room's secret is not the admin key: destroying needs the room's own.
    data = await jl.admin.videoroom({"request": "destroy", "room": call_id, "secret": jl.admin_key})
    assert data.get("error_code") == 433, data
    # With a token but under a made-up id: the server kicks it out.
    intruder = JanusPeer(first, RED)
    try:
        joined = await intruder.join(feed_id=4242)
        assert joined.get("videoroom") == "joined", joined
        await until(lambda: _without(jl, call_id, 4242), "the intruder kicked")
    finally:
        await intruder.close()
    await alice.quiet(("countdown",))


async def _without(jl: JanusLab, call_id: int, feed_id: int) -> bool:
    return feed_id not in await jl.participants(call_id)


# -------------------------------------------------------------- the call


async def test_events_drive_the_call_and_the_room_is_destroyed_at_the_limit(
    jl: JanusLab,
) -> None:
    call_id = (await jl.server.schedule("alice", "bob"))["id"]
    alice, bob, first, second = await jl.pair(call_id)
    peers = await peers_in_call(first, second)
    try:
        # Nobody sent `connected`: Janus's events started the countdown.
        countdown = await alice.take("countdown")
        assert await bob.take("countdown") == countdown
        await alice.take("live")
        for peer, partner_colour in zip(peers, (BLUE, RED), strict=True):
            await peer.wait_frames(10)
            assert close_to(peer.video.colours[-1], partner_colour), peer.video.colours[-1]
        assert sorted(await jl.participants(call_id)) == sorted(
            jl.keys.feed_id(call_id, u) for u in ("alice", "bob")
        )

        await alice.take("ended")
        ended_at = time.monotonic()
        await until(lambda: _gone(jl, call_id), "the room destroyed")
        for peer in peers:
            await until(lambda p=peer: _still(p, ended_at), "the media stopped")  # type: ignore[misc]
        assert (await call_state(jl.server, "alice", call_id))["end_reason"] == "time_limit"
    finally:
        for peer in peers:
            await peer.close()


async def _gone(jl: JanusLab, call_id: int) -> bool:
    return not await jl.room_exists(call_id)


async def _still(peer: JanusPeer, since: float) -> bool:
    """No frame for 0.5 s after ``since``."""
    last = peer.video.arrivals[-1] if peer.video.arrivals else 0.0
    return time.monotonic() - max(last, since) > 0.5


# ------------------------------------------------------------ the webhook


def event(kind: int, session: int, handle: int, ts: int, inner: dict[str, Any]) -> dict[str, Any]:
    """One event as the sample event handler posts it."""
    return {
        "emitter": "test",
        "type": kind,
        "timestamp": ts,
        "session_id": session,
        "handle_id": handle,
        "event": inner,
    }


def call_events(jl: JanusLab, call_id: int) -> list[dict[str, Any]]:
    """What Janus reports when both users join, publish and subscribe."""
    events = []
    for n, user_id in enumerate(("alice", "bob")):
        session, publisher, subscriber = 100 + n, 200 + n, 300 + n
        feed = jl.keys.feed_id(call_id, user_id)
        plugin = {"plugin": "janus.plugin.videoroom"}
        events += [
            event(2, session, publisher, 10 + n, {"name": "attached", **plugin}),
            event(
                64,
                session,
                publisher,
                20 + n,
                {**plugin, "data": {"event": "joined", "room": call_id, "id": feed}},
            ),
            event(16, session, publisher, 30 + n, {"connection": "webrtcup"}),
            event(
                64,
                session,
                publisher,
                40 + n,
                {**plugin, "data": {"event": "published", "room": call_id, "id": feed}},
            ),
            event(16, session, subscriber, 50 + n, {"connection": "webrtcup"}),
        ]
    return events


async def post_events(
    server: RunningServer, body: Any, password: str = EVENT_SECRET
) -> tuple[int, Any]:
    auth = aiohttp.encode_basic_auth(EVENT_USER, password)
    return await server.request("POST", PATH, headers={"Authorization": auth}, json=body)


async def test_events_without_the_secret_are_refused_and_change_nothing(jl: JanusLab) -> None:
    call_id = (await jl.server.schedule("alice", "bob"))["id"]
    alice, _bob, _, _ = await jl.pair(call_id)
    events = call_events(jl, call_id)
    for password in ("", "wrong", EVENT_SECRET + "x"):
        status, body = await post_events(jl.server, events, password)
        assert status == 401, body
        assert_error(body, "unauthorized")
    status, body = await jl.server.request("POST", PATH, json=events)
    assert status == 401, body
    for bad in ([1, 2], {"type": "x"}):
        status, body = await post_events(jl.server, bad)
        assert status == 400, body
        assert_error(body, "invalid")
    await alice.quiet(("countdown",))
    assert (await call_state(jl.server, "alice", call_id))["state"] == "connecting"


@pytest.mark.parametrize("order", ["in_order", "twice", "reversed", "shuffled", "one_by_one"])
async def test_events_in_any_order_or_twice_give_the_same_outcome(jl: JanusLab, order: str) -> None:
    call_id = (await jl.server.schedule("alice", "bob"))["id"]
    alice, bob, _, _ = await jl.pair(call_id)
    events = call_events(jl, call_id)
    if order == "twice":
        events = [e for e in events for _ in range(2)]
    elif order == "reversed":
        events.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(events)
    if order == "one_by_one":
        for item in events + events:
            assert (await post_events(jl.server, item))[0] == 200
    else:
        assert (await post_events(jl.server, events))[0] == 200
    countdown = await alice.take("countdown")
    assert await bob.take("countdown") == countdown
    await alice.take("live")
    assert await alice.take("ended") == {"call_id": call_id, "reason": "time_limit"}
    await alice.quiet(("countdown", "live", "ended"))


async def test_a_publisher_hanging_up_before_live_cancels_the_countdown(jl: JanusLab) -> None:
    server = jl.server
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice, _bob, _, _ = await jl.pair(call_id)
    events = call_events(jl, call_id)
    assert (await post_events(server, events))[0] == 200
    await alice.take("countdown")
    # Alice's publisher hangs up (her socket stays): back to connecting.
    hangup = event(16, 100, 200, 60, {"connection": "hangup", "reason": "DTLS alert"})
    assert (await post_events(server, [hangup]))[0] == 200
    await until(_state_is(server, call_id, "connecting"), "connecting again")
    await alice.quiet(("live",), within=1.0)
    # A late copy of her webrtcup changes nothing: that handle is gone.
    assert (await post_events(server, [events[2]]))[0] == 200
    await alice.quiet(("countdown",))


def _state_is(server: RunningServer, call_id: int, state: str) -> Callable[[], Any]:
    async def check() -> bool:
        return bool((await call_state(server, "alice", call_id))["state"] == state)

    return check


# ----------------------------------------------------- nothing left behind


async def test_cancel_missed_and_leave_leave_nothing_in_janus(jl: JanusLab) -> None:
    server = jl.server
    cancelled = (await server.schedule("alice", "bob"))["id"]
    await until(lambda: jl.room_exists(cancelled), "the room")
    status, body = await server.request("DELETE", f"/api/calls/{cancelled}", "alice")
    assert status == 200, body
    await until(lambda: _gone(jl, cancelled), "the cancelled call's room destroyed")

    # Bob joins and publishes, then leaves before his partner came: his
    # publisher is kicked, the room stays for the call.
    call_id = (await server.schedule("alice", "bob"))["id"]
    bob = await jl.lab.connect(server, "bob")
    peer = JanusPeer(await bob.join(call_id), BLUE)
    try:
        await peer.join()
        await peer.publish()
        feed = jl.keys.feed_id(call_id, "bob")
        await until(lambda: _with(jl, call_id, feed), "bob in the room")
        await bob.ok("leave", call_id)
        await until(lambda: _without(jl, call_id, feed), "bob kicked")
        assert await jl.room_exists(call_id)
    finally:
        await peer.close()


async def _with(jl: JanusLab, call_id: int, feed_id: int) -> bool:
    return feed_id in await jl.participants(call_id)


async def test_a_missed_call_leaves_no_room(lab: Lab, tmp_path: Path) -> None:
    server = await start_with_janus(lab, tmp_path / "janus", join_grace_s=0.5)
    admin = JanusClient(server.settings.janus_url)
    lab.stack.push_async_callback(admin.close)
    call_id = (await server.schedule("alice", "bob", in_s=0.5))["id"]
    await until(lambda: admin.exists(call_id), "the room")
    await until(_state_is(server, call_id, "missed"), "missed", within=8)
    await until(lambda: _absent(admin, call_id), "the missed call's room destroyed")


async def _absent(admin: JanusClient, call_id: int) -> bool:
    return not await admin.exists(call_id)


# ---------------------------------------------------------------- failure


async def test_janus_down_answers_unavailable_and_the_call_is_not_lost(
    lab: Lab, tmp_path: Path
) -> None:
    port, janus_port = free_port(), free_port()
    hooks = {"event_url": f"http://127.0.0.1:{port}{PATH}", "event_secret": EVENT_SECRET}
    with run_janus(tmp_path / "janus", port=janus_port, **hooks) as janus:
        server = await lab.start(
            port=port, countdown_s=0.5, limit_s=1.0, **janus_settings(janus, EVENT_SECRET)
        )
        alice = await lab.connect(server, "alice")
        call_id = (await server.schedule("alice", "bob"))["id"]
        assert (await alice.join(call_id))["janus"]["room"] == call_id
        janus.process.kill()  # it crashes
        janus.process.wait()
    # Janus is down: the join says unavailable, quickly, and the call stays as it was.
    began = time.monotonic()
    ack = await alice.emit("join", {"call_id": call_id}, timeout=10)
    assert_error(ack, "unavailable")
    assert time.monotonic() - began < 5
    bob = await lab.connect(server, "bob")
    assert_error(await bob.emit("join", {"call_id": call_id}, timeout=10), "unavailable")
    assert (await call_state(server, "alice", call_id))["state"] == "waiting"

    # Janus is back (a fresh process: its rooms and sessions are gone): the
    # joins work, the room is made again and the call runs to its limit.
    lab.stack.enter_context(run_janus(tmp_path / "janus2", port=janus_port, **hooks))
    first, second = await alice.join(call_id), await bob.join(call_id)
    peers = await peers_in_call(first, second)
    try:
        await alice.take("live")
        assert await alice.take("ended") == {"call_id": call_id, "reason": "time_limit"}
    finally:
        for peer in peers:
            await peer.close()


async def test_a_rejoin_takes_the_place_of_the_publisher_still_in_the_room(jl: JanusLab) -> None:
    call_id = (await jl.server.schedule("alice", "bob"))["id"]
    alice = await jl.lab.connect(jl.server, "alice")
    feed = jl.keys.feed_id(call_id, "alice")
    first = JanusPeer(await alice.join(call_id), RED)
    second: JanusPeer | None = None
    try:
        assert (await first.join()).get("videoroom") == "joined"
        await first.publish()
        await until(lambda: _with(jl, call_id, feed), "alice in the room")
        # A reload: the old page's publisher is still there when she joins again.
        second = JanusPeer(await alice.join(call_id), RED)
        joined = await second.join()
        assert joined.get("videoroom") == "joined", joined  # the feed id was free again
        assert await jl.participants(call_id) == [feed]
    finally:
        for peer in (first, second):
            if peer is not None:
                await peer.close()
