"""aiortc client peers for the relay backend: each sends a flat-coloured video
track (and silence) to the server and reads back its partner's colour; plus a
census of this process's UDP sockets (``/proc``) to show none is leaked."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc import AudioStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.functional.peers import RtcPeer
from tests.support import Client

#: YUV of the colours the two users send (red and blue).
RED = (81, 90, 240)
BLUE = (41, 240, 110)
#: How far a decoded (VP8, twice) colour may be from the one sent, per plane.
COLOUR_TOLERANCE = 24


class ColourTrack(VideoStreamTrack):
    """Video frames of one flat colour, at aiortc's 30 fps clock."""

    def __init__(self, yuv: tuple[int, int, int], width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.yuv = yuv
        self.width, self.height = width, height

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, value in zip(frame.planes, self.yuv, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


def frame_colour(frame: Any) -> tuple[int, int, int]:
    """The average YUV of the middle row of each plane of a decoded frame."""
    values = []
    for plane in frame.planes[:3]:
        data = bytes(plane)
        row = plane.height // 2
        line = data[row * plane.line_size : row * plane.line_size + plane.width]
        values.append(round(sum(line) / len(line)))
    return values[0], values[1], values[2]


def close_to(colour: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(colour, expected, strict=True))


@dataclass
class FrameLog:
    """Every frame a remote track delivered: arrival (monotonic) and colour."""

    arrivals: list[float] = field(default_factory=list)
    colours: list[tuple[int, int, int]] = field(default_factory=list)
    ended: bool = False


class RelayPeer(RtcPeer):
    """A user's peer connection to the relay (its partner in signaling is
    ``"server"``): sends one colour, records the video frames it receives."""

    def __init__(
        self,
        client: Client,
        call_id: int,
        colour: tuple[int, int, int],
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(client, call_id, "server", ice_servers or [])
        self.colour = colour
        self.video = FrameLog()
        self.audio_frames = 0
        self._readers: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def read(track: MediaStreamTrack) -> None:
            self._readers.append(asyncio.ensure_future(self._read(track)))

    def _add_video(self) -> None:
        for track in (ColourTrack(self.colour), AudioStreamTrack()):
            self._local_tracks.append(track)
            self.pc.addTrack(track)

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.video.arrivals.append(time.monotonic())
                    self.video.colours.append(frame_colour(frame))
                else:
                    self.audio_frames += 1
        except MediaStreamError:
            if track.kind == "video":
                self.video.ended = True

    async def wait_frames(self, count: int, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while len(self.video.colours) < count:
            assert time.monotonic() < deadline, (
                f"{self.client.user_id}: {len(self.video.colours)} video frames "
                f"after {within} s (state {self.pc.connectionState})"
            )
            await asyncio.sleep(0.02)

    def server_ports(self) -> set[int]:
        """The UDP ports of the server's candidates, from its answer."""
        ports: set[int] = set()
        for signal in self.client.events["signal"]:
            if signal.get("type") == "answer":
                ports |= candidate_ports(signal["sdp"])
        return ports

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await super().close()


_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ", re.MULTILINE | re.IGNORECASE)


def candidate_ports(sdp: str) -> set[int]:
    return {int(port) for port in _CANDIDATE.findall(sdp)}


# ------------------------------------------------------------- UDP census


def udp_sockets() -> dict[int, int]:
    """inode -> local port of every UDP socket this process has open."""
    owned: set[int] = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:["):
                owned.add(int(target[8:-1]))
    sockets: dict[int, int] = {}
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                inode = int(fields[9])
                if inode in owned:
                    sockets[inode] = int(fields[1].rsplit(":", 1)[1], 16)
    return sockets


def open_udp_ports() -> set[int]:
    return set(udp_sockets().values())


async def until_closed(ports: set[int], within: float = 5.0) -> None:
    """Wait until none of ``ports`` is open in this process any more."""
    deadline = time.monotonic() + within
    while ports & open_udp_ports():
        assert time.monotonic() < deadline, f"UDP ports still open: {ports & open_udp_ports()}"
        await asyncio.sleep(0.05)
