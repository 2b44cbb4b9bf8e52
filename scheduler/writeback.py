"""Write-behind for call changes that users have already seen.

The process that runs a call decides its presence-driven states and its timed
instants in memory and tells the users first; the database learns of each
change just after, through here. Changes to one call are written in the order
they were made (a chain per call); different calls are written concurrently.
Each write is the store's compare-and-set ``update`` with a ``decide`` rule
applied to the freshly read record, so a write that finds the database moved
on (a cancel, a takeover) changes nothing and the caller hears what it found.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from persistence.calls import CallStore, Decision
from persistence.models import CallRecord

logger = logging.getLogger(__name__)

#: Told what each write found and did: ``(call_id, before, after)``;
#: ``after`` is ``None`` when the rule said no change.
Written = Callable[[int, CallRecord | None, CallRecord | None], Awaitable[None]]

#: A write that keeps failing (the database is away) is given up after this
#: many attempts; the timers' database sweep then repairs what it can.
_ATTEMPTS = 5


class WriteBehind:
    """Ordered, per-call persistence of decisions already acted on."""

    def __init__(self, calls: CallStore, written: Written) -> None:
        self._calls = calls
        self._written = written
        self._tails: dict[int, asyncio.Task[None]] = {}

    def submit(self, call_id: int, decide: Decision, cause: str) -> None:
        """Queue ``decide`` for the call, after everything queued before it."""
        previous = self._tails.get(call_id)
        task = asyncio.get_running_loop().create_task(
            self._write(previous, call_id, decide, cause), name=f"write-behind:{call_id}"
        )
        self._tails[call_id] = task
        task.add_done_callback(lambda done: self._settled(call_id, done))

    def pending(self) -> int:
        """Calls with writes not yet done (a gauge for operators)."""
        return len(self._tails)

    def pending_for(self, call_id: int) -> bool:
        return call_id in self._tails

    async def flush(self, call_id: int | None = None) -> None:
        """Wait until the call's (or every call's) queued writes are done."""
        tasks = (
            list(self._tails.values())
            if call_id is None
            else [t for t in (self._tails.get(call_id),) if t is not None]
        )
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _settled(self, call_id: int, task: asyncio.Task[None]) -> None:
        if self._tails.get(call_id) is task:
            del self._tails[call_id]

    async def _write(
        self,
        previous: asyncio.Task[None] | None,
        call_id: int,
        decide: Decision,
        cause: str,
    ) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(_ATTEMPTS),
                wait=wait_exponential(multiplier=0.05, max=2.0),
                reraise=True,
            ):
                with attempt:
                    before, after = await self._calls.update(call_id, decide, cause=cause)
        except Exception:
            logger.exception(
                "could not persist %s of call %s",
                cause,
                call_id,
                extra={"event": "writeback.failed", "call_id": call_id, "cause": cause},
            )
            before = after = None  # nothing known: the database timers repair it
        try:
            await self._written(call_id, before, after)
        except Exception:
            logger.exception(
                "after persisting %s of call %s",
                cause,
                call_id,
                extra={"event": "writeback.after_failed", "call_id": call_id},
            )
