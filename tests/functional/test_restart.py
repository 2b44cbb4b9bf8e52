"""The database is the truth about calls: a server killed with SIGKILL and
started again on the same database keeps every call's clock, re-arms its
timers at start-up and applies each timed effect exactly once.

Every server here is the real CLI (``python -m signaling serve``) in a child
process, configured only through SIGNALING_* variables. The periodic sweep is
pushed out of reach, so what happens after a restart is the start-up re-arm's
doing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signaling.config import Settings
from tests import support
from tests.functional.peers import WAIT_S, TimedClient, child_server, now, parse_time
from tests.support import SECRET, RunningServer

COUNTDOWN_S = 0.5
#: How late a timed effect may happen after its instant.
LATE_S = 0.5
#: How early (the servers and the test share one clock).
EARLY_S = 0.05
#: How long a clean stop may take: under the 10 s that docker/systemd give
#: before SIGKILL, with a margin.
STOP_GRACE_S = 8.0


def _env(settings: Settings) -> dict[str, str]:
    """What an operator would set; any other SIGNALING_* of the test run's
    environment is blanked (the loader treats empty as unset)."""
    env = {key: "" for key in os.environ if key.startswith("SIGNALING_")}
    env.update(
        {
            "SIGNALING_JWT_SECRET": SECRET,
            "SIGNALING_DATABASE_URL": settings.database_url,
            "SIGNALING_COUNTDOWN_S": str(settings.countdown_s),
            "SIGNALING_CALL_LIMIT_S": str(settings.limit_s),
            "SIGNALING_NOTIFY_BEFORE_S": str(settings.notify_before_s),
            "SIGNALING_JOIN_GRACE_S": str(settings.join_grace_s),
            "SIGNALING_SWEEP_INTERVAL_S": "3600",
        }
    )
    return env


async def _until(condition: Callable[[], bool], what: str, within: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"timed out after {within} s waiting for {what}"
        await asyncio.sleep(0.02)


async def _sleep_until(instant: datetime) -> None:
    delay = (instant - now()).total_seconds()
    assert delay < 30, f"refusing to sleep {delay} s"
    if delay > 0:
        await asyncio.sleep(delay)


async def _get_call(server: RunningServer, call_id: int, user_id: str = "alice") -> dict[str, Any]:
    status, body = await server.request("GET", f"/api/calls/{call_id}", user_id)
    assert status == 200, body
    return dict(body["call"])


async def _wait_call_state(
    server: RunningServer, call_id: int, state: str, within: float
) -> dict[str, Any]:
    """Poll the REST view of the call until it is in ``state``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        call = await _get_call(server, call_id)
        if call["state"] == state:
            return call
        assert loop.time() < deadline, f"call still {call['state']!r}, not {state!r}: {call}"
        await asyncio.sleep(0.05)


async def _call_soon_notifications(
    server: RunningServer, user_id: str, call_id: int
) -> list[dict[str, Any]]:
    status, body = await server.request("GET", "/api/notifications", user_id)
    assert status == 200, body
    return [
        n for n in body["notifications"] if n["kind"] == "call_soon" and n["call_id"] == call_id
    ]


async def _assert_one_call_soon_each(server: RunningServer, call: dict[str, Any]) -> None:
    for user_id, partner_id in (("alice", "bob"), ("bob", "alice")):
        found = await _call_soon_notifications(server, user_id, call["id"])
        assert len(found) == 1, f"{user_id}: {found}"
        assert found[0]["payload"] == {
            "call_id": call["id"],
            "scheduled_at": call["scheduled_at"],
            "partner_id": partner_id,
        }


async def _connect(server: RunningServer, user_id: str, made: list[TimedClient]) -> TimedClient:
    client = TimedClient(server, user_id)
    made.append(client)
    await client.connect()
    return client


@contextlib.asynccontextmanager
async def _clients() -> AsyncIterator[list[TimedClient]]:
    """Clients made during the block, closed when it ends: entered after the
    server, so they go before it (a stop with clients connected is slow)."""
    made: list[TimedClient] = []
    try:
        yield made
    finally:
        for client in made:
            await client.close()


async def _go_live(alice: TimedClient, bob: TimedClient, call_id: int) -> dict[str, Any]:
    """Join, negotiate (a stand-in offer) and report connected; returns `live`."""
    assert (await alice.emit("join", {"call_id": call_id}))["role"] == "waiting"
    assert (await bob.emit("join", {"call_id": call_id}))["role"] == "offerer"
    assert await bob.emit("signal", {"call_id": call_id, "type": "offer", "sdp": "v=0"}) == {
        "ok": True
    }
    for client in (alice, bob):
        assert await client.emit("connected", {"call_id": call_id}) == {"ok": True}
    for client in (alice, bob):
        await client.wait_for("live", timeout=COUNTDOWN_S + WAIT_S)
    return dict(alice.events["live"][0])


def _call_stored_state(settings: Settings, call_id: int) -> str:
    """The call's state as the SQLite file has it, read while no server runs."""
    prefix = "sqlite+aiosqlite:///"
    assert settings.database_url.startswith(prefix), settings.database_url
    path = settings.database_url.removeprefix(prefix)
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        row = db.execute("SELECT state FROM calls WHERE id = ?", (call_id,)).fetchone()
    assert row is not None, f"call {call_id} is not in {path}"
    return str(row[0])


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_a_server_killed_mid_call_still_ends_it_at_the_original_limit(
    tmp_path: Path,
) -> None:
    settings = support.server_settings(tmp_path, countdown_s=COUNTDOWN_S, limit_s=6.0)
    env = _env(settings)
    server = RunningServer(settings)
    async with child_server(settings, env) as first, _clients() as clients:
        call = await server.schedule("alice", "bob")
        call_id = call["id"]
        alice = await _connect(server, "alice", clients)
        bob = await _connect(server, "bob", clients)
        live = await _go_live(alice, bob, call_id)
        ends_at = parse_time(live["ends_at"])
        live_at = ends_at - timedelta(seconds=settings.limit_s)
        # `live` is written just after it is sent: a kill in those
        # milliseconds would leave the countdown, which a restart cuts short.
        await _until(lambda: _call_stored_state(settings, call_id) == "live", "live written")

        first.kill()
        await _until(
            lambda: not alice.sio.connected and not bob.sio.connected,
            "the clients to notice the dead server",
        )
    assert alice.events["ended"] == [] and bob.events["ended"] == []

    async with child_server(settings, env), _clients() as clients:
        restarted_at = now()
        # A restart is ~1 s on an idle machine, a few seconds on a busy one.
        assert restarted_at < ends_at - timedelta(seconds=1.0), (
            f"the restart took too long for this test to mean anything: {restarted_at}"
        )
        # Both come back; while live they may, and the one who finds the
        # other waiting makes the new offer.
        bob2 = await _connect(server, "bob", clients)
        alice2 = await _connect(server, "alice", clients)
        back = await bob2.emit("join", {"call_id": call_id})
        assert back["ok"] is True, back
        assert back["role"] == "waiting" and back["partner_present"] is False
        assert back["call"]["state"] == "live", back
        assert parse_time(back["ends_at"]) == ends_at, back
        again = await alice2.emit("join", {"call_id": call_id})
        assert again["ok"] is True, again
        assert again["role"] == "offerer" and again["partner_present"] is True
        assert parse_time(again["ends_at"]) == ends_at, again
        assert (await bob2.wait_for("partner_joined", timeout=WAIT_S))[0] == {
            "call_id": call_id,
            "role": "answerer",
        }
        offer = {"call_id": call_id, "type": "offer", "sdp": "v=0 after restart"}
        assert await alice2.emit("signal", offer) == {"ok": True}
        relayed = (await bob2.wait_for("signal", timeout=WAIT_S))[0]
        assert relayed == {**offer, "from": "alice"}
        for client in (alice2, bob2):
            assert await client.emit("connected", {"call_id": call_id}) == {"ok": True}

        # The clock kept running through the crash: ended at the original ends_at.
        for client in (alice2, bob2):
            ended = await client.wait_for("ended", timeout=settings.limit_s + WAIT_S)
            assert ended[0] == {"call_id": call_id, "reason": "time_limit"}
            arrived = client.arrivals["ended"][0]
            assert ends_at - timedelta(seconds=EARLY_S) <= arrived, (arrived, ends_at)
            assert arrived <= ends_at + timedelta(seconds=LATE_S), (arrived, ends_at)
        await asyncio.sleep(0.3)  # a duplicate would be here by now
        for client in (alice2, bob2):
            assert len(client.events["ended"]) == 1, client.events["ended"]
            # Nothing restarted or extended the clock.
            assert client.events["countdown"] == [] and client.events["live"] == []

        stored = await _get_call(server, call_id)
        assert stored["state"] == "ended" and stored["end_reason"] == "time_limit", stored
        assert parse_time(stored["started_at"]) == live_at, stored
        ended_at = parse_time(stored["ended_at"])
        assert ends_at - timedelta(seconds=EARLY_S) <= ended_at, stored
        assert ended_at <= ends_at + timedelta(seconds=LATE_S), stored
        await _assert_one_call_soon_each(server, call)


@pytest.mark.slow
@pytest.mark.timeout(40)
async def test_a_countdown_cut_short_by_a_crash_waits_for_both_again(tmp_path: Path) -> None:
    """A crash during the countdown has the outcome of a drop: nobody goes
    live in an empty call, and the two start a new countdown when back."""
    settings = support.server_settings(tmp_path, countdown_s=2.0, limit_s=1.0)
    env = _env(settings)
    server = RunningServer(settings)
    async with child_server(settings, env) as first, _clients() as clients:
        call = await server.schedule("alice", "bob")
        call_id = call["id"]
        alice = await _connect(server, "alice", clients)
        bob = await _connect(server, "bob", clients)
        assert (await alice.emit("join", {"call_id": call_id}))["role"] == "waiting"
        assert (await bob.emit("join", {"call_id": call_id}))["role"] == "offerer"
        for client in (alice, bob):
            assert await client.emit("connected", {"call_id": call_id}) == {"ok": True}
        countdown = (await alice.wait_for("countdown", timeout=WAIT_S))[0]
        live_at = parse_time(countdown["live_at"])
        await _until(
            lambda: _call_stored_state(settings, call_id) == "countdown", "countdown written"
        )
        first.kill()
        assert now() < live_at, "killed too late: the countdown was over already"

    async with child_server(settings, env), _clients() as clients:
        await _sleep_until(live_at + timedelta(seconds=1.0))
        stored = await _wait_call_state(server, call_id, "open", within=3.0)
        assert stored["started_at"] is None, stored
        alice2 = await _connect(server, "alice", clients)
        bob2 = await _connect(server, "bob", clients)
        assert (await alice2.emit("join", {"call_id": call_id}))["role"] == "waiting"
        assert (await bob2.emit("join", {"call_id": call_id}))["role"] == "offerer"
        for client in (alice2, bob2):
            assert await client.emit("connected", {"call_id": call_id}) == {"ok": True}
        again = (await alice2.wait_for("countdown", timeout=WAIT_S))[0]
        assert parse_time(again["live_at"]) > live_at
        for client in (alice2, bob2):
            await client.wait_for("live", timeout=settings.countdown_s + WAIT_S)
            await client.wait_for("ended", timeout=settings.limit_s + WAIT_S)
            assert len(client.events["live"]) == 1


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_a_call_whose_limit_passed_while_the_server_was_down_ends_at_start_up(
    tmp_path: Path,
) -> None:
    settings = support.server_settings(tmp_path, countdown_s=COUNTDOWN_S, limit_s=1.5)
    env = _env(settings)
    server = RunningServer(settings)
    async with child_server(settings, env) as first, _clients() as clients:
        call = await server.schedule("alice", "bob")
        call_id = call["id"]
        alice = await _connect(server, "alice", clients)
        bob = await _connect(server, "bob", clients)
        live = await _go_live(alice, bob, call_id)
        ends_at = parse_time(live["ends_at"])
        # `live` is sent first and written just after: kill once it is written.
        await _until(lambda: _call_stored_state(settings, call_id) == "live", "live written")
        first.kill()
        assert now() < ends_at, "killed too late: the call was over already"
    assert alice.events["ended"] == [] and bob.events["ended"] == []

    await _sleep_until(ends_at + timedelta(seconds=0.5))
    assert _call_stored_state(settings, call_id) == "live"

    async with child_server(settings, env), _clients() as clients:
        started = now()
        # Nobody joins: the timers re-armed at start-up end it at once.
        stored = await _wait_call_state(server, call_id, "ended", within=3.0)
        assert stored["end_reason"] == "time_limit", stored
        ended_at = parse_time(stored["ended_at"])
        assert ends_at < ended_at <= started + timedelta(seconds=2.0), (stored, started)

        late = await _connect(server, "alice", clients)
        refused = await late.emit("join", {"call_id": call_id})
        assert refused["ok"] is False and refused["error"]["code"] == "ended", refused
        await asyncio.sleep(0.2)
        assert late.events["countdown"] == [] and late.events["live"] == []
        assert await _get_call(server, call_id) == stored  # ended once, for good


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_a_window_that_opened_while_the_server_was_down_opens_once_at_start_up(
    tmp_path: Path,
) -> None:
    settings = support.server_settings(
        tmp_path, countdown_s=COUNTDOWN_S, limit_s=4.0, notify_before_s=2.0
    )
    env = _env(settings)
    server = RunningServer(settings)
    async with child_server(settings, env) as first:
        call = await server.schedule("alice", "bob", in_s=4.5)
        call_id = call["id"]
        opens_at = parse_time(call["scheduled_at"]) - timedelta(seconds=2.0)
        assert call["state"] == "scheduled", call
        for user_id in ("alice", "bob"):
            assert await _call_soon_notifications(server, user_id, call_id) == []
        first.kill()
        assert now() < opens_at, "killed too late: the window was open already"

    await _sleep_until(opens_at + timedelta(seconds=0.3))
    assert _call_stored_state(settings, call_id) == "scheduled"

    async with child_server(settings, env) as second:
        stored = await _wait_call_state(server, call_id, "open", within=3.0)
        await _assert_one_call_soon_each(server, call)
        second.kill()

    # A second restart (after a crash) must not open it or notify again.
    async with child_server(settings, env), _clients() as clients:
        await asyncio.sleep(0.5)  # anything the start-up re-arm did is done
        assert await _get_call(server, call_id) == stored
        await _assert_one_call_soon_each(server, call)
        alice = await _connect(server, "alice", clients)
        joined = await alice.emit("join", {"call_id": call_id})
        assert joined["ok"] is True and joined["role"] == "waiting", joined


@pytest.mark.timeout(30)
async def test_a_clean_stop_with_users_in_a_call_exits_promptly(tmp_path: Path) -> None:
    """SIGTERM (docker stop, systemd, Ctrl-C) must not wait for the clients to
    go away on their own (their ping timeout is 45 s): a stop that outlasts
    the usual 10 s grace ends as a SIGKILL."""
    settings = support.server_settings(tmp_path, countdown_s=COUNTDOWN_S, limit_s=30.0)
    env = _env(settings)
    server = RunningServer(settings)
    async with child_server(settings, env) as child, _clients() as clients:
        call = await server.schedule("alice", "bob")
        alice = await _connect(server, "alice", clients)
        bob = await _connect(server, "bob", clients)
        await _go_live(alice, bob, call["id"])
        child.proc.terminate()
        try:
            await asyncio.to_thread(child.proc.wait, STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            pytest.fail(
                f"the server was still running {STOP_GRACE_S} s after SIGTERM with users connected"
            )
        assert child.proc.returncode == 0
        await _until(
            lambda: not alice.sio.connected and not bob.sio.connected,
            "the clients to be disconnected",
            within=2.0,
        )


@pytest.mark.timeout(40)
async def test_a_clean_stop_just_as_a_user_disconnects_exits_promptly(tmp_path: Path) -> None:
    """A user whose connection closes at the moment the server is told to stop
    must not hold the stop, nor make it fail (a race: tried a few times, each
    on a fresh server)."""
    settings = support.server_settings(tmp_path, countdown_s=COUNTDOWN_S, limit_s=30.0)
    env = _env(settings)
    server = RunningServer(settings)
    for attempt in range(3):
        async with child_server(settings, env) as child, _clients() as clients:
            alice = await _connect(server, "alice", clients)
            await alice.close()
            child.proc.terminate()
            try:
                await asyncio.to_thread(child.proc.wait, STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                pytest.fail(
                    f"attempt {attempt + 1}: the server was still running {STOP_GRACE_S} s "
                    "after SIGTERM sent as its last client disconnected"
                )
            assert child.proc.returncode == 0, (
                f"attempt {attempt + 1}: exit code {child.proc.returncode}: "
                f"{child.read_logs()[-1500:]}"
            )
