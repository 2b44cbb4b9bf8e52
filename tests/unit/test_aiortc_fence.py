"""Guards of ``rtc_bridge/aiortc_fence.py``, the only user of aiortc's private
names (tests/unit/test_fences.py guards the python-socketio and
python-engineio fences the same way).

``end_remote_track`` relies on a remote track's private frame queue,
``RemoteStreamTrack._queue``, and on ``None`` in it ending the track. After an
aiortc upgrade that changes either, these tests fail and say what to re-read,
instead of relay workers that wait forever on the tracks of a peer connection
closed before its media started. The relay itself is tested end to end in
tests/functional/test_relay.py.
"""

from __future__ import annotations

import asyncio
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from aiortc.rtcrtpreceiver import RemoteStreamTrack, RTCRtpReceiver

from rtc_bridge.aiortc_fence import end_remote_track


def flat(function: Callable[..., Any]) -> str:
    """The source with every run of whitespace made one space."""
    return " ".join(textwrap.dedent(inspect.getsource(function)).split())


def test_a_remote_track_reads_its_frames_from_its_queue() -> None:
    track = RemoteStreamTrack(kind="video")
    assert isinstance(track._queue, asyncio.Queue)
    recv = flat(RemoteStreamTrack.recv)
    assert "frame = await self._queue.get()" in recv
    assert "if frame is None: self.stop() raise MediaStreamError" in recv


def test_the_receiver_decodes_into_the_tracks_queue() -> None:
    """The decoder writes into the same queue, so the mark comes after the
    frames already decoded, and the decoder's own end is this same ``None``."""
    assert "self._track._queue," in flat(RTCRtpReceiver.receive)


async def test_ending_wakes_a_waiting_reader_and_ends_the_track() -> None:
    track = RemoteStreamTrack(kind="video")
    waiting = asyncio.get_running_loop().create_task(track.recv())
    await asyncio.sleep(0)
    assert not waiting.done()
    end_remote_track(track)
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)
    assert track.readyState == "ended"
    end_remote_track(track)  # ended: nothing more is queued
    assert track._queue.empty()


def test_tracks_without_the_queue_are_left_alone() -> None:
    local = AudioStreamTrack()  # a local track: silence
    end_remote_track(local)
    assert local.readyState == "live"
