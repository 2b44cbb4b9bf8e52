"""APScheduler-driven call timers whose truth lives in the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from persistence.calls import CallStore, NewNotification
from persistence.models import CallChanges, CallRecord, CallState, utcnow
from scheduler.jobs import IN_CALL_STATES, due_change, next_deadline
from scheduler.ports import ChangeAnnouncer, LatenessObserver, NoPush, Notifier, PushNotices

logger = logging.getLogger(__name__)


def _no_observer(kind: str, seconds: float) -> None:
    return None


#: How soon a timer deferred to a running clock looks again.
_RECHECK = timedelta(seconds=1.0)


class CallTimers:
    """One in-memory APScheduler job per unfinished call, at its next deadline.

    A job does not carry what to do: it re-reads the call and applies whatever
    :func:`scheduler.jobs.due_change` says is due, with compare-and-set. So a
    job that fires twice, late, early, after a restart or on several
    processes at once has its effect exactly once. Jobs are re-armed from the
    database at start and by a periodic sweep, which also catches anything a
    lost job would have missed.
    """

    def __init__(
        self,
        calls: CallStore,
        notifier: Notifier,
        *,
        sweep_interval_s: float = 30.0,
        takeover_s: float = 0.25,
        observe_lateness: LatenessObserver = _no_observer,
        announce: ChangeAnnouncer | None = None,
        push: PushNotices | None = None,
    ) -> None:
        self._calls = calls
        self._push: PushNotices = push if push is not None else NoPush()
        self._notifier = notifier
        self._sweep_interval_s = sweep_interval_s
        self._takeover = timedelta(seconds=takeover_s)
        self._observe_lateness = observe_lateness
        self._announce_change = announce
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        #: when each call's job runs, to skip re-adding an identical job
        #: (a presence change keeps the deadline; add_job is not free)
        self._armed: dict[int, datetime] = {}

    async def start(self) -> int:
        """Start the scheduler and re-arm every unfinished call; returns how many."""
        self._scheduler.start()
        unfinished = await self._calls.list_unfinished()
        for call in unfinished:
            self.arm(call, changed=False)
        self._scheduler.add_job(
            self.sweep,
            "interval",
            seconds=self._sweep_interval_s,
            id="sweep",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        logger.info(
            "timers re-armed for %d calls",
            len(unfinished),
            extra={"event": "timers.started", "calls": len(unfinished)},
        )
        return len(unfinished)

    async def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        # Let the scheduler's cancelled wake-up callbacks run before the loop goes.
        await asyncio.sleep(0)

    def arm(self, call: CallRecord, *, changed: bool = True) -> None:
        """(Re)schedule the call's job at its next deadline, or drop it.

        ``changed``: this process just changed the call, so the other
        processes (if any) are told to arm it too.
        """
        deadline = next_deadline(call)
        # The others need to hear of a change that moves their job: a presence
        # change inside the window (same closes_at) does not.
        if (
            changed
            and self._announce_change is not None
            and (
                deadline is None
                or call.state in IN_CALL_STATES
                or self._armed.get(call.id) != deadline
            )
        ):
            self._announce_change(call)
        if deadline is None:
            if self._armed.pop(call.id, None) is not None:
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(f"call:{call.id}")
            return
        run_at = deadline
        if call.state in IN_CALL_STATES:
            if changed:
                # This process runs the call's clock: a job here could only
                # take over from itself. The others arm theirs (announced).
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(f"call:{call.id}")
                self._armed.pop(call.id, None)
                return
            # Another process meets this instant on its own clock; this job
            # is the takeover if that process is gone.
            run_at = deadline + self._takeover
        self._schedule(call.id, run_at, deadline)

    def _schedule(self, call_id: int, run_at: datetime, deadline: datetime | None) -> None:
        if self._armed.get(call_id) == run_at:
            return
        self._armed[call_id] = run_at
        self._scheduler.add_job(
            self.fire,
            "date",
            run_date=run_at,
            args=[call_id, deadline],
            id=f"call:{call_id}",
            replace_existing=True,
            misfire_grace_time=None,  # late is better than never: the record decides
            coalesce=True,
        )

    async def fire(self, call_id: int, deadline: datetime | None = None) -> CallRecord | None:
        """Apply what is due to the call now; returns the call as it stands.

        A call whose in-call clock runs on a live process (this one or
        another) is left to it: this timer only looks again later.
        """
        self._armed.pop(call_id, None)  # a job that ran is gone from the scheduler
        if await self._notifier.runs_clock(call_id):
            self._schedule(call_id, utcnow() + _RECHECK, deadline)
            return None
        current: CallRecord | None = None
        changed = False
        try:
            while True:
                kind, written = await self._apply_due(call_id, current)
                if kind is None or written is None:
                    current = written or current
                    break
                current = written
                changed = True
                await self._announce(kind, current)
                if deadline is not None:
                    self._observe_lateness(kind, (utcnow() - deadline).total_seconds())
                    deadline = None  # only the first effect was the one scheduled
                if due_change(current, utcnow()) is None:
                    break  # what we just wrote is the latest: nothing more is due
        except Exception:
            # A failing job must not stop the scheduler; the sweep retries it.
            logger.exception(
                "timer for call %s failed",
                call_id,
                extra={"event": "timers.failed", "call_id": call_id},
            )
            return None
        if current is not None:
            self.arm(current, changed=changed)
        return current

    def window_notices(self, call: CallRecord) -> Sequence[NewNotification]:
        """What a call's opening stores (a call booked inside its window is
        inserted ``open`` with these: ``CallStore.create``'s ``opened``)."""
        return self._notifier.call_soon_notices(call)

    async def opened(self, call: CallRecord) -> None:
        """A call booked inside its window, stored ``open`` with
        :meth:`window_notices`: tell its users, as the timer would have when
        opening it, and arm its job."""
        try:
            await self._announce("open", call)
        except Exception:
            # The booking stands: the users read the stored notification.
            logger.exception(
                "announcing the window of call %s failed",
                call.id,
                extra={"event": "timers.failed", "call_id": call.id},
            )
        self.arm(call)

    def heard(self, call_id: int, state: CallState, deadline: datetime | None) -> None:
        """Another process changed the call and announced its state and next
        deadline: arm this process's job from that, with no read."""
        self._calls.forget_recent(call_id)  # this process's guess is stale now
        if deadline is None:
            if self._armed.pop(call_id, None) is not None:
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(f"call:{call_id}")
            return
        run_at = deadline + self._takeover if state in IN_CALL_STATES else deadline
        self._schedule(call_id, run_at, deadline)

    async def _apply_due(
        self, call_id: int, known: CallRecord | None
    ) -> tuple[str | None, CallRecord | None]:
        now = utcnow()
        kinds: list[str] = []

        def decide(call: CallRecord) -> CallChanges | None:
            due = due_change(call, now)
            if due is None:
                return None
            kinds.append(due[0])  # on a lost race the last decision is the one written
            return due[1]

        def notices(call: CallRecord) -> Sequence[NewNotification]:
            # The window's notifications are stored in the transaction that opens it.
            return self.window_notices(call) if kinds[-1] == "open" else ()

        before, after = await self._calls.update(
            call_id, decide, cause="timer", known=known, notices=notices
        )
        if after is None:
            return None, before
        return kinds[-1], after

    async def sweep(self) -> int:
        """Fire every call whose deadline has passed; returns how many were due."""
        due = await self._calls.list_due(utcnow())
        for call in due:
            await self.fire(call.id, next_deadline(call))
        if due:
            logger.info(
                "sweep found %d overdue calls",
                len(due),
                extra={"event": "timers.sweep", "due": len(due)},
            )
        return len(due)

    async def _announce(self, kind: str, call: CallRecord) -> None:
        if kind == "open":
            # Only queued here: the push workers send it off this timer's path.
            self._push.window_opened(call)
            await self._notifier.call_soon(call)
        elif call.state in (CallState.ENDED, CallState.MISSED):
            await self._notifier.call_ended(call)


def window_for(
    scheduled_at: datetime, notify_before_s: float, join_grace_s: float
) -> tuple[datetime, datetime]:
    """When a call's join window opens and closes."""
    return (
        scheduled_at - timedelta(seconds=notify_before_s),
        scheduled_at + timedelta(seconds=join_grace_s),
    )
