"""The one module that touches aiortc's private names.

aiortc ends a remote track (``aiortc.rtcrtpreceiver.RemoteStreamTrack``) only
when its receiver's decoder thread stops, which never happens if the peer
connection closed before any media arrived; whatever waits on the track
(``MediaRelay``'s workers, our drains) would then wait forever. aiortc has no
public way to end a remote track, so :func:`end_remote_track` puts the
decoder's own end-of-stream mark (``None``) on the track's private frame queue,
``_queue``: the track's ``recv`` then stops the track and raises
``MediaStreamError``, as at the end of a stream.

Every private name used here is pinned by ``tests/unit/test_aiortc_fence.py``:
an upgrade of aiortc that changes them fails those tests, not production, and
the aiortc pin in setup.cfg goes no further than the version they ran on.
"""

from __future__ import annotations

import asyncio

from aiortc.mediastreams import MediaStreamTrack


def end_remote_track(track: MediaStreamTrack) -> None:
    """End a live remote track now; anything else is left as it is."""
    queue = getattr(track, "_queue", None)
    if track.readyState == "live" and isinstance(queue, asyncio.Queue):
        queue.put_nowait(None)
