"""Write-behind for call changes that users have already seen.

The process that runs a call decides its presence-driven states and its timed
instants in memory and tells the users first; the database learns of each
change just after, through here. Changes to one call are written in the order
they were made, one write of the call at a time. Different calls' changes
are written in groups, one transaction for all the calls whose changes waited
together (``linger_s``, 20 ms by default: a group commit, which costs the
database one commit instead of one per call). An urgent change (``live``:
after a restart the database must know the call went live, or it would take
the countdown for one cut short by the crash) stops the waiting: it is
written at once, with whatever waited. When several changes of a call
are waiting, they are written as one: the rules are applied in order to the
record and the result is written with one compare-and-set, so a busy
database gets fewer writes, not a longer queue. Each rule is the store's
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
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from persistence.calls import CallStore, Decision, Update
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
    """Ordered, per-call persistence of decisions already acted on, written
    in groups: one transaction for the calls whose changes wait together."""

    def __init__(
        self,
        calls: CallStore,
        written: Written,
        *,
        linger_s: float = 0.02,
        max_writers: int = 2,
        max_group: int = 64,
    ) -> None:
        self._calls = calls
        self._written = written
        #: how long a group waits for more calls' changes before it is
        #: written (nobody waits on these writes but a REST reader, which
        #: hurries them): one commit for several calls, a group commit
        self._linger_s = linger_s
        # Fewer writers than the database pool has connections: REST and
        # first joins still get one, and what waits here joins a group.
        self._max_writers = max_writers
        self._max_group = max_group
        self._queued: dict[int, list[tuple[Decision, str]]] = {}
        self._deferred: dict[int, tuple[Decision, str]] = {}
        #: calls whose changes a writer is writing now (one writer per call)
        self._writing: set[int] = set()
        self._writers: set[asyncio.Task[None]] = set()
        #: a writer is gathering its group: new changes join it
        self._gathering = False
        #: per call with changes queued or being written: done when it has none
        self._done: dict[int, asyncio.Future[None]] = {}
        #: set while somebody flushes, or a group is full: stop lingering
        self._hurry = asyncio.Event()
        self._flushing = 0

    def submit(self, call_id: int, decide: Decision, cause: str, *, urgent: bool = False) -> None:
        """Queue ``decide`` for the call, after everything queued before it.

        ``urgent``: a restart must find it (a call that went live): written
        as soon as a writer is free, with whatever else waits, not after
        the linger."""
        queued = self._queued.setdefault(call_id, [])
        deferred = self._deferred.pop(call_id, None)
        if deferred is not None:
            queued.append(deferred)
        queued.append((decide, cause))
        if call_id not in self._done:
            self._done[call_id] = asyncio.get_running_loop().create_future()
        if urgent or len(self._queued) >= self._max_group:
            self._hurry.set()
        self._start_writer()

    def defer(self, call_id: int, decide: Decision, cause: str) -> None:
        """Keep ``decide`` for the call's next write instead of writing it
        (replacing what was deferred before); lost if no write follows."""
        self._deferred[call_id] = (decide, cause)

    def discard(self, call_id: int) -> None:
        """Forget what was deferred for a call that is over."""
        self._deferred.pop(call_id, None)

    def pending(self) -> int:
        """Calls with writes not yet done (a gauge for operators)."""
        return len(self._done)

    def pending_for(self, call_id: int) -> bool:
        return call_id in self._done

    async def flush(self, call_id: int | None = None) -> None:
        """Wait until the call's (or every call's) queued writes are done;
        writers stop lingering meanwhile."""
        self._flushing += 1
        self._hurry.set()
        try:
            while True:
                if call_id is None:
                    waits = list(self._done.values())
                else:
                    done = self._done.get(call_id)
                    waits = [done] if done is not None else []
                if not waits:
                    return
                await asyncio.gather(*(asyncio.shield(w) for w in waits))
        finally:
            self._flushing -= 1
            if not self._flushing:
                self._hurry.clear()

    def _ready(self) -> list[int]:
        return [call_id for call_id in self._queued if call_id not in self._writing]

    def _start_writer(self) -> None:
        if self._gathering or len(self._writers) >= self._max_writers or not self._ready():
            return
        self._gathering = True
        task = asyncio.get_running_loop().create_task(self._write_group(), name="write-behind")
        self._writers.add(task)
        task.add_done_callback(self._writer_done)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        self._writers.discard(task)
        self._start_writer()  # what was queued meanwhile

    async def _write_group(self) -> None:
        try:
            if self._linger_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger_s):
                        await self._hurry.wait()
        finally:
            self._gathering = False
        if not self._flushing:
            self._hurry.clear()
        group = [(call_id, self._queued.pop(call_id)) for call_id in self._ready()]
        group, rest = group[: self._max_group], group[self._max_group :]
        for call_id, batch in rest:  # the next group's
            self._queued[call_id] = batch
        self._writing.update(call_id for call_id, _ in group)
        self._start_writer()  # the next group gathers while this one writes
        try:
            results = await self._write_all(group)
            for (call_id, batch), (before, after) in zip(group, results, strict=True):
                await self._tell(call_id, batch, before, after)
        finally:
            for call_id, _ in group:
                self._writing.discard(call_id)
                if call_id not in self._queued:
                    done = self._done.pop(call_id, None)
                    if done is not None and not done.done():
                        done.set_result(None)

    async def _write_all(
        self, group: list[tuple[int, list[tuple[Decision, str]]]]
    ) -> list[tuple[CallRecord | None, CallRecord | None]]:
        """Write the group's changes in one transaction, then each that it
        did not write (or all, if it failed) on its own, with retries."""
        updates = [
            Update(call_id, _rule(batch), _causes(batch), checked=len(batch) > 1)
            for call_id, batch in group
        ]
        grouped: list[tuple[CallRecord, CallRecord] | None] = [None] * len(updates)
        if len(updates) > 1:
            try:
                grouped = await self._calls.update_each(updates, told=True)
            except Exception as exc:  # nothing written (the database is away, a deadlock)
                logger.info(
                    "a group of %d call writes failed (%s): writing them one by one",
                    len(updates),
                    exc,
                    extra={"event": "writeback.group_failed", "calls": len(updates)},
                )
        return [
            result if result is not None else await self._write(update)
            for update, result in zip(updates, grouped, strict=True)
        ]

    async def _write(self, update: Update) -> tuple[CallRecord | None, CallRecord | None]:
        """One call's changes on their own (``CallStore.update``), retried."""
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
                        update.call_id,
                        update.decide,
                        cause=update.cause,
                        checked=update.checked,
                        told=True,
                    )
        except Exception:
            logger.exception(
                "could not persist %s of call %s",
                update.cause,
                update.call_id,
                extra={
                    "event": "writeback.failed",
                    "call_id": update.call_id,
                    "cause": update.cause,
                },
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


def _rule(batch: list[tuple[Decision, str]]) -> Decision:
    """The one rule a call's queued changes make (each step checked)."""
    return batch[0][0] if len(batch) == 1 else in_order([rule for rule, _ in batch])


def _causes(batch: list[tuple[Decision, str]]) -> str:
    return ", ".join(cause for _, cause in batch)
