"""Chromium with the real media servers: a whole call through Janus's
VideoRoom (SIGNALING_MEDIA=janus), and a peer-to-peer call that may use only
coturn's relayed candidates, with nothing but the join ack's credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from signaling.webhooks.janus import PATH
from tests.browser.conftest import ServerFactory, UserFactory, WebUser, screenshot
from tests.browser.test_call import both_join, expect_flowing
from tests.media_servers import RunningJanus, RunningTurn, janus_settings, run_janus, run_turnserver
from tests.support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

EVENT_SECRET = "browser-janus-event-secret"
TURN_SECRET = "browser-turn-secret"
#: The issue's bound: frames stop this soon after the page hears `ended`.
FRAMES_STOP_MS = 500

#: Make the page a client that ignores the end: it keeps its peer connections
#: and camera when `ended` comes, so only the server (through Janus) can stop
#: the media. Then watch the video frames decoded, and note when `ended` came.
IGNORE_THE_END_AND_WATCH = """() => {
  const call = window.giftcall.call;
  const pc = call.pc;
  const watch = window.frameWatch = {frames: 0, lastChange: 0, endedAt: null};
  call.closePeer = () => {};
  call.stopMedia = () => {};
  const onEnded = call.on_ended.bind(call);
  call.on_ended = (payload) => { watch.endedAt = performance.now(); onEnded(payload); };
  watch.timer = setInterval(async () => {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded !== watch.frames) {
        watch.frames = s.framesDecoded;
        watch.lastChange = performance.now();
      }
    });
  }, 20);
}"""

#: Every peer connection the page makes may use relayed candidates only.
FORCE_RELAY = """(() => {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(config = {}, ...rest) { super({...config, iceTransportPolicy: 'relay'}, ...rest); }
  };
})();"""

#: The kinds of the candidates of the nominated pair.
PAIR_KINDS = """async () => {
  const stats = await window.giftcall.call.pc.getStats();
  const byId = new Map();
  stats.forEach((s) => byId.set(s.id, s));
  let out = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = byId.get(s.selectedCandidatePairId);
      out = {local: byId.get(pair.localCandidateId).candidateType,
             remote: byId.get(pair.remoteCandidateId).candidateType};
    }
  });
  return out;
}"""


@pytest.fixture
def janus(tmp_path: Path) -> Iterator[tuple[RunningJanus, int]]:
    """Janus posting its events to the port the test's server will take.
    Requested before ``web_server``, so it stops after the server."""
    port = free_port()
    with run_janus(
        tmp_path / "janus",
        event_url=f"http://127.0.0.1:{port}{PATH}",
        event_secret=EVENT_SECRET,
    ) as running:
        yield running, port


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[RunningTurn]:
    with run_turnserver(tmp_path / "coturn", TURN_SECRET) as running:
        yield running


async def test_a_whole_call_through_janus_and_the_server_cuts_the_media(
    janus: tuple[RunningJanus, int], web_server: ServerFactory, web_user: UserFactory
) -> None:
    limit_s = 4.0
    running, port = janus
    server = await web_server(
        port=port, countdown_s=1, limit_s=limit_s, **janus_settings(running, EVENT_SECRET)
    )
    call = await server.schedule("alice", "bob")
    alice, bob = await web_user(server, "alice"), await web_user(server, "bob")
    await alice.open_call(call["id"])
    await alice.expect_call("data-phase", "waiting")
    await bob.open_call(call["id"])
    for user in (alice, bob):
        # Each receives the other's feed from Janus; the countdown was started
        # by Janus's events (the pages never send `connected` with Janus).
        await user.expect_call("data-pc-state", "connected")
        await user.expect_call("data-phase", "live", within_ms=8000)
        await user.expect_call("data-countdowns", "1")
        await user.expect_call("data-countdown-from", "1")
        await expect_flowing(user)
    await alice.expect_call("data-phase-log", "media joining waiting connecting countdown live")
    await screenshot(alice.page, "janus-call")

    for user in (alice, bob):
        await user.page.evaluate(IGNORE_THE_END_AND_WATCH)
    for user in (alice, bob):
        await user.expect_call("data-end-reason", "time_limit", within_ms=(limit_s + 3) * 1000)
    await asyncio.sleep(1.0)  # long enough to see frames that would still come
    for user in (alice, bob):
        watch = await stop_watching(user)
        assert watch["frames"] > 0 and watch["endedAt"] is not None, watch
        assert watch["lastChange"] - watch["endedAt"] < FRAMES_STOP_MS, (user.user_id, watch)


async def stop_watching(user: WebUser) -> dict[str, Any]:
    return dict(
        await user.page.evaluate(
            "() => { clearInterval(window.frameWatch.timer); return window.frameWatch; }"
        )
    )


async def test_a_call_relayed_by_coturn_with_the_join_ack_credentials_only(
    turn: RunningTurn, web_server: ServerFactory, web_user: UserFactory
) -> None:
    server = await web_server(
        countdown_s=0.5, limit_s=3, ice_servers=({"urls": [turn.url]},), turn_secret=TURN_SECRET
    )
    call = await server.schedule("alice", "bob")
    users = [await web_user(server, "alice"), await web_user(server, "bob")]
    for user in users:
        await user.context.add_init_script(FORCE_RELAY)
        await user.page.reload()  # the session survives; the policy is in force from now on
        await expect(user.page.locator("#conn")).to_have_attribute("data-state", "online")
    alice, bob = users
    await both_join(alice, bob, call["id"])
    for user in users:
        probe = await expect_flowing(user)
        assert await user.page.evaluate(PAIR_KINDS) == {"local": "relay", "remote": "relay"}
        assert probe["local"] == probe["remote"] == "127.0.0.1", probe  # coturn's relay address
        await user.expect_call("data-phase", "live")
    for user in users:
        await user.expect_call("data-end-reason", "time_limit", within_ms=6000)
