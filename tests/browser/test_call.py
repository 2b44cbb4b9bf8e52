"""Two real browsers in one call: camera and microphone (fake devices),
peer to peer on this machine, the server's countdown and limit."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import ServerFactory, UserFactory, WebUser, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(45)]

#: How the page's peer connection looks from inside: the nominated pair,
#: what flowed over it, and the video the page plays.
MEDIA_PROBE = """async () => {
  const call = window.giftcall.call;
  const video = document.querySelector('#remote-video');
  const out = {videoWidth: video.videoWidth, playing: !video.paused && video.readyState >= 2};
  if (!call || !call.pc) return out;
  const stats = await call.pc.getStats();
  const byId = new Map();
  stats.forEach((s) => byId.set(s.id, s));
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = byId.get(s.selectedCandidatePairId);
      out.pairState = pair.state;
      out.bytesReceived = pair.bytesReceived;
      out.local = byId.get(pair.localCandidateId).address;
      out.remote = byId.get(pair.remoteCandidateId).address;
    }
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded = s.framesDecoded;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioBytes = s.bytesReceived;
  });
  const sdp = call.pc.remoteDescription ? call.pc.remoteDescription.sdp : '';
  out.remoteUfrag = (sdp.match(/a=ice-ufrag:(\\S+)/) || [])[1];
  return out;
}"""


#: Park the page's call event queue (its handlers run one at a time) until
#: ``window.releaseSignals()``: what arrives meanwhile waits its turn.
HOLD_SIGNALS = """() => {
  const parked = new Promise((release) => { window.releaseSignals = release; });
  window.giftcall.call.enqueue(() => parked);
}"""


async def media(user: WebUser) -> dict[str, Any]:
    return dict(await user.page.evaluate(MEDIA_PROBE))


async def expect_flowing(user: WebUser) -> dict[str, Any]:
    """Both media kinds arrive over a nominated pair and the video plays."""
    deadline = time.monotonic() + 10
    probe: dict[str, Any] = {}
    while time.monotonic() < deadline:
        probe = await media(user)
        if (
            probe.get("pairState") == "succeeded"
            and probe.get("framesDecoded", 0) > 0
            and probe.get("audioBytes", 0) > 0
            and probe["videoWidth"] > 0
            and probe["playing"]
        ):
            return probe
        await asyncio.sleep(0.2)
    raise AssertionError(f"{user.user_id}: no media from the partner: {probe}")


async def join_from_list(user: WebUser, call_id: int) -> None:
    """Click the call's Join button on the home page."""
    await user.page.click(f"#calls-list li[data-call-id='{call_id}'] [data-action=join]")
    await expect(user.page.locator("#call-view")).to_be_visible()


async def both_join(
    alice: WebUser,
    bob: WebUser,
    call_id: int,
    *,
    from_list: bool = False,
    screenshot_waiting: bool = False,
) -> None:
    """Alice waits alone, then Bob joins as the offerer; both peers connect."""
    await (join_from_list(alice, call_id) if from_list else alice.open_call(call_id))
    await alice.expect_call("data-phase", "waiting")
    await expect(alice.page.locator("#call-status")).to_have_text("Waiting for your partner…")
    await expect(alice.page.locator("#local-video")).to_have_js_property("readyState", 4)
    if screenshot_waiting:
        await screenshot(alice.page, "call-waiting")
    await (join_from_list(bob, call_id) if from_list else bob.open_call(call_id))
    await bob.expect_call("data-role", "offerer")
    await alice.expect_call("data-polite", "true")
    await bob.expect_call("data-polite", "false")
    for user in (alice, bob):
        await user.expect_call("data-pc-state", "connected")


async def test_two_browsers_call_connect_count_down_and_are_cut_off(
    web_server: ServerFactory, web_user: UserFactory
) -> None:
    limit_s = 4.0
    server = await web_server(countdown_s=1, limit_s=limit_s)
    alice, bob = await web_user(server, "alice"), await web_user(server, "bob")

    # Alice books a call with Bob on her home page, half a minute ahead: its
    # join window is open at once, and Bob's page learns of it (call_soon).
    await alice.page.fill("#schedule-partner", "bob")
    await alice.page.fill("#schedule-minutes", "0.5")
    await alice.page.click("#schedule-form button[type=submit]")
    await expect(alice.page.locator(".toast", has_text="Call with bob booked")).to_be_visible()
    _, body = await server.request("GET", "/api/calls", "alice")
    call = max(body["calls"], key=lambda c: c["id"])  # the newest (dev mode has a demo call)
    assert call["callee_id"] == "bob" and call["state"] == "open", call
    for user in (alice, bob):
        item = user.page.locator(f"#calls-list li[data-call-id='{call['id']}']")
        await expect(item).to_have_attribute("data-state", "open")
    await expect(bob.page.locator(".toast", has_text="Your call with alice starts")).to_be_visible()

    await both_join(alice, bob, call["id"], from_list=True, screenshot_waiting=True)
    # The countdown is shown with its seconds, then the call goes live.
    for user in (alice, bob):
        await expect(user.page.locator("#call-view")).to_have_attribute(
            "data-phase-log",
            "media joining waiting connecting countdown live"
            if user is alice
            else "media joining connecting countdown live",
        )
    went_live = time.monotonic()
    for user in (alice, bob):
        await user.expect_call("data-countdowns", "1")
        await user.expect_call("data-countdown-from", "1")
        await expect(user.page.locator("#question-text")).not_to_be_empty()
        await expect(user.page.locator("#call-timer")).to_have_text(re.compile(r"^0:0[1-4]$"))

    # Real media, peer to peer on this machine.
    for user in (alice, bob):
        probe = await expect_flowing(user)
        assert probe["local"] == probe["remote"] or probe["remote"].startswith("127."), probe

    # The timer runs down.
    first = int(await alice.page.get_attribute("#call-timer", "data-remaining") or "0")
    await screenshot(alice.page, "call")
    await asyncio.sleep(1.2)
    second = int(await alice.page.get_attribute("#call-timer", "data-remaining") or "0")
    assert 0 <= second < first <= limit_s, (first, second)

    # The server ends it at the limit, not before.
    for user in (alice, bob):
        await user.expect_call("data-end-reason", "time_limit", within_ms=(limit_s + 3) * 1000)
        await expect(user.page.locator("#ended-reason")).to_have_text(
            "Time is up: the call reached its limit."
        )
        await user.expect_call("data-pc-state", "closed")
    assert time.monotonic() - went_live >= limit_s - 1.5
    status, body = await server.request("GET", f"/api/calls/{call['id']}", "alice")
    assert status == 200 and body["call"]["state"] == "ended", body
    assert body["call"]["end_reason"] == "time_limit", body
    # Back home, the call is listed as over.
    await alice.page.click("#ended-panel a")
    await expect(
        alice.page.locator(f"#calls-list [data-call-id='{call['id']}']")
    ).to_have_attribute("data-state", "ended")


async def test_a_reload_mid_countdown_recovers_the_call(
    web_server: ServerFactory, web_user: UserFactory
) -> None:
    limit_s = 3.0
    server = await web_server(countdown_s=3, limit_s=limit_s)
    call = await server.schedule("alice", "bob")
    alice, bob = await web_user(server, "alice"), await web_user(server, "bob")
    await both_join(alice, bob, call["id"])
    await bob.expect_call("data-phase", "countdown")
    await expect(bob.page.locator("#countdown")).to_be_visible()

    await bob.page.reload()  # the session and the call's address survive it

    # Alice's partner dropped: the countdown is cancelled, she waits again.
    # (Read from her phase log: Bob may be back before a poll of the page
    # sees her partner absent, and the log keeps what she went through.)
    await expect(alice.page.locator("#call-view")).to_have_attribute(
        "data-phase-log", re.compile(r"^media joining waiting connecting countdown waiting\b")
    )
    # Bob is back as the offerer; a new negotiation, a new countdown, live.
    await bob.expect_call("data-role", "offerer")
    for user in (alice, bob):
        await user.expect_call("data-pc-state", "connected")
        await user.expect_call("data-phase", "live", within_ms=8000)
    await alice.expect_call("data-countdowns", "2")
    await alice.expect_call("data-negotiations", "2")
    await bob.expect_call("data-phase-log", "media joining connecting countdown live")
    await expect_flowing(bob)
    for user in (alice, bob):
        await user.expect_call("data-end-reason", "time_limit", within_ms=(limit_s + 3) * 1000)
    status, body = await server.request("GET", f"/api/calls/{call['id']}", "bob")
    assert status == 200, body
    assert body["call"]["end_reason"] == "time_limit", body


async def test_a_reload_while_live_rejoins_the_running_clock(
    web_server: ServerFactory, web_user: UserFactory
) -> None:
    limit_s = 6.0
    server = await web_server(countdown_s=0.5, limit_s=limit_s)
    call = await server.schedule("alice", "bob")
    alice, bob = await web_user(server, "alice"), await web_user(server, "bob")
    await both_join(alice, bob, call["id"])
    for user in (alice, bob):
        await user.expect_call("data-phase", "live")
    went_live = time.monotonic()
    await asyncio.sleep(1)  # a second of the call gone

    await alice.page.reload()

    # Straight back into the live call (no new countdown), as the offerer.
    await alice.expect_call("data-phase-log", "media joining live")
    await alice.expect_call("data-role", "offerer")
    for user in (alice, bob):
        await user.expect_call("data-pc-state", "connected")
        await expect_flowing(user)
    await bob.expect_call("data-negotiations", "2")
    await bob.expect_call("data-countdowns", "1")
    await bob.expect_call("data-phase-log", "media joining connecting countdown live")
    # Her timer runs to the same end as Bob's, which never stopped.
    ends = [await u.page.evaluate("window.giftcall.call.endsAt") for u in (alice, bob)]
    assert abs(ends[0] - ends[1]) < 300, ends
    left = int(await alice.page.get_attribute("#call-timer", "data-remaining") or "-1")
    assert 0 < left <= limit_s, left
    # The clock did not restart: the call ends at the first ends_at.
    for user in (alice, bob):
        await user.expect_call("data-end-reason", "time_limit", within_ms=(limit_s + 3) * 1000)
    assert limit_s - 1.5 <= time.monotonic() - went_live <= limit_s + 1.5


async def test_an_ice_restart_with_glare_keeps_the_call(
    web_server: ServerFactory, web_user: UserFactory
) -> None:
    server = await web_server(countdown_s=0.5, limit_s=8)
    call = await server.schedule("alice", "bob")
    alice, bob = await web_user(server, "alice"), await web_user(server, "bob")
    await both_join(alice, bob, call["id"])
    for user in (alice, bob):
        await user.expect_call("data-phase", "live")
    before = {u.user_id: (await media(u))["remoteUfrag"] for u in (alice, bob)}

    # Both restart ICE at once and their offers cross: each page holds what
    # it receives until both have sent their offer, then perfect negotiation
    # sorts it out (Alice, polite, rolls back and answers; Bob ignores hers).
    for user in (alice, bob):
        await user.page.evaluate(HOLD_SIGNALS)
    await asyncio.gather(*(u.page.evaluate("window.giftcall.restartIce()") for u in (alice, bob)))
    for user in (alice, bob):
        await user.expect_call("data-signaling-state", "have-local-offer")
    for user in (alice, bob):
        await user.page.evaluate("window.releaseSignals()")
    for user in (alice, bob):
        await user.expect_call("data-ice-restarts", "1")
        await expect(user.page.locator("#call-view")).not_to_have_attribute(
            "data-signaling-state", "have-local-offer"
        )
    after: dict[str, Any] = {}
    for user in (alice, bob):
        await user.expect_call("data-pc-state", "connected")
        probe = await expect_flowing(user)
        after[user.user_id] = probe["remoteUfrag"]
    assert all(after[u] != before[u] for u in before), (before, after)
    # Still one call and one peer connection each, live, the notice gone.
    for user in (alice, bob):
        await user.expect_call("data-phase", "live")
        await user.expect_call("data-negotiations", "1")
        await expect(user.page.locator("#call-banner")).to_be_hidden()
    # Each side saw the collision once.
    for user in (alice, bob):
        await user.expect_call("data-glare", "1")


async def test_without_a_camera_one_still_sees_the_partner(
    web_server: ServerFactory, web_user: UserFactory
) -> None:
    server = await web_server(countdown_s=0.5, limit_s=4)
    call = await server.schedule("alice", "bob")
    alice, bob = await web_user(server, "alice"), await web_user(server, "bob", camera=False)
    await both_join(alice, bob, call["id"])
    await bob.expect_call("data-local-media", "off")
    await expect(bob.page.locator("#call-error")).to_contain_text("No camera or microphone")
    await expect(bob.page.locator("#local-video")).to_be_hidden()
    await expect_flowing(bob)  # Alice's media reaches Bob, who sends none
    for user in (alice, bob):
        await user.expect_call("data-end-reason", "time_limit", within_ms=8000)
    await alice.expect_call(
        "data-phase-log", "media joining waiting connecting countdown live ended"
    )
    await bob.expect_call("data-phase-log", "media joining connecting countdown live ended")


async def test_leave_during_the_call_hangs_up_for_both(
    web_server: ServerFactory, web_user: UserFactory
) -> None:
    server = await web_server(countdown_s=0.5, limit_s=30)
    call = await server.schedule("alice", "bob")
    alice, bob = await web_user(server, "alice"), await web_user(server, "bob")
    await both_join(alice, bob, call["id"])
    for user in (alice, bob):
        await user.expect_call("data-phase", "live")

    await bob.page.click("#leave-call")

    await expect(bob.page.locator("#home-view")).to_be_visible()
    await alice.expect_call("data-end-reason", "left")
    await expect(alice.page.locator("#ended-reason")).to_have_text("The call was hung up.")
    await expect(
        bob.page.locator(f"#calls-list li[data-call-id='{call['id']}']")
    ).to_have_attribute("data-state", "ended")
    status, body = await server.request("GET", f"/api/calls/{call['id']}", "alice")
    assert status == 200 and body["call"]["end_reason"] == "left", body
