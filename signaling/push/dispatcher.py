"""The push queue: notices go in without waiting, a few workers send them.

Timers and joins only :meth:`PushDispatcher.offer` (``put_nowait`` on a
bounded queue), so a push service that hangs or answers slowly holds a worker,
never the loop's timers. A worker expands a notice into one delivery per
subscription of the user; each delivery first claims its persisted key
(``kind:call_id:endpoint_hash``), so a notice announced twice (a timer that
fired twice, two processes) reaches each browser once. A small periodic
task of the dispatcher deletes the keys once their join window is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson

from persistence.calls import CallStore
from persistence.models import FINAL_STATES, CallRecord, CallState, utcnow
from persistence.push import PushStore, PushSubscription
from signaling.metrics import Metrics
from signaling.push.sender import PushAnswer
from signaling.wire import call_soon_wire

logger = logging.getLogger(__name__)

#: The first retry's delay without ``Retry-After``; it doubles up to the cap.
RETRY_BASE_S = 1.0
RETRY_CAP_S = 60.0
#: How often the delivery keys are pruned, and the slack added to their
#: lifetime (the processes' clocks, which stamp the keys, differ a little).
PRUNE_EVERY_S = 300.0
PRUNE_SLACK = timedelta(minutes=1)


class Sender(Protocol):
    async def send(
        self, subscription: PushSubscription, payload: bytes, *, ttl: int, urgency: str
    ) -> PushAnswer: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell one user on every browser they subscribed."""

    kind: str
    call_id: int
    user_id: str
    payload: dict[str, Any]
    #: when the join window closes: the push's TTL and the last retry
    until: datetime

    def key(self, subscription: PushSubscription) -> str:
        return f"{self.kind}:{self.call_id}:{subscription.endpoint_hash}"


@dataclass(frozen=True, slots=True)
class Delivery:
    notice: Notice
    subscription: PushSubscription
    attempt: int = 0


def call_notice(kind: str, call: CallRecord, user_id: str) -> Notice:
    return Notice(
        kind, call.id, user_id, {"kind": kind, **call_soon_wire(call, user_id)}, call.closes_at
    )


#: A call in these states has nobody left to tell (a cancelled call pushes nothing more).
_OVER = FINAL_STATES | {CallState.LIVE}


class PushDispatcher:
    """The :class:`scheduler.ports.PushNotices` of the server."""

    def __init__(
        self,
        *,
        subscriptions: PushStore,
        calls: CallStore,
        sender: Sender,
        workers: int,
        queue_max: int,
        on_error: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        keep_deliveries: timedelta | None = None,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        """``keep_deliveries`` is the join window's length: delivery keys
        older than it (and :data:`PRUNE_SLACK`) are pruned every
        ``prune_every_s``; ``None`` keeps them all. Without ``metrics`` the
        counts go to a registry nobody scrapes."""
        self._subscriptions = subscriptions
        self._calls = calls
        self._sender = sender
        self._queue: asyncio.Queue[Notice | Delivery] = asyncio.Queue(queue_max)
        self._on_error = on_error
        self._metrics = metrics if metrics is not None else Metrics()
        # Read at scrape time: nothing to update on the hot path.
        self._metrics.push_queue_depth.set_function(self._queue.qsize)
        self._keep_deliveries = keep_deliveries
        #: jobs queued, running or waiting to be retried; 0 is idle
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._retries: set[asyncio.TimerHandle] = set()
        self._workers = [
            asyncio.create_task(self._work(), name=f"push-worker-{n}") for n in range(workers)
        ]
        self._tasks = list(self._workers)
        if keep_deliveries is not None:
            self._tasks.append(
                asyncio.create_task(self._prune_every(prune_every_s), name="push-pruner")
            )

    async def close(self) -> None:
        for handle in self._retries:
            handle.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._sender.close()

    async def drain(self) -> None:
        """Wait until nothing is queued, sending or waiting for a retry."""
        await self._idle.wait()

    async def prune(self) -> int:
        """Delete the delivery keys older than the join window (a notice is
        never sent after its window, so nothing will look for them again);
        how many went. A no-op without ``keep_deliveries``."""
        if self._keep_deliveries is None:
            return 0
        before = utcnow() - self._keep_deliveries - PRUNE_SLACK
        pruned = await self._subscriptions.prune_deliveries(before)
        if pruned:
            logger.info(
                "push delivery keys pruned",
                extra={"event": "push.pruned", "pruned": pruned},
            )
        return pruned

    async def _prune_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.prune()
            except Exception:
                # A database hiccup: the next round deletes what this one left.
                self._on_error()
                logger.exception("push pruning failed", extra={"event": "push.prune_failed"})

    # ------------------------------------------------------------ PushNotices

    def window_opened(self, call: CallRecord) -> None:
        for user_id in (call.caller_id, call.callee_id):
            self.offer(call_notice("call_soon", call, user_id))

    def partner_waiting(self, call: CallRecord, absent_user_id: str) -> None:
        self.offer(call_notice("partner_waiting", call, absent_user_id))

    # ---------------------------------------------------------------- queue

    def offer(self, job: Notice | Delivery) -> bool:
        """Queue ``job`` without waiting; a full queue drops it (logged)."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            notice = job if isinstance(job, Notice) else job.notice
            self._report(
                "dropped",
                logging.WARNING,
                "push queue full: job dropped",
                {"call_id": notice.call_id, "kind": notice.kind},
            )
            return False
        self._busy(+1)
        return True

    def _busy(self, delta: int) -> None:
        self._pending += delta
        if self._pending:
            self._idle.clear()
        else:
            self._idle.set()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                if isinstance(job, Notice):
                    await self._expand(job)
                else:
                    await self._deliver(job)
            except Exception:
                self._on_error()
                self._report(
                    "failed",
                    logging.ERROR,
                    "push job failed",
                    {"job": repr(job)[:200]},
                    exc_info=True,
                )
            finally:
                self._busy(-1)

    async def _expand(self, notice: Notice) -> None:
        for subscription in await self._subscriptions.list_for_user(notice.user_id):
            self.offer(Delivery(notice, subscription))

    async def _still_due(self, notice: Notice, now: datetime) -> bool:
        if now >= notice.until:
            return False
        call = await self._calls.get(notice.call_id)
        return call is not None and call.state not in _OVER

    async def _deliver(self, delivery: Delivery) -> None:
        notice, subscription = delivery.notice, delivery.subscription
        now = utcnow()
        if not await self._still_due(notice, now):
            return
        if delivery.attempt == 0 and not await self._subscriptions.claim_delivery(
            notice.key(subscription)
        ):
            return  # sent already, by this process or another
        ttl = max(0, int((notice.until - now).total_seconds()))
        answer = await self._sender.send(
            subscription, orjson.dumps(notice.payload), ttl=ttl, urgency="high"
        )
        fields = {
            "call_id": notice.call_id,
            "kind": notice.kind,
            "subscription_id": subscription.id,
            "status": answer.status,
            "attempt": delivery.attempt,
        }
        status = answer.status
        if status is not None and 200 <= status < 300:
            self._report("sent", logging.INFO, "push sent", fields)
        elif status in (404, 410):
            # The browser unsubscribed or the subscription expired: forget it.
            await self._subscriptions.discard(subscription.id)
            self._report("gone", logging.INFO, "push subscription gone", fields)
        elif status is None or status == 429 or status >= 500:
            self._retry(delivery, answer, fields)
        else:
            self._report("refused", logging.WARNING, "push refused", fields)

    def _report(
        self,
        outcome: str,
        level: int,
        message: str,
        fields: dict[str, Any],
        *,
        exc_info: bool = False,
    ) -> None:
        """A job's end: its ``push.<outcome>`` log event and its count, so
        the two never disagree."""
        self._metrics.pushes_by_outcome[outcome].inc()
        logger.log(level, message, extra={"event": f"push.{outcome}", **fields}, exc_info=exc_info)

    def _retry(self, delivery: Delivery, answer: PushAnswer, fields: dict[str, Any]) -> None:
        delay = answer.retry_after
        if delay is None:
            backoff = min(RETRY_CAP_S, RETRY_BASE_S * 2**delivery.attempt)
            delay = backoff * random.uniform(0.5, 1.0)  # spread a burst of retries
        if (delivery.notice.until - utcnow()).total_seconds() <= delay:
            self._report("expired", logging.INFO, "push given up", fields)
            return
        self._report("retry", logging.INFO, "push retried", {"delay_s": delay, **fields})
        again = replace(delivery, attempt=delivery.attempt + 1)
        self._busy(+1)
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._retries.discard(handle)
            self.offer(again)
            self._busy(-1)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._retries.add(handle)
