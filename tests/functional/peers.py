"""Helpers for the functional tests that need more than ``tests.support``:
clients that timestamp what they receive, aiortc peers negotiated only over
the server's /call signaling, and child-process servers that can be killed."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from signaling.config import Settings
from tests.support import Client, serve_in_child

#: Every wait in these helpers is bounded by this many seconds unless told.
WAIT_S = 10.0


def parse_time(value: str) -> datetime:
    """An ISO 8601 instant of the wire (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TimedClient(Client):
    """A recording /call client that also notes when each event arrived."""

    arrivals: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))

    def _recorder(self, name: str) -> Any:
        record = super()._recorder(name)

        async def timed(data: Any) -> None:
            self.arrivals[name].append(now())
            await record(data)

        return timed


# --------------------------------------------------------------------- SDP


@dataclass(frozen=True)
class SdpCandidate:
    """One ``a=candidate:`` line of a description, as a browser would trickle it."""

    candidate: str  # "candidate:..." like RTCIceCandidate.candidate
    sdp_mid: str | None
    sdp_mline_index: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "sdpMid": self.sdp_mid,
            "sdpMLineIndex": self.sdp_mline_index,
        }


def split_candidates(sdp: str) -> tuple[str, list[SdpCandidate]]:
    """Take the ICE candidates out of an SDP.

    aiortc gathers every candidate before ``setLocalDescription`` returns and
    writes them into the description; a browser would trickle them instead.
    Removing them from the description (with ``a=end-of-candidates``) leaves
    the candidate signals as the only way the partner learns where to connect.
    """
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    kept: list[str] = []
    sections: list[list[str]] = []  # candidate lines per m-section
    mids: list[str | None] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([])
            mids.append(None)
        if line.startswith("a=mid:") and mids:
            mids[-1] = line.removeprefix("a=mid:")
        if line.startswith("a=candidate:") and sections:
            sections[-1].append(line.removeprefix("a="))
            continue
        if line == "a=end-of-candidates":
            continue
        kept.append(line)
    candidates = [
        SdpCandidate(text, mids[index], index)
        for index, section in enumerate(sections)
        for text in section
    ]
    return "\r\n".join(kept) + "\r\n", candidates


# -------------------------------------------------------------------- peers


class RtcPeer:
    """One user's aiortc ``RTCPeerConnection``, negotiated through the server.

    Received ``signal`` events are applied in order by a pump task; local
    descriptions go out as ``offer``/``answer`` without candidates, and each
    candidate follows as a ``candidate`` signal, then ``end-of-candidates``.
    """

    def __init__(
        self,
        client: Client,
        call_id: int,
        partner_id: str,
        ice_servers: list[dict[str, Any]],
        *,
        relay_only: bool = False,
    ) -> None:
        self.client = client
        self.call_id = call_id
        self.partner_id = partner_id
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
        ]
        # An explicit (empty) list: aiortc would otherwise add a public STUN server.
        # relay_only: iceTransportPolicy "relay", only TURN candidates.
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()
        self.remote_tracks: list[MediaStreamTrack] = []
        self.channel: RTCDataChannel | None = None
        self.channel_open = asyncio.Event()
        self.messages: asyncio.Queue[str] = asyncio.Queue()
        self.sent_candidates = 0
        self.received_candidates = 0
        self.received_end_of_candidates = False
        self.received_sdp_candidates = 0  # candidate lines inside received descriptions
        self._local_tracks: list[MediaStreamTrack] = []
        self._handled = 0
        self._pump: asyncio.Task[None] | None = None

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()
            elif self.pc.connectionState in ("failed", "closed"):
                self.failed.set()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.remote_tracks.append(track)

        @self.pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            self._use_channel(channel)
            if channel.readyState == "open":
                self.channel_open.set()

    # --------------------------------------------------------------- public

    def start(self) -> None:
        """Start applying the partner's signals as they arrive."""
        self._pump = asyncio.create_task(self._run_pump())

    async def make_offer(self) -> None:
        """The offerer: a video track and a data channel, so there is media."""
        self._add_video()
        self._use_channel(self.pc.createDataChannel("chat"))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_local_description()

    async def wait_connected(self, within: float = WAIT_S) -> None:
        """Until the peer connection is ``connected``; fails fast if the
        connection fails or the pump dies (with the pump's error)."""
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.connected.wait()),
            asyncio.ensure_future(self.failed.wait()),
        ]
        if self._pump is not None:
            waiters.append(asyncio.ensure_future(asyncio.shield(self._pump)))
        try:
            await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._pump is not None and self._pump.done() and not self._pump.cancelled():
            error = self._pump.exception()
            if error is not None:
                raise AssertionError(f"{self.client.user_id}: signal pump failed") from error
        assert self.pc.connectionState == "connected", (
            f"{self.client.user_id}: connectionState {self.pc.connectionState!r} "
            f"(ice {self.pc.iceConnectionState!r}) after {within} s"
        )

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        for track in self._local_tracks:
            track.stop()
        await asyncio.wait_for(self.pc.close(), WAIT_S)

    # -------------------------------------------------------------- private

    def _add_video(self) -> None:
        track = VideoStreamTrack()
        self._local_tracks.append(track)
        self.pc.addTrack(track)

    def _use_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel

        @channel.on("open")
        def on_open() -> None:
            self.channel_open.set()

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            self.messages.put_nowait(message if isinstance(message, str) else message.decode())

    async def _emit_signal(self, payload: dict[str, Any]) -> None:
        ack = await self.client.emit("signal", {"call_id": self.call_id, **payload})
        assert ack == {"ok": True}, f"{self.client.user_id}: signal {payload['type']}: {ack}"

    async def _send_local_description(self) -> None:
        description = self.pc.localDescription
        sdp, candidates = split_candidates(description.sdp)
        assert candidates, f"{self.client.user_id}: aiortc gathered no ICE candidate"
        await self._emit_signal({"type": description.type, "sdp": sdp})
        for candidate in candidates:
            await self._emit_signal({"type": "candidate", "candidate": candidate.to_wire()})
            self.sent_candidates += 1
        await self._emit_signal({"type": "end-of-candidates"})

    async def _run_pump(self) -> None:
        while True:
            # Generous: the pump lives as long as the call; the test bounds it.
            signals = await self.client.wait_for("signal", self._handled + 1, timeout=60)
            message = signals[self._handled]
            self._handled += 1
            await self._apply(message)

    async def _apply(self, message: dict[str, Any]) -> None:
        assert message["call_id"] == self.call_id, message
        assert message["from"] == self.partner_id, message
        kind = message["type"]
        if kind in ("offer", "answer"):
            sdp = message["sdp"]
            self.received_sdp_candidates += sdp.count("a=candidate:")
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            if kind == "offer":
                self._add_video()  # the answerer sends video back
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self._send_local_description()
        elif kind == "candidate":
            wire = message["candidate"]
            candidate = candidate_from_sdp(wire["candidate"].removeprefix("candidate:"))
            candidate.sdpMid = wire.get("sdpMid")
            candidate.sdpMLineIndex = wire.get("sdpMLineIndex")
            await self.pc.addIceCandidate(candidate)
            self.received_candidates += 1
        elif kind == "end-of-candidates":
            await self.pc.addIceCandidate(None)
            self.received_end_of_candidates = True
        else:
            raise AssertionError(f"unexpected signal type {kind!r}")


# ------------------------------------------------------------ child servers


@dataclass
class ChildServer:
    """A ``python -m signaling serve`` child process (see ``serve_in_child``)."""

    proc: subprocess.Popen[bytes]
    logs: str = ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no cleanup, as in a crash."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.read_logs()

    def read_logs(self) -> str:
        """Everything the child wrote to stderr so far (once it has exited)."""
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.logs += self.proc.stderr.read().decode(errors="replace")
        return self.logs


@contextlib.asynccontextmanager
async def child_server(settings: Settings, env: dict[str, str]) -> AsyncIterator[ChildServer]:
    """``serve_in_child`` without blocking the event loop while the child
    starts or stops; the child's log is printed when it is gone (pytest shows
    it with a failing test)."""
    with contextlib.ExitStack() as stack:
        proc = await asyncio.to_thread(stack.enter_context, serve_in_child(settings, env))
        child = ChildServer(proc)
        try:
            yield child
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait, 10)
            child.read_logs()
            print(f"--- server pid {proc.pid} exited {proc.returncode} ---\n{child.logs[-8000:]}")
