"""The relay media backend: two aiortc client peers each send a coloured video
track to the server, which forwards it to the other; the server's clock ends
the media at the limit, and no UDP socket is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rtc_bridge.relay import RelayMedia
from signaling.webhooks.openvidu import MEDIA
from tests import support
from tests.functional.peers import WAIT_S, TimedClient
from tests.functional.relay_peers import (
    BLUE,
    RED,
    RelayPeer,
    close_to,
    open_udp_ports,
    until_closed,
)
from tests.support import RunningServer, serve_in_process

COUNTDOWN_S = 0.5
LIMIT_S = 2.0


@contextlib.asynccontextmanager
async def relay_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[RunningServer]:
    values: dict[str, Any] = {"countdown_s": COUNTDOWN_S, "limit_s": LIMIT_S, **overrides}
    settings = support.server_settings(tmp_path, media="relay", **values)
    async with serve_in_process(settings) as running:
        yield running


def relay_of(server: RunningServer) -> RelayMedia:
    assert server.app is not None
    media = server.app[MEDIA]
    assert isinstance(media, RelayMedia)
    return media


@contextlib.asynccontextmanager
async def relayed_pair(
    server: RunningServer,
) -> AsyncIterator[tuple[int, TimedClient, TimedClient, RelayPeer, RelayPeer]]:
    """A call whose two users are both connected to the relay: (call id,
    alice, bob, alice's peer (red), bob's peer (blue))."""
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice, bob = TimedClient(server, "alice"), TimedClient(server, "bob")
    peers: list[RelayPeer] = []
    try:
        await alice.connect()
        await bob.connect()
        first = await alice.emit("join", {"call_id": call_id})
        assert first["ok"] is True and first["role"] == "waiting", first
        second = await bob.emit("join", {"call_id": call_id})
        assert second["ok"] is True and second["role"] == "offerer", second
        # With a media server both users offer (to the server).
        assert (await alice.wait_for("partner_joined", timeout=WAIT_S))[0] == {
            "call_id": call_id,
            "role": "offerer",
        }
        red = RelayPeer(alice, call_id, RED)
        blue = RelayPeer(bob, call_id, BLUE)
        peers += [red, blue]
        for peer in peers:
            peer.start()
        await asyncio.gather(red.make_offer(), blue.make_offer())
        await asyncio.gather(red.wait_connected(), blue.wait_connected())
        yield call_id, alice, bob, red, blue
    finally:
        for peer in peers:
            await peer.close()
        for client in (alice, bob):
            await client.close()


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_each_user_receives_the_others_video_through_the_server_until_the_limit(
    tmp_path: Path,
) -> None:
    async with relay_server(tmp_path) as server, relayed_pair(server) as pair:
        call_id, alice, bob, red, blue = pair
        for peer in (red, blue):
            # The server answered, with its candidates in the description.
            signals = peer.client.events["signal"]
            assert [s["type"] for s in signals[:2]] == ["answer", "end-of-candidates"]
            assert all(s["from"] == "server" and s["call_id"] == call_id for s in signals)
            assert peer.received_sdp_candidates > 0 and peer.received_end_of_candidates
        assert relay_of(server).peer_count == 2

        # Each receives the other's colour, never its own.
        await red.wait_frames(10)
        await blue.wait_frames(10)
        assert all(close_to(c, BLUE) for c in red.video.colours), red.video.colours[:5]
        assert all(close_to(c, RED) for c in blue.video.colours), blue.video.colours[:5]
        assert red.audio_frames > 0 and blue.audio_frames > 0

        # The server saw both peers connect: the countdown starts with no
        # `connected` from the clients.
        countdown = await alice.wait_for("countdown", timeout=WAIT_S)
        assert countdown == await bob.wait_for("countdown", timeout=WAIT_S)
        await alice.wait_for("live", timeout=WAIT_S)
        ended = await alice.wait_for("ended", timeout=LIMIT_S + WAIT_S)
        assert ended[0] == {"call_id": call_id, "reason": "time_limit"}
        ended_at = time.monotonic()
        frames_at_end = len(red.video.arrivals), len(blue.video.arrivals)
        assert min(frames_at_end) > 30, frames_at_end  # media flowed through the live phase

        # The server closed both peer connections: no frame arrives any more,
        # although neither client hung up.
        await asyncio.sleep(1.5)
        assert relay_of(server).peer_count == 0
        for peer in (red, blue):
            late = [t for t in peer.video.arrivals if t > ended_at + 0.5]
            assert late == [], f"{peer.client.user_id}: {len(late)} frames after the end"
            # The client never closed its peer connection: the server's DTLS
            # close did (or consent checks fail, on a lossy path).
            assert peer.pc.connectionState in ("closed", "failed"), peer.pc.connectionState


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_no_udp_socket_is_left_after_the_call_ends(tmp_path: Path) -> None:
    async with relay_server(tmp_path) as server:
        baseline = open_udp_ports()
        async with relayed_pair(server) as (_call_id, alice, _bob, red, blue):
            ports = red.server_ports() | blue.server_ports()
            assert ports and ports <= open_udp_ports() - baseline
            await alice.wait_for("ended", timeout=COUNTDOWN_S + LIMIT_S + WAIT_S)
            await until_closed(ports)
            assert relay_of(server).peer_count == 0
        # Clients closed too: the process is back to where it started.
        await until_closed(open_udp_ports() - baseline)


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_leaving_closes_that_users_server_peer(tmp_path: Path) -> None:
    async with (
        relay_server(tmp_path, countdown_s=30.0) as server,
        relayed_pair(server) as (call_id, alice, bob, red, blue),
    ):
        alice_ports, bob_ports = red.server_ports(), blue.server_ports()
        assert alice_ports and bob_ports and not alice_ports & bob_ports
        assert await alice.emit("leave", {"call_id": call_id}) == {"ok": True}
        await until_closed(alice_ports)
        assert bob_ports <= open_udp_ports()  # the partner's stays for a rejoin
        assert relay_of(server).peer_count == 1
        await bob.close()  # a drop counts too
        await until_closed(bob_ports)
        assert relay_of(server).peer_count == 0


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_server_shutdown_closes_every_peer(tmp_path: Path) -> None:
    baseline = open_udp_ports()
    async with relay_server(tmp_path, countdown_s=30.0) as server:
        stack = contextlib.AsyncExitStack()
        _, _, _, red, blue = await stack.enter_async_context(relayed_pair(server))
        ports = red.server_ports() | blue.server_ports()
        assert ports <= open_udp_ports()
    # The server stopped while both clients were still connected.
    await until_closed(ports)
    await stack.aclose()
    await until_closed(open_udp_ports() - baseline)


class _Events:
    """MediaEvents that hand the server's signals to a local aiortc peer."""

    def __init__(self) -> None:
        self.signals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.connected: list[str] = []

    async def send_signal(self, call_id: int, user_id: str, signal: dict[str, Any]) -> None:
        await self.signals.put(signal)

    async def media_connected(self, call_id: int, user_id: str) -> None:
        self.connected.append(user_id)

    async def media_left(self, call_id: int, user_id: str) -> None:
        return None


@pytest.mark.timeout(20)
async def test_close_releases_peer_connections_still_open() -> None:
    """``RelayMedia.close`` (the server's shut-down) with live peers, without
    the socket layer closing them first."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from tests.functional.relay_peers import ColourTrack, candidate_ports

    events = _Events()
    media = RelayMedia(events)
    baseline = open_udp_ports()
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        client.addTrack(ColourTrack(RED))
        await client.setLocalDescription(await client.createOffer())
        client_ports = open_udp_ports() - baseline
        await media.open_call(7, ("alice", "bob"))
        await media.on_signal(7, "alice", {"type": "offer", "sdp": client.localDescription.sdp})
        answer = await asyncio.wait_for(events.signals.get(), WAIT_S)
        assert answer["type"] == "answer"
        assert (await events.signals.get())["type"] == "end-of-candidates"
        server_ports = candidate_ports(answer["sdp"])
        assert server_ports and server_ports <= open_udp_ports() - baseline - client_ports
        await client.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        deadline = time.monotonic() + WAIT_S
        while events.connected != ["alice"]:
            assert time.monotonic() < deadline, "the server's peer never connected"
            await asyncio.sleep(0.02)
        assert media.peer_count == 1
        await media.close()
        assert media.peer_count == 0
        await until_closed(server_ports)
        assert client_ports <= open_udp_ports()
    finally:
        await client.close()
        await media.close()
