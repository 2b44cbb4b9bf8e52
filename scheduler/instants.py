"""Loop timers for the instants inside a call: the end of the countdown and the
time limit.

APScheduler keeps the wall-clock schedule (window opening and closing, the
sweep), whose jobs re-read the database. The instants a user watches, ``live``
and ``ended``, are a few seconds to a minute away and known to the process
that runs the call, so they ride on the event loop's own timer heap: one
``call_at`` each, no job store, no executor hop, nothing between the deadline
and the emit but the callback itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from persistence.models import utcnow
from scheduler.ports import LatenessObserver

logger = logging.getLogger(__name__)

Instant = Callable[[], Awaitable[None]]


def _no_observer(kind: str, seconds: float) -> None:
    return None


class InstantTimers:
    """At most one pending instant per call; arming again replaces it."""

    def __init__(self, observe_lateness: LatenessObserver = _no_observer) -> None:
        self._observe_lateness = observe_lateness
        self._handles: dict[int, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()

    def arm(self, call_id: int, at: datetime, kind: str, action: Instant) -> None:
        """Run ``action`` at ``at`` (at once if it has passed)."""
        self.cancel(call_id)
        loop = asyncio.get_running_loop()
        delay = max((at - utcnow()).total_seconds(), 0.0)
        self._handles[call_id] = loop.call_at(
            loop.time() + delay, self._start, call_id, at, kind, action
        )

    def cancel(self, call_id: int) -> None:
        handle = self._handles.pop(call_id, None)
        if handle is not None:
            handle.cancel()

    def holds(self, call_id: int) -> bool:
        """An instant of the call is pending here."""
        return call_id in self._handles

    def _start(self, call_id: int, at: datetime, kind: str, action: Instant) -> None:
        early_s = (at - utcnow()).total_seconds()
        if early_s > 0:
            # The loop's clock is not the wall clock, and a handle counts as
            # due within the clock's resolution: never act before the instant.
            loop = asyncio.get_running_loop()
            self._handles[call_id] = loop.call_at(
                loop.time() + early_s, self._start, call_id, at, kind, action
            )
            return
        self._handles.pop(call_id, None)
        self._observe_lateness(kind, -early_s)
        task = asyncio.get_running_loop().create_task(self._run(call_id, kind, action))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, call_id: int, kind: str, action: Instant) -> None:
        try:
            await action()
        except Exception:
            # The database backup timer (CallTimers) still covers the call.
            logger.exception(
                "%s instant of call %s failed",
                kind,
                call_id,
                extra={"event": "instants.failed", "call_id": call_id, "kind": kind},
            )

    async def close(self) -> None:
        """Cancel what is pending and wait for what is running."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
