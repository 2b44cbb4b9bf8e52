"""aiortc clients of a call's Janus VideoRoom room, using only what the ``join``
ack hands out (``janus``: url, room, token, feed_id; ``ice_servers``): each
publishes a flat colour and subscribes to the other publisher in the room.

Janus's HTTP API: ``POST <url>`` makes a session, ``POST <url>/<session>``
attaches a handle, ``POST <url>/<session>/<handle>`` sends a plugin message;
asynchronous answers (``ack`` first) and trickled candidates come from the
long poll ``GET <url>/<session>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import defaultdict
from typing import Any

import aiohttp
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.functional.relay_peers import ColourTrack, FrameLog, frame_colour

WAIT_S = 10.0


class JanusSession:
    """One Janus session over HTTP, with its long poll."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = aiohttp.ClientSession()
        self.id = 0
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: events without a transaction (notifications, trickles), by handle
        self.notices: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._poll: asyncio.Task[None] | None = None

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": body.get("transaction") or secrets.token_hex(6)}
        async with self.http.post(self.url + path, json=body) as response:
            answer: dict[str, Any] = await response.json(content_type=None)
        return answer

    async def create(self) -> JanusSession:
        answer = await self.post("", {"janus": "create"})
        assert answer["janus"] == "success", answer
        self.id = answer["data"]["id"]
        self._poll = asyncio.create_task(self._long_poll())
        return self

    async def attach(self) -> int:
        answer = await self.post(
            f"/{self.id}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        assert answer["janus"] == "success", answer
        return int(answer["data"]["id"])

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A plugin message; the plugin's event (the answer or the later event)."""
        transaction = secrets.token_hex(6)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = future
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        answer = await self.post(f"/{self.id}/{handle}", request)
        if answer["janus"] == "ack":
            return await asyncio.wait_for(future, WAIT_S)
        self._waiting.pop(transaction, None)
        return answer

    async def trickle_done(self, handle: int) -> None:
        await self.post(
            f"/{self.id}/{handle}", {"janus": "trickle", "candidate": {"completed": True}}
        )

    async def _long_poll(self) -> None:
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.id}?maxev=10") as response:
                    events = await response.json(content_type=None)
            except (aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                future = self._waiting.pop(event.get("transaction") or "", None)
                if future is not None and event.get("janus") == "event" and not future.done():
                    future.set_result(event)
                elif event.get("janus") != "keepalive":
                    self.notices[int(event.get("sender") or 0)].append(event)

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        with contextlib.suppress(aiohttp.ClientError):
            await self.post(f"/{self.id}", {"janus": "destroy"})
        await self.http.close()


def plugin_data(event: dict[str, Any]) -> dict[str, Any]:
    return dict(event.get("plugindata", {}).get("data", {}))


def _configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    # An explicit (empty) list: aiortc would otherwise add a public STUN server.
    return RTCConfiguration(iceServers=servers)


class JanusPeer:
    """One user in the room: a publisher and, once the partner publishes, a
    subscriber; the video frames received are logged."""

    def __init__(self, ack: dict[str, Any], colour: tuple[int, int, int]) -> None:
        self.info = ack["janus"]
        self.ice_servers = list(ack.get("ice_servers") or [])
        self.colour = colour
        self.session = JanusSession(self.info["url"])
        self.publisher = RTCPeerConnection(_configuration(self.ice_servers))
        self.subscriber: RTCPeerConnection | None = None
        self.video = FrameLog()
        self.private_id = 0
        self.publisher_handle = 0
        self.joined: dict[str, Any] = {}
        self._tracks: list[MediaStreamTrack] = []
        self._readers: list[asyncio.Task[None]] = []

    async def join(self, token: str | None = None, feed_id: int | None = None) -> dict[str, Any]:
        """Join the room as a publisher; the plugin's answer (``joined`` or an error)."""
        await self.session.create()
        self.publisher_handle = await self.session.attach()
        event = await self.session.message(
            self.publisher_handle,
            {
                "request": "join",
                "ptype": "publisher",
                "room": self.info["room"],
                "id": self.info["feed_id"] if feed_id is None else feed_id,
                "token": self.info["token"] if token is None else token,
            },
        )
        self.joined = plugin_data(event)
        self.private_id = int(self.joined.get("private_id") or 0)
        return self.joined

    def _add_video(self) -> None:
        """What the publisher sends (a hook, as ``RtcPeer._add_video``: the
        media bench sends its own video)."""
        for track in (ColourTrack(self.colour), AudioStreamTrack()):
            self._tracks.append(track)
            self.publisher.addTrack(track)

    async def publish(self) -> None:
        self._add_video()
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        offer = self.publisher.localDescription
        event = await self.session.message(
            self.publisher_handle,
            {"request": "configure", "audio": True, "video": True},
            {"type": offer.type, "sdp": offer.sdp},
        )
        assert "jsep" in event, event
        await self.session.trickle_done(self.publisher_handle)
        await self.publisher.setRemoteDescription(RTCSessionDescription(**event["jsep"]))

    async def partner_feed(self, within: float = WAIT_S) -> int:
        """The other publisher's id, from the join answer or a later notice."""
        deadline = time.monotonic() + within
        while True:
            sources = [self.joined, *map(plugin_data, self.session.notices[self.publisher_handle])]
            for data in sources:
                for publisher in data.get("publishers") or []:
                    if publisher["id"] != self.info["feed_id"]:
                        return int(publisher["id"])
            assert time.monotonic() < deadline, "the partner never published"
            await asyncio.sleep(0.05)

    async def subscribe(self) -> None:
        feed = await self.partner_feed()
        pc = self.subscriber = RTCPeerConnection(_configuration(self.ice_servers))

        @pc.on("track")
        def read(track: MediaStreamTrack) -> None:
            self._readers.append(asyncio.ensure_future(self._read(track)))

        handle = await self.session.attach()
        event = await self.session.message(
            handle,
            {
                "request": "join",
                "ptype": "subscriber",
                "room": self.info["room"],
                "streams": [{"feed": feed}],
                "private_id": self.private_id,
                "token": self.info["token"],
            },
        )
        assert "jsep" in event, event
        await pc.setRemoteDescription(RTCSessionDescription(**event["jsep"]))
        await pc.setLocalDescription(await pc.createAnswer())
        started = await self.session.message(
            handle,
            {"request": "start"},
            {"type": "answer", "sdp": pc.localDescription.sdp},
        )
        assert plugin_data(started).get("started") == "ok", started
        await self.session.trickle_done(handle)

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.video.arrivals.append(time.monotonic())
                    self.video.colours.append(frame_colour(frame))
        except MediaStreamError:
            if track.kind == "video":
                self.video.ended = True

    async def wait_frames(self, count: int, within: float = WAIT_S) -> None:
        deadline = time.monotonic() + within
        while len(self.video.colours) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.video.colours)} video frames after {within} s "
                f"(publisher {self.publisher.connectionState}, subscriber "
                f"{self.subscriber.connectionState if self.subscriber else None})"
            )
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        for track in self._tracks:
            track.stop()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await asyncio.wait_for(pc.close(), WAIT_S)
        await self.session.close()
