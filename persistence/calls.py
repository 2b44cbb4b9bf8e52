"""Store contracts for calls and the notifications they produce."""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from persistence.models import (
    ALLOWED_TRANSITIONS,
    CallChanges,
    CallRecord,
    CallState,
    IllegalTransitionError,
    Notification,
)

logger = logging.getLogger(__name__)

#: Decides the change to make to a freshly read call, or ``None`` for none.
Decision = Callable[[CallRecord], CallChanges | None]


@dataclass(frozen=True)
class NewNotification:
    """A notification of a call, stored in the same transaction as a change
    of the call (its ``call_id`` is the call's)."""

    user_id: str
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """One call's change in :meth:`CallStore.update_each` (``update``'s arguments)."""

    call_id: int
    decide: Decision
    cause: str = ""
    #: ``decide`` validated its change against ALLOWED_TRANSITIONS itself
    checked: bool = False


def _decided(
    call_id: int, decide: Decision, before: CallRecord, checked: bool
) -> CallChanges | None:
    """``decide``'s change of ``before``, refused unless it is an edge of
    the state machine (or ``checked``: it checked its steps itself)."""
    changes = decide(before)
    if (
        changes is not None
        and not checked
        and changes.state is not before.state
        and changes.state not in ALLOWED_TRANSITIONS[before.state]
    ):
        raise IllegalTransitionError(f"call {call_id}: {before.state} -> {changes.state}")
    return changes


#: The notifications a change stores with it, made from the call as written
#: (none: an empty sequence).
NoticesOf = Callable[[CallRecord], Sequence[NewNotification]]

#: Compare-and-set attempts before giving up; each attempt re-reads the call,
#: so only a storm of writers on one call could exhaust them.
_CAS_ATTEMPTS = 8


class TooManyOpenCallsError(Exception):
    """A booking refused: the caller already has ``open_max`` calls that are
    not over (the booking quota, counted in the insert's transaction)."""


class CallStore(abc.ABC):
    """Where calls live. The database is the truth about every call.

    Every change goes through :meth:`transition`, a compare-and-set on the
    record's ``version``: two writers that read the same version cannot both
    win, which is what makes timers idempotent across retries and processes.
    """

    def __init__(self) -> None:
        #: The last record this process wrote per call: the next update's
        #: first guess, saving a read (compare-and-set catches a stale one).
        self._recent_writes: dict[int, CallRecord] = {}

    def recent(self, call_id: int) -> CallRecord | None:
        """The call as this process last wrote or was told of it, if it
        still remembers (a guess: compare-and-set catches a stale one)."""
        return self._recent_writes.get(call_id)

    def forget_recent(self, call_id: int) -> None:
        """Another process changed the call: the next read goes to the store."""
        self._recent_writes.pop(call_id, None)

    def _remember(self, call: CallRecord) -> None:
        recent = self._recent_writes
        recent.pop(call.id, None)
        if call.state.is_final:
            return
        if len(recent) >= _RECENT_MAX:
            del recent[next(iter(recent))]  # the oldest
        recent[call.id] = call

    @abc.abstractmethod
    async def create(
        self,
        caller_id: str,
        callee_id: str,
        scheduled_at: datetime,
        opens_at: datetime,
        closes_at: datetime,
        *,
        open_max: int = 0,
        opened: NoticesOf | None = None,
    ) -> CallRecord:
        """Insert a call in state ``scheduled``; with ``open_max``, only if
        the caller has fewer calls than that which are not over (in no final
        state), counted in the same transaction: otherwise raise
        :class:`TooManyOpenCallsError` and store nothing.

        ``opened``: the join window is open already, so the call is inserted
        ``open``, with these notifications in the same transaction (what the
        timer's opening of the window would have stored)."""

    @abc.abstractmethod
    async def get(self, call_id: int) -> CallRecord | None: ...

    @abc.abstractmethod
    async def list_for_user(
        self, user_id: str, limit: int = 100, before: tuple[datetime, int] | None = None
    ) -> list[CallRecord]:
        """The user's calls, newest ``scheduled_at`` first."""

    @abc.abstractmethod
    async def transition(
        self, call: CallRecord, changes: CallChanges, notices: NoticesOf | None = None
    ) -> CallRecord | None:
        """Apply ``changes`` if the stored version is still ``call.version``,
        and store ``notices`` of the updated record in the same transaction.

        Returns the updated record, or ``None`` when somebody else changed the
        call first (the caller re-reads and decides again; nothing stored).
        """

    async def update(
        self,
        call_id: int,
        decide: Decision,
        *,
        cause: str = "",
        known: CallRecord | None = None,
        checked: bool = False,
        told: bool = False,
        notices: NoticesOf | None = None,
    ) -> tuple[CallRecord | None, CallRecord | None]:
        """Read the call, let ``decide`` pick a change, write it with
        compare-and-set, and retry on a lost race.

        ``known`` is a record the caller just read or wrote: the first attempt
        decides on it without a read (a stale one only costs a failed
        compare-and-set). "No change" and an illegal transition are only ever
        concluded on a fresh read.
        ``checked``: ``decide`` validated its change against
        :data:`ALLOWED_TRANSITIONS` itself (a composite of several steps).

        Returns ``(before, after)``: ``after`` is ``None`` when nothing changed
        (``decide`` said no, or the call does not exist). Each transition is
        logged here, once, whoever made it; ``told``: it was decided and
        logged already where users were told of it, so its write is logged
        at DEBUG only (a transition is an INFO line once, not twice).
        ``notices``: notifications of the change, stored with the write that
        wins (:meth:`transition`), made from the record it wrote.
        """
        recent = self._recent_writes
        if known is None:
            known = recent.get(call_id)
        for _ in range(_CAS_ATTEMPTS):
            before = known if known is not None else await self.get(call_id)
            if before is None:
                return None, None
            try:
                changes = _decided(call_id, decide, before, checked)
            except IllegalTransitionError:
                if known is None:
                    raise
                known = None  # decided on a stale guess: decide again on a fresh read
                continue
            if changes is None:
                if known is not None:
                    known = None
                    continue
                return before, None
            known = None
            after = await self.transition(before, changes, notices)
            if after is None:
                recent.pop(call_id, None)
            else:
                self._wrote(before, after, cause, told)
                return before, after
        raise RuntimeError(f"call {call_id}: too many concurrent writers")

    async def get_each(self, call_ids: Sequence[int]) -> dict[int, CallRecord]:
        """The calls of ``call_ids`` that exist, by id (one read where the
        backend can)."""
        found = {}
        for call_id in call_ids:
            call = await self.get(call_id)
            if call is not None:
                found[call_id] = call
        return found

    async def transition_each(
        self, writes: Sequence[tuple[CallRecord, CallChanges]]
    ) -> list[CallRecord | None]:
        """:meth:`transition` of several calls (one write each), in one
        transaction where the backend has them; each compare-and-set wins or
        loses on its own. A failure fails them all (nothing written)."""
        return [await self.transition(call, changes) for call, changes in writes]

    async def update_each(
        self, updates: Sequence[Update], *, told: bool = False
    ) -> list[tuple[CallRecord, CallRecord] | None]:
        """The first attempt of :meth:`update` for several calls at once (a
        group commit): the changes decided on the records this process
        remembers (the others read together, :meth:`get_each`) are written
        together (:meth:`transition_each`). Returns, in the order of
        ``updates``, ``(before, after)`` for each written, and ``None`` for
        each not written: a call that does not exist, no change or an
        illegal edge decided, or a lost compare-and-set; the caller then
        runs ``update`` for it, which concludes. A failure writes nothing
        and raises."""
        results: list[tuple[CallRecord, CallRecord] | None] = [None] * len(updates)
        guessed: list[tuple[int, CallRecord, CallChanges]] = []
        recent = self._recent_writes
        unknown = [request.call_id for request in updates if request.call_id not in recent]
        read = await self.get_each(unknown) if unknown else {}
        for index, request in enumerate(updates):
            known = recent.get(request.call_id) or read.get(request.call_id)
            if known is None:
                continue
            try:
                changes = _decided(request.call_id, request.decide, known, request.checked)
            except IllegalTransitionError:
                continue
            if changes is not None:
                guessed.append((index, known, changes))
        if not guessed:
            return results
        written = await self.transition_each([(known, changes) for _, known, changes in guessed])
        for (index, known, _), after in zip(guessed, written, strict=True):
            if after is None:
                recent.pop(known.id, None)
            else:
                self._wrote(known, after, updates[index].cause, told)
                results[index] = (known, after)
        return results

    def _wrote(self, before: CallRecord, after: CallRecord, cause: str, told: bool) -> None:
        """Remember and log a transition this process wrote."""
        self._remember(after)
        logger.log(
            logging.DEBUG if told else logging.INFO,
            "call %s: %s -> %s",
            after.id,
            before.state.value,
            after.state.value,
            extra={
                "event": "call.transition",
                "call_id": after.id,
                "from": before.state.value,
                "to": after.state.value,
                "cause": cause,
                "reason": after.end_reason.value if after.end_reason else None,
            },
        )

    @abc.abstractmethod
    async def list_unfinished(self) -> list[CallRecord]:
        """Every call not in a final state (timers are re-armed from these)."""

    @abc.abstractmethod
    async def list_due(self, now: datetime) -> list[CallRecord]:
        """Calls with a deadline at or before ``now`` that has not been acted on:
        a window to open, a window to close, a countdown to finish, a limit
        (:func:`persistence.models.is_due`)."""

    @abc.abstractmethod
    async def count_by_state(self) -> dict[CallState, int]: ...


class NotificationStore(abc.ABC):
    """What users find in ``GET /api/notifications``."""

    @abc.abstractmethod
    async def add(
        self, user_id: str, kind: str, call_id: int | None, payload: dict[str, Any]
    ) -> Notification: ...

    @abc.abstractmethod
    async def list_for_user(
        self, user_id: str, limit: int = 50, before_id: int | None = None
    ) -> list[Notification]:
        """Newest (highest id) first, at most ``limit``; with ``before_id`` only
        those with a lower id (the page after one that ended with it)."""


_RECENT_MAX = 4096
