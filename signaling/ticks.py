"""Deadlines of many connections on few loop timers."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)

#: How late ``Ticks`` may run a deadline, in seconds.
TICK_S = 0.05


class Ticks(Generic[T]):
    """Items each due at an instant, kept by the tick (``resolution`` seconds
    of the loop's clock) that the instant falls in: one loop timer per tick
    that has items runs ``due(item)`` for each at the tick's end, so an item is
    handled at most ``resolution`` late.

    For per-connection deadlines (the next ping, a token's expiry): a loop
    timer per connection (uvloop's timer, its handle, a copy of the context)
    is about 0.5 KB, an entry here a dict slot; and deadlines cluster, so a
    tick serves many.
    """

    def __init__(self, due: Callable[[T], None], resolution: float = TICK_S) -> None:
        self._due = due
        self._resolution = resolution
        self._ticks: dict[int, dict[T, None]] = {}

    def add(self, item: T, delay: float) -> int:
        """Run ``due(item)`` ``delay`` seconds from now (up to one tick later);
        returns the tick, for ``discard``."""
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + max(0.0, delay)) / self._resolution)
        items = self._ticks.get(tick)
        if items is None:
            items = self._ticks[tick] = {}
            loop.call_at(tick * self._resolution, self._run, tick)
        items[item] = None
        return tick

    def discard(self, item: T, tick: int) -> None:
        """Forget ``item``'s deadline (``tick`` is what ``add`` returned)."""
        items = self._ticks.get(tick)
        if items is not None:
            items.pop(item, None)

    def _run(self, tick: int) -> None:
        for item in self._ticks.pop(tick, {}):
            try:
                self._due(item)
            except Exception:  # one item's failure is not the others'
                logger.exception("a deadline failed", extra={"event": "ticks.failed"})
