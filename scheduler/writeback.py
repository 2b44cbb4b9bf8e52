"""Write-behind for call changes that users have already seen.

The process that runs a call decides its presence-driven states and its timed
instants in memory and tells the users first; the database learns of each
change just after, through here. Changes to one call are written in the order
they were made, by one worker per call; different calls are written
concurrently. When several changes of a call are waiting (the database is
busy), the worker writes them as one: the rules are applied in order to the
freshly read record and the result is written with one compare-and-set, so a
busy database gets fewer writes, not a longer queue. Each rule is the store's
``decide`` (``presence_state``, ``due_change``…), so a write that finds the
database moved on (a cancel, a takeover) changes nothing and the caller hears
what it found.

A change the database need not have on its own (a presence-driven state:
``open``, ``waiting``, ``connecting``) is *deferred* rather than submitted:
it is not written by itself, but it goes first in the call's next write, so
the database still sees every step of the state machine. The latest deferred
change replaces an earlier one: its callers defer only changes that any
state they apply to reaches directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from persistence.calls import CallStore, Decision
from persistence.models import (
    ALLOWED_TRANSITIONS,
    CallChanges,
    CallRecord,
    IllegalTransitionError,
    apply_changes,
    then,
)

logger = logging.getLogger(__name__)

#: Told what each write found and did: ``(call_id, before, after)``;
#: ``after`` is ``None`` when the rules said no change (both ``None``: the
#: write failed for good).
Written = Callable[[int, CallRecord | None, CallRecord | None], Awaitable[None]]

#: A write that keeps failing (the database is away) is given up after this
#: many attempts; the timers' database sweep then repairs what it can.
_ATTEMPTS = 5


def in_order(rules: list[Decision]) -> Decision:
    """One rule that applies ``rules`` one after the other, each to the record
    the previous ones made, every step an edge of the state machine."""

    def decide(call: CallRecord) -> CallChanges | None:
        combined: CallChanges | None = None
        current = call
        for rule in rules:
            changes = rule(current)
            if changes is None:
                continue
            if (
                changes.state is not current.state
                and changes.state not in ALLOWED_TRANSITIONS[current.state]
            ):
                raise IllegalTransitionError(f"call {call.id}: {current.state} -> {changes.state}")
            combined = changes if combined is None else then(combined, changes)
            current = apply_changes(current, changes)
        return combined

    return decide


class WriteBehind:
    """Ordered, per-call persistence of decisions already acted on."""

    def __init__(self, calls: CallStore, written: Written, max_writers: int = 4) -> None:
        self._calls = calls
        self._written = written
        # Fewer writers than the database pool has connections: REST and
        # first joins still get one, and what waits here coalesces.
        self._writers = asyncio.Semaphore(max_writers)
        self._queued: dict[int, list[tuple[Decision, str]]] = {}
        self._deferred: dict[int, tuple[Decision, str]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}

    def submit(self, call_id: int, decide: Decision, cause: str) -> None:
        """Queue ``decide`` for the call, after everything queued before it."""
        queued = self._queued.setdefault(call_id, [])
        deferred = self._deferred.pop(call_id, None)
        if deferred is not None:
            queued.append(deferred)
        queued.append((decide, cause))
        if call_id not in self._workers:
            self._workers[call_id] = asyncio.get_running_loop().create_task(
                self._work(call_id), name=f"write-behind:{call_id}"
            )

    def defer(self, call_id: int, decide: Decision, cause: str) -> None:
        """Keep ``decide`` for the call's next write instead of writing it
        (replacing what was deferred before); lost if no write follows."""
        self._deferred[call_id] = (decide, cause)

    def discard(self, call_id: int) -> None:
        """Forget what was deferred for a call that is over."""
        self._deferred.pop(call_id, None)

    def pending(self) -> int:
        """Calls with writes not yet done (a gauge for operators)."""
        return len(self._workers)

    def pending_for(self, call_id: int) -> bool:
        return call_id in self._workers

    async def flush(self, call_id: int | None = None) -> None:
        """Wait until the call's (or every call's) queued writes are done."""
        while True:
            if call_id is None:
                workers = list(self._workers.values())
            else:
                worker = self._workers.get(call_id)
                workers = [worker] if worker is not None else []
            if not workers:
                return
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self, call_id: int) -> None:
        try:
            while True:
                async with self._writers:
                    batch = self._queued.pop(call_id, None)
                    if not batch:
                        return
                    before, after = await self._write(call_id, batch)
                await self._tell(call_id, batch, before, after)
        finally:
            del self._workers[call_id]

    async def _write(
        self, call_id: int, batch: list[tuple[Decision, str]]
    ) -> tuple[CallRecord | None, CallRecord | None]:
        decide = batch[0][0] if len(batch) == 1 else in_order([rule for rule, _ in batch])
        cause = _causes(batch)
        before: CallRecord | None = None
        after: CallRecord | None = None
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(_ATTEMPTS),
                wait=wait_exponential(multiplier=0.05, max=2.0),
                reraise=True,
            ):
                with attempt:
                    before, after = await self._calls.update(
                        call_id, decide, cause=cause, checked=len(batch) > 1, told=True
                    )
        except Exception:
            logger.exception(
                "could not persist %s of call %s",
                cause,
                call_id,
                extra={"event": "writeback.failed", "call_id": call_id, "cause": cause},
            )
            return None, None  # nothing known: the database timers repair it
        return before, after

    async def _tell(
        self,
        call_id: int,
        batch: list[tuple[Decision, str]],
        before: CallRecord | None,
        after: CallRecord | None,
    ) -> None:
        try:
            await self._written(call_id, before, after)
        except Exception:
            logger.exception(
                "after persisting %s of call %s",
                _causes(batch),
                call_id,
                extra={"event": "writeback.after_failed", "call_id": call_id, "batch": len(batch)},
            )


def _causes(batch: list[tuple[Decision, str]]) -> str:
    return ", ".join(cause for _, cause in batch)
