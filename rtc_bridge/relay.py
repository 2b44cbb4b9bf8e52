"""Server-side relay on aiortc: each user's peer connection ends at the server,
which forwards each user's audio and video to the other through aiortc's
:class:`~aiortc.contrib.media.MediaRelay`, and closes both connections when the
call is over, so media stops whatever the clients do.

Negotiation: both users offer to the server; the server answers (aiortc does
not trickle: its candidates are in the answer, followed by
``end-of-candidates``). The answer already sends audio and video back, on
:class:`ForwardTrack`\\ s that wait for the partner's tracks and follow them
when the partner reconnects, so no renegotiation is needed.

Cost: aiortc decodes what it receives and encodes what it sends, so a call
costs two decodes and two encodes of video (see docs/media.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from rtc_bridge.aiortc_fence import end_remote_track
from rtc_bridge.base import MediaBackend, MediaEvents
from rtc_bridge.errors import MediaSignalError
from rtc_bridge.tasks import BackgroundTasks

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")
#: Video clock ticks (90 kHz) put between the last frame of one source and the
#: first of the next, so a reconnecting partner does not rewind the timestamps.
_VIDEO_GAP = 3000
#: A peer connection that takes longer than this to close is abandoned.
_CLOSE_TIMEOUT_S = 5.0
_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


class ForwardTrack(MediaStreamTrack):
    """What the server sends one user for one kind: the partner's track through
    a relay proxy, nothing until the partner's track is there, and the next
    one when the partner reconnects."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        #: the partner's remote track now forwarded, if any
        self.origin: MediaStreamTrack | None = None
        self.frames = 0
        self._source: MediaStreamTrack | None = None
        self._attached = asyncio.Event()
        self._offset = 0
        self._last_pts: int | None = None
        self._new_source = False

    def attach(self, origin: MediaStreamTrack, proxy: MediaStreamTrack) -> None:
        self.origin, self._source = origin, proxy
        self._new_source = True
        self._attached.set()

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source = self._source
            if source is None:
                self._attached.clear()
                await self._attached.wait()
                continue
            try:
                frame = await source.recv()
            except MediaStreamError:  # the partner's track ended: wait for the next
                if self._source is source:
                    self._source = self.origin = None
                continue
            if source is self._source:
                return self._retimed(frame)

    def stop(self) -> None:
        if self._source is not None:
            self._source.stop()  # unregisters the proxy from the relay
        super().stop()

    def _retimed(self, frame: Any) -> Any:
        """Keep timestamps increasing across sources (the encoder derives RTP
        timestamps from them)."""
        self.frames += 1
        pts = getattr(frame, "pts", None)
        if pts is None:
            return frame
        if self._new_source:
            self._new_source = False
            if self._last_pts is not None:
                gap = getattr(frame, "samples", 0) if self.kind == "audio" else _VIDEO_GAP
                self._offset = self._last_pts + max(gap, 1) - pts
        frame.pts = pts + self._offset
        self._last_pts = frame.pts
        return frame


def ice_ufrag(sdp: str) -> str | None:
    match = _UFRAG.search(sdp)
    return match.group(1) if match else None


@dataclass(eq=False)
class _Peer:
    """The server's peer connection with one user."""

    call_id: int
    user_id: str
    pc: RTCPeerConnection
    remote_ufrag: str | None = None
    state: str = "new"
    retired: bool = False
    incoming: dict[str, MediaStreamTrack] = field(default_factory=dict)
    outgoing: dict[str, ForwardTrack] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass(eq=False)
class _RelayCall:
    call_id: int
    peers: dict[str, _Peer] = field(default_factory=dict)
    relay: MediaRelay = field(default_factory=MediaRelay)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def lock(self, user_id: str) -> asyncio.Lock:
        return self.locks.setdefault(user_id, asyncio.Lock())


class RelayMedia(MediaBackend):
    """One aiortc ``RTCPeerConnection`` per user per call, at the server."""

    name = "relay"
    terminates_peers = True

    def __init__(self, events: MediaEvents) -> None:
        self._events = events
        self._calls: dict[int, _RelayCall] = {}
        self._tasks = BackgroundTasks(logger, "relay.task_failed")

    @property
    def peer_count(self) -> int:
        """Open peer connections (for tests and metrics)."""
        return sum(len(call.peers) for call in self._calls.values())

    # -------------------------------------------------------- the contract

    async def open_call(self, call_id: int, user_ids: tuple[str, str]) -> None:
        self._call(call_id)

    async def join_extras(self, call_id: int, user_id: str) -> dict[str, Any]:
        return {}

    async def on_signal(self, call_id: int, user_id: str, signal: dict[str, Any]) -> None:
        call = self._call(call_id)
        kind = signal.get("type")
        async with call.lock(user_id):
            try:
                if kind == "offer":
                    await self._offer(call, user_id, str(signal.get("sdp") or ""))
                elif kind == "candidate":
                    await self._candidate(call, user_id, signal.get("candidate"))
                elif kind == "end-of-candidates":
                    peer = call.peers.get(user_id)
                    if peer is not None:
                        await peer.pc.addIceCandidate(None)
                else:  # the server never offers, so it takes no answer
                    raise MediaSignalError(f"the server's peer takes no {kind!r}")
            except MediaSignalError:
                raise
            except Exception as exc:  # aiortc's errors for bad SDP are of many types
                logger.warning(
                    "relay: %s from user %s in call %s not applied: %s",
                    kind,
                    user_id,
                    call_id,
                    exc,
                    extra={
                        "event": "relay.signal_failed",
                        "call_id": call_id,
                        "user_id": user_id,
                        "type": kind,
                    },
                )
                raise MediaSignalError(f"{kind} not applied: {exc}") from None

    async def user_left(self, call_id: int, user_id: str) -> None:
        call = self._calls.get(call_id)
        peer = call.peers.get(user_id) if call else None
        if call is not None and peer is not None:
            await self._close_peer(call, peer, "left")

    async def close_call(self, call_id: int) -> None:
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        for peer in list(call.peers.values()):
            await self._close_peer(call, peer, "call over")
        logger.info(
            "relay closed call %s",
            call_id,
            extra={"event": "relay.call_closed", "call_id": call_id},
        )

    async def close(self) -> None:
        for call_id in list(self._calls):
            await self.close_call(call_id)
        await self._tasks.stop()

    # ---------------------------------------------------------- negotiation

    async def _offer(self, call: _RelayCall, user_id: str, sdp: str) -> None:
        if "m=" not in sdp:
            raise MediaSignalError("offer: sdp has no media section")
        ufrag = ice_ufrag(sdp)
        peer = call.peers.get(user_id)
        if peer is not None and (
            peer.remote_ufrag != ufrag
            or peer.pc.signalingState != "stable"
            or peer.pc.connectionState in ("failed", "closed")
        ):
            # A new peer connection on the user's side (a rejoin, a reload).
            await self._close_peer(call, peer, "new offer")
            peer = None
        if peer is None:
            peer = self._new_peer(call, user_id)
            peer.remote_ufrag = ufrag
        pc = peer.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in pc.getTransceivers():
            kind = transceiver.kind
            if kind in KINDS and kind not in peer.outgoing and transceiver.sender.track is None:
                track = ForwardTrack(kind)
                peer.outgoing[kind] = track
                pc.addTrack(track)
        self._link(call)
        await pc.setLocalDescription(await pc.createAnswer())
        await self._send(call.call_id, user_id, {"type": "answer", "sdp": pc.localDescription.sdp})
        await self._send(call.call_id, user_id, {"type": "end-of-candidates"})
        logger.info(
            "relay answered user %s in call %s",
            user_id,
            call.call_id,
            extra={
                "event": "relay.answered",
                "call_id": call.call_id,
                "user_id": user_id,
                "kinds": sorted(peer.outgoing),
            },
        )

    async def _candidate(self, call: _RelayCall, user_id: str, wire: Any) -> None:
        peer = call.peers.get(user_id)
        if not isinstance(wire, dict):
            raise MediaSignalError("candidate: missing")
        if peer is None:
            return  # no offer yet, or the peer connection is gone: nothing to add to
        ufrag = wire.get("usernameFragment")
        if ufrag and peer.remote_ufrag and ufrag != peer.remote_ufrag:
            return  # for an earlier peer connection of the user
        text = str(wire.get("candidate") or "")
        if not text:  # a browser's end of candidates
            await peer.pc.addIceCandidate(None)
            return
        candidate = candidate_from_sdp(text.removeprefix("candidate:"))
        candidate.sdpMid = wire.get("sdpMid")
        candidate.sdpMLineIndex = wire.get("sdpMLineIndex")
        await peer.pc.addIceCandidate(candidate)

    def _new_peer(self, call: _RelayCall, user_id: str) -> _Peer:
        # Host candidates only (docs/media.md, *Network*): an explicit empty
        # list, else aiortc adds a public STUN server.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer = _Peer(call.call_id, user_id, pc)
        call.peers[user_id] = peer

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._on_track(call, peer, track)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            self._on_state(call, peer)

        return peer

    # ----------------------------------------------------------- forwarding

    def _on_track(self, call: _RelayCall, peer: _Peer, track: MediaStreamTrack) -> None:
        if peer.retired or track.kind not in KINDS:
            return
        peer.incoming[track.kind] = track
        # Always consume what arrives: aiortc queues decoded frames unboundedly
        # until someone reads them, and the partner may not be there yet.
        drain = call.relay.subscribe(track, buffered=False)
        task = asyncio.get_running_loop().create_task(
            self._drain(drain), name=f"relay-drain-{call.call_id}-{peer.user_id}-{track.kind}"
        )
        peer.tasks.add(task)
        task.add_done_callback(peer.tasks.discard)
        self._link(call)

    @staticmethod
    async def _drain(proxy: MediaStreamTrack) -> None:
        try:
            while True:
                await proxy.recv()
        except MediaStreamError:
            return
        finally:
            proxy.stop()

    def _link(self, call: _RelayCall) -> None:
        """Point every forward track at the partner's current track of its kind."""
        for consumer in call.peers.values():
            producer = next(
                (p for u, p in call.peers.items() if u != consumer.user_id and not p.retired), None
            )
            for kind, forward in consumer.outgoing.items():
                origin = producer.incoming.get(kind) if producer else None
                if origin is None or origin is forward.origin or origin.readyState != "live":
                    continue
                # Unbuffered: a consumer that falls behind skips frames rather
                # than queueing them without bound.
                forward.attach(origin, call.relay.subscribe(origin, buffered=False))
                logger.info(
                    "relay forwards %s of %s to %s in call %s",
                    kind,
                    producer.user_id if producer else None,
                    consumer.user_id,
                    call.call_id,
                    extra={
                        "event": "relay.forwarding",
                        "call_id": call.call_id,
                        "kind": kind,
                        "to": consumer.user_id,
                    },
                )

    # --------------------------------------------------------------- states

    def _on_state(self, call: _RelayCall, peer: _Peer) -> None:
        state = peer.pc.connectionState
        if state == peer.state:
            return
        logger.info(
            "relay peer of user %s in call %s: %s -> %s",
            peer.user_id,
            call.call_id,
            peer.state,
            state,
            extra={
                "event": "relay.peer_state",
                "call_id": call.call_id,
                "user_id": peer.user_id,
                "from": peer.state,
                "to": state,
            },
        )
        peer.state = state
        if peer.retired:
            return
        if state == "connected":
            self._tasks.spawn(
                self._events.media_connected(call.call_id, peer.user_id), "relay-connected"
            )
        elif state in ("failed", "closed"):
            self._tasks.spawn(self._peer_lost(call, peer, state), "relay-lost")

    async def _peer_lost(self, call: _RelayCall, peer: _Peer, state: str) -> None:
        if peer.retired:
            return
        await self._close_peer(call, peer, state)
        await self._events.media_left(call.call_id, peer.user_id)

    async def _close_peer(self, call: _RelayCall, peer: _Peer, why: str) -> None:
        if peer.retired:
            return
        peer.retired = True
        if call.peers.get(peer.user_id) is peer:
            del call.peers[peer.user_id]
        for task in list(peer.tasks):
            task.cancel()
        for forward in peer.outgoing.values():
            forward.stop()
        try:
            await asyncio.wait_for(peer.pc.close(), _CLOSE_TIMEOUT_S)
        except Exception as exc:  # closing must go on for the other peers whatever happens
            logger.warning(
                "relay: closing the peer of user %s in call %s failed: %s",
                peer.user_id,
                call.call_id,
                exc,
                extra={"event": "relay.close_failed", "call_id": call.call_id},
            )
        # aiortc may never end them itself (see the fence): relay workers wait on them.
        for track in peer.incoming.values():
            end_remote_track(track)
        logger.info(
            "relay closed the peer of user %s in call %s (%s)",
            peer.user_id,
            call.call_id,
            why,
            extra={
                "event": "relay.peer_closed",
                "call_id": call.call_id,
                "user_id": peer.user_id,
                "why": why,
                "frames_sent": {k: t.frames for k, t in peer.outgoing.items()},
            },
        )

    # -------------------------------------------------------------- helpers

    def _call(self, call_id: int) -> _RelayCall:
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _RelayCall(call_id)
        return call

    async def _send(self, call_id: int, user_id: str, signal: dict[str, Any]) -> None:
        await self._events.send_signal(call_id, user_id, signal)
