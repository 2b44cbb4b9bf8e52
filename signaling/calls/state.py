"""What the call side shares: its rules, the ports it talks through, the
presence rule of the state machine, and :class:`HeldCalls`, the one small
state object (the calls this process runs, their clocks, the write-behind)
that the call machine, the REST service, the media events and the
scheduler's notifier all read."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from persistence.calls import CallStore, Decision
from persistence.models import PRE_LIVE_STATES, CallChanges, CallRecord, CallState, apply_changes
from scheduler.instants import InstantTimers
from scheduler.jobs import COUNTDOWN_INSTANTS, due_change
from scheduler.ports import LatenessObserver
from scheduler.writeback import WriteBehind, Written
from signaling.calls.connections import JoinedConnections

logger = logging.getLogger(__name__)

#: The pre-live states that presence alone decides.
PRESENCE_STATES = frozenset({CallState.OPEN, CallState.WAITING, CallState.CONNECTING})


class Outbox(Protocol):
    """How the call side reaches sockets (implemented over python-socketio)."""

    async def to_sid(self, sid: str, event: str, payload: dict[str, Any]) -> None: ...

    async def to_user(
        self, user_id: str, event: str, payload: dict[str, Any], skip: Iterable[str] = ()
    ) -> None:
        """Every connection of the user to the /call namespace but ``skip``."""


class ClockClaims(Protocol):
    """Which live server process runs a call's in-call clock (several
    processes only; implemented over Redis)."""

    def claim(self, call_id: int, until: datetime) -> None:
        """This process runs the call's clock until ``until`` (fire and forget)."""

    def release(self, call_id: int) -> None:
        """This process no longer runs it."""

    async def held_elsewhere(self, call_id: int) -> bool:
        """Another process that is still alive runs it."""


@dataclass(frozen=True)
class CallRules:
    countdown_s: float = 5.0
    limit_s: float = 60.0
    notify_before_s: float = 300.0
    join_grace_s: float = 600.0
    signal_queue_max: int = 64
    #: bytes of signals one user may have held for absent partners, every call together
    held_bytes_max: int = 0
    ice_servers: tuple[dict[str, Any], ...] = ()
    #: the join ack's ice_servers for one user (TURN credentials); None: ice_servers as is
    ice_servers_for: Callable[[str], list[dict[str, Any]]] | None = None
    #: how long the write-behind gathers calls' changes into one transaction
    write_linger_s: float = 0.02


def to_millisecond(at: datetime) -> datetime:
    """``at`` as the wire states it (ISO 8601 to the millisecond): the clock
    meets the very instant the users were told."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def due_as(kind: str, at: datetime) -> Decision:
    """The write-behind rule of a timed instant met at ``at``: the change
    :func:`scheduler.jobs.due_change` makes, if it is that instant's."""

    def decide(call: CallRecord) -> CallChanges | None:
        due = due_change(call, at)
        return due[1] if due is not None and due[0] == kind else None

    return decide


def presence_state(call: CallRecord, present: int) -> CallChanges | None:
    """The pre-live state that ``present`` users in the call mean, if it differs.

    Leaving ``countdown`` this way cancels it: its instants are cleared and a
    stale live timer finds nothing to do.
    """
    if call.state not in PRE_LIVE_STATES:
        return None
    target = (CallState.OPEN, CallState.WAITING, CallState.CONNECTING)[min(present, 2)]
    if target is call.state:
        return None
    return CallChanges(state=target, clear=COUNTDOWN_INSTANTS)


def log_decided(call: CallRecord, state: CallState, cause: str) -> None:
    """The one INFO line of a transition decided in memory (users told at once)."""
    logger.info(
        "call %s: %s -> %s (sent)",
        call.id,
        call.state.value,
        state.value,
        extra={
            "event": "call.decided",
            "call_id": call.id,
            "from": call.state.value,
            "to": state.value,
            "cause": cause,
        },
    )


class HeldCalls:
    """The calls this process runs, as it last decided them (ahead of the
    database); which of them have their in-call clock here; and the
    write-behind that persists each decision just after users were told.

    ``written`` is told what each write-behind found (the call machine arms
    the database timer on it, and ends a call the database says is over).
    """

    def __init__(
        self,
        calls: CallStore,
        connections: JoinedConnections,
        written: Written,
        *,
        claims: ClockClaims | None = None,
        observe_lateness: LatenessObserver,
        write_linger_s: float = 0.02,
    ) -> None:
        self._calls = calls
        self._connections = connections
        self._claims = claims
        #: the calls this process runs, as it last decided them
        self._records: dict[int, CallRecord] = {}
        #: calls whose countdown or live clock runs here, until the database has the end
        self._clocked: set[int] = set()
        self._instants = InstantTimers(observe_lateness)
        self.writer = WriteBehind(calls, written, linger_s=write_linger_s)

    async def close(self) -> None:
        """Stop the clocks and let queued writes land (shut-down)."""
        await self._instants.close()
        await self.writer.flush()

    # ------------------------------------------------------------- records

    def get(self, call_id: int) -> CallRecord | None:
        return self._records.get(call_id)

    def holds(self, call_id: int) -> bool:
        return call_id in self._records

    def hold(self, call: CallRecord) -> None:
        self._records[call.id] = call

    def let_go(self, call_id: int) -> None:
        self._records.pop(call_id, None)

    async def view(self, call_id: int) -> CallRecord | None:
        """The call as this process last decided it, else as it last wrote or
        heard of it, else as stored: a user's first join usually costs no
        read, which would queue behind every other call's writes."""
        held = self._records.get(call_id)
        if held is None:
            held = self._calls.recent(call_id)
        return held if held is not None else await self._calls.get(call_id)

    def as_told(self, stored: CallRecord) -> CallRecord:
        """The stored call with the presence-driven state this process holds
        for it and did not write (presence states are written only as part
        of a later change)."""
        held = self._records.get(stored.id)
        if (
            held is not None
            and held.state is not stored.state
            and held.state in PRESENCE_STATES
            and stored.state in PRESENCE_STATES
        ):
            return replace(stored, state=held.state)
        return stored

    def decide_presence(self, call: CallRecord, present: int, cause: str) -> CallRecord:
        """Apply the pre-live state ``present`` users mean, in memory now and
        in the database behind; returns the call as held."""
        self._records[call.id] = call
        changes = presence_state(call, present)
        if changes is None:
            return call
        after = apply_changes(call, changes)
        self._records[call.id] = after
        if call.state is CallState.COUNTDOWN:
            # Its live_at and ends_at are stored: the database must hear
            # that the countdown was cut short, or its timers would act on it.
            self.stop_clock(call.id)
            self.writer.submit(call.id, lambda c: presence_state(c, present), cause)
        else:
            # Presence alone: not worth a write of its own (a restart loses
            # presence anyway); the call's next write carries it.
            self.writer.defer(call.id, lambda c: presence_state(c, present), cause)
        log_decided(call, after.state, cause)
        return after

    # -------------------------------------------------------------- clocks

    def clocked(self, call_id: int) -> bool:
        return call_id in self._clocked

    def run_clock(
        self, call_id: int, at: datetime, kind: str, action: Callable[[], Awaitable[None]]
    ) -> None:
        """Meet the call's next in-call instant on this process's loop."""

        async def meet() -> None:
            try:
                await action()
            except Exception:
                # Let go, so the database timers (the sweep) apply the instant.
                self.stop_clock(call_id)
                self._records.pop(call_id, None)
                raise

        self._instants.arm(call_id, at, kind, meet)
        self._clocked.add(call_id)
        if self._claims is not None:
            held = self._records.get(call_id)
            until = held.ends_at if held is not None and held.ends_at else at
            self._claims.claim(call_id, until)

    def stop_clock(self, call_id: int) -> None:
        self._instants.cancel(call_id)
        self._clocked.discard(call_id)
        if self._claims is not None:
            self._claims.release(call_id)

    def hang_up_clock(self, call_id: int) -> None:
        """The call ends here now: no instant left, but the clock counts as
        run here until the database has the end."""
        self._instants.cancel(call_id)
        self._clocked.add(call_id)

    def clock_over(self, call_id: int, *, final: bool) -> None:
        """A write landed: a final call's clock is over; so is the clock of a
        call this process no longer holds and has no instant for."""
        if final:
            self._clocked.discard(call_id)
            if self._claims is not None:
                self._claims.release(call_id)
        if call_id not in self._records and not self._instants.holds(call_id):
            self._clocked.discard(call_id)

    async def runs_clock(self, call_id: int) -> bool:
        """A live process (this one, or another by its claim) meets the
        call's in-call instants, or this one still has its writes queued."""
        if call_id in self._clocked or self.writer.pending_for(call_id):
            return True
        return self._claims is not None and await self._claims.held_elsewhere(call_id)

    async def held_elsewhere(self, call_id: int) -> bool:
        return self._claims is not None and await self._claims.held_elsewhere(call_id)

    def forget(self, call_id: int) -> None:
        """Drop this process's hold on a call that is over."""
        self._connections.drop_call(call_id)
        self._records.pop(call_id, None)
        self._instants.cancel(call_id)
        self.writer.discard(call_id)
