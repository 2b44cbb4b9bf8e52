"""The call orchestrator: presence, roles, relay and the presence-driven
transitions of the call state machine. No socket in here: it talks to clients
through an :class:`Outbox`, so tests drive it directly."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from persistence.calls import CallStore, Decision
from persistence.models import (
    FINAL_STATES,
    PRE_LIVE_STATES,
    CallChanges,
    CallRecord,
    CallState,
    EndReason,
    apply_changes,
    as_utc,
    iso,
    utcnow,
)
from persistence.presence import PresenceStore
from persistence.questions import QuestionStore
from rtc_bridge.base import MediaBackend
from rtc_bridge.errors import MediaSignalError, MediaUnavailableError
from scheduler.instants import InstantTimers
from scheduler.jobs import COUNTDOWN_INSTANTS, due_change
from scheduler.ports import NoPush, PushNotices
from scheduler.service import CallTimers, window_for
from scheduler.writeback import WriteBehind
from signaling.calls.schemas import Signal
from signaling.errors import ApiError, conflict, forbidden, invalid, not_found
from signaling.metrics import Metrics
from signaling.quotas import Quotas

logger = logging.getLogger(__name__)


#: Stores a new call given its window (opens_at, closes_at); see CallService.schedule.
CreateCall = Callable[[datetime, datetime], Awaitable[CallRecord]]


class Outbox(Protocol):
    """How the service reaches sockets (implemented over python-socketio)."""

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


@dataclass(slots=True)
class Joined:
    """A connection that joined a call (the hot path's only lookup)."""

    call_id: int
    user_id: str
    partner_id: str


class JoinedConnections:
    """This process's connections that joined a call, by connection and by
    (call, user): the relay finds a local partner without asking presence."""

    def __init__(self) -> None:
        self._by_sid: dict[str, Joined] = {}
        self._by_call: dict[int, dict[str, str]] = {}

    def get(self, sid: str) -> Joined | None:
        return self._by_sid.get(sid)

    def add(self, sid: str, joined: Joined) -> None:
        self._by_sid[sid] = joined
        self._by_call.setdefault(joined.call_id, {})[joined.user_id] = sid

    def remove(self, sid: str) -> Joined | None:
        joined = self._by_sid.pop(sid, None)
        if joined is not None:
            users = self._by_call.get(joined.call_id)
            if users is not None and users.get(joined.user_id) == sid:
                del users[joined.user_id]
                if not users:
                    del self._by_call[joined.call_id]
        return joined

    def sid_of(self, call_id: int, user_id: str) -> str | None:
        users = self._by_call.get(call_id)
        return users.get(user_id) if users is not None else None

    def drop_call(self, call_id: int) -> None:
        for sid in self._by_call.pop(call_id, {}).values():
            self._by_sid.pop(sid, None)


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


class CallService:
    """Everything a call does between two users, behind the REST routes and
    the /call namespace; also the scheduler's :class:`Notifier`.

    The process where a call's users are holds the call in memory and decides
    its presence-driven states and timed instants there: every event a user
    sees (``partner_joined``, ``countdown``, ``live``, ``ended``) is sent from
    that state at once, and the change is written to the database just after
    (:class:`WriteBehind`). The in-call instants run on the loop's own timers
    (:class:`InstantTimers`); the database timers (:class:`CallTimers`) keep
    the wall-clock schedule and take a call over when no live process runs it.
    """

    def __init__(
        self,
        *,
        calls: CallStore,
        presence: PresenceStore,
        questions: QuestionStore,
        media: MediaBackend,
        outbox: Outbox,
        metrics: Metrics,
        rules: CallRules,
        claims: ClockClaims | None = None,
        quotas: Quotas | None = None,
        push: PushNotices | None = None,
    ) -> None:
        self._calls = calls
        self._push: PushNotices = push if push is not None else NoPush()
        self._quotas = quotas
        self._presence = presence
        self._questions = questions
        self._media = media
        self._outbox = outbox
        self._metrics = metrics
        self._claims = claims
        self.rules = rules
        self._joined = JoinedConnections()
        #: every connection's user, filled by the namespace; explains errors
        self.users_by_sid: dict[str, str] = {}
        #: the calls this process runs, as it last decided them (ahead of the database)
        self._held: dict[int, CallRecord] = {}
        #: calls whose countdown or live clock runs here, until the database has the end
        self._clocked: set[int] = set()
        self._instants = InstantTimers(metrics.observe_lateness)
        self._writer = WriteBehind(calls, self._written)
        self.timers: CallTimers | None = None  # set once by the app (it needs us as notifier)
        media.bind(self)

    async def close(self) -> None:
        """Stop the clocks and let queued writes land (shut-down)."""
        await self._instants.close()
        await self._writer.flush()

    async def flush(self, call_id: int | None = None) -> None:
        """Wait until what was decided for the call (or all) is in the database."""
        await self._writer.flush(call_id)

    # ----------------------------------------------------------------- REST

    async def schedule(
        self,
        caller_id: str,
        partner_id: str,
        scheduled_at: datetime,
        *,
        create: CreateCall | None = None,
    ) -> CallRecord:
        """Validate and book a call, then arm its timer.

        ``create`` replaces the plain insert when the call is born together
        with something else in one transaction (a special gift): it gets the
        window and must return the stored call.
        """
        if partner_id == caller_id:
            raise invalid("partner_id: you cannot call yourself")
        scheduled_at = as_utc(scheduled_at)
        now = utcnow()
        if scheduled_at <= now:
            raise invalid("scheduled_at: must be in the future")
        if scheduled_at > now + timedelta(days=366):
            raise invalid("scheduled_at: at most a year ahead")
        if self._quotas is not None:
            await self._quotas.check_booking(caller_id, self._calls.count_open_booked)
        opens_at, closes_at = window_for(
            scheduled_at, self.rules.notify_before_s, self.rules.join_grace_s
        )
        if create is None:
            call = await self._calls.create(
                caller_id, partner_id, scheduled_at, opens_at, closes_at
            )
        else:
            call = await create(opens_at, closes_at)
        logger.info(
            "call %s scheduled",
            call.id,
            extra={"event": "call.scheduled", "call_id": call.id, "caller": caller_id},
        )
        if opens_at <= now:
            # The window is already open: open it now rather than at the next tick.
            call = await self._fire(call.id) or call
        else:
            self._arm(call)
        return call

    async def list_calls(
        self, user_id: str, limit: int = 100, before: tuple[datetime, int] | None = None
    ) -> list[CallRecord]:
        await self._writer.flush()  # REST readers see what users were told
        calls = await self._calls.list_for_user(user_id, limit, before)
        return [self._as_told(call) for call in calls]

    async def get_call(self, user_id: str, call_id: int) -> CallRecord:
        await self._writer.flush(call_id)
        call = await self._calls.get(call_id)
        if call is None or not call.has_participant(user_id):
            raise not_found()  # REST does not reveal other people's calls
        return self._as_told(call)

    def _as_told(self, stored: CallRecord) -> CallRecord:
        """The stored call with the presence-driven state this process holds
        for it and did not write (presence states are written only as part
        of a later change)."""
        held = self._held.get(stored.id)
        if (
            held is not None
            and held.state is not stored.state
            and held.state in _PRESENCE_STATES
            and stored.state in _PRESENCE_STATES
        ):
            return replace(stored, state=held.state)
        return stored

    async def cancel(self, user_id: str, call_id: int) -> CallRecord:
        await self.get_call(user_id, call_id)
        now = utcnow()

        def decide(call: CallRecord) -> CallChanges | None:
            if call.state is CallState.SCHEDULED or call.state in PRE_LIVE_STATES:
                return CallChanges(
                    state=CallState.CANCELLED, ended_at=now, end_reason=EndReason.CANCELLED
                )
            return None

        before, after = await self._calls.update(call_id, decide, cause=f"cancel by {user_id}")
        if after is None:
            assert before is not None
            if before.state is CallState.LIVE:
                raise conflict("the call is live: leave it to hang up")
            raise ApiError("ended", f"the call is already {before.state.value}")
        self._arm(after)
        await self.call_ended(after)
        return after

    # ------------------------------------------------------------ /call events

    async def join(self, sid: str, user_id: str, call_id: int) -> dict[str, Any]:
        call = await self._participant_call(user_id, call_id)
        if call.state is CallState.SCHEDULED and utcnow() < call.opens_at:
            raise ApiError("too_early", f"the join window opens at {iso(call.opens_at)}")
        if call.id not in self._held:
            call = await self._catch_up(call)
        self._raise_if_over(call)
        # Before entering presence: a media server that fails leaves nothing changed.
        try:
            media_extras = await self._media.join_extras(call_id, user_id)
        except MediaUnavailableError as exc:
            raise ApiError("unavailable", str(exc)) from None

        previous_call = self._joined.get(sid)
        if previous_call is not None and previous_call.call_id != call_id:
            # Before taking this call's lock: holding one call's lock while
            # waiting for another's could deadlock with a connection crossing
            # the other way.
            await self._depart(sid, previous_call, "left")
        async with self._presence.lock(call_id):
            call = self._held.get(call_id, call)
            partner_id = call.partner_of(user_id)
            replaced = await self._presence.enter(call_id, user_id, sid)
            if replaced is not None:
                await self._replace(replaced, call_id)
            self._joined.add(sid, Joined(call_id, user_id, partner_id))
            members = await self._presence.members(call_id)
            partner_sid = members.get(partner_id)
            # A (re)joining user means a new negotiation: nobody is connected yet.
            await self._presence.reset_connected(call_id)
            call = self._presence_change(call, len(members), f"join {user_id}")
            if call.state is CallState.LIVE:
                await self._adopt_live(call)
            if partner_sid is not None:
                # With a media server both peers offer to it; else the waiting one answers.
                role = "offerer" if self._media.terminates_peers else "answerer"
                await self._outbox.to_sid(
                    partner_sid, "partner_joined", {"call_id": call_id, "role": role}
                )
            # Delivered before the ack, in order, so nothing sent later overtakes them.
            for queued in await self._presence.release(call_id, user_id):
                await self._outbox.to_sid(sid, "signal", queued)

        if partner_sid is None and partner_id not in self.users_by_sid.values():
            # Not even connected (on this process): their browser may be closed.
            self._push.partner_waiting(call, partner_id)
        logger.info(
            "user %s joined call %s",
            user_id,
            call_id,
            extra={
                "event": "call.join",
                "call_id": call_id,
                "user_id": user_id,
                "partner_present": partner_sid is not None,
                "replaced": replaced is not None,
            },
        )
        ack: dict[str, Any] = {
            "ok": True,
            "call": call.to_wire(),
            "role": "offerer" if partner_sid is not None else "waiting",
            "partner_present": partner_sid is not None,
            "ice_servers": (
                self.rules.ice_servers_for(user_id)
                if self.rules.ice_servers_for is not None
                else list(self.rules.ice_servers)
            ),
            "countdown_s": self.rules.countdown_s,
            "limit_s": self.rules.limit_s,
        }
        if call.state is CallState.LIVE:
            ack["ends_at"] = iso(call.ends_at)
        ack.update(media_extras)
        return ack

    async def relay(self, sid: str, signal: Signal) -> None:
        """The hot path: no database; a partner on this process is found in
        memory, one elsewhere through presence."""
        joined = self._joined.get(sid)
        if joined is None or joined.call_id != signal.call_id:
            raise await self._not_joined_error(sid, signal.call_id)
        if self._quotas is not None:
            self._quotas.check_signal(sid)
        message: dict[str, Any] = {
            "call_id": signal.call_id,
            "from": joined.user_id,
            "type": signal.type,
        }
        if signal.sdp is not None:
            message["sdp"] = signal.sdp
        if signal.candidate is not None:
            message["candidate"] = signal.candidate.model_dump(exclude_unset=True)
        if self._media.terminates_peers:
            try:
                await self._media.on_signal(signal.call_id, joined.user_id, message)
            except MediaSignalError as exc:
                raise invalid(str(exc)) from None
            self._metrics.signals_by_type[signal.type].inc()
            return
        partner_sid = self._joined.sid_of(signal.call_id, joined.partner_id)
        if partner_sid is None:
            members = await self._presence.members(signal.call_id)
            if members.get(joined.user_id) != sid:
                # Replaced or gone on another process, or the call ended there.
                self._joined.remove(sid)
                raise await self._not_joined_error(sid, signal.call_id)
            partner_sid = members.get(joined.partner_id)
        if partner_sid is None:
            await self._hold(signal.call_id, joined.partner_id, message)
        else:
            await self._outbox.to_sid(partner_sid, "signal", message)
        self._metrics.signals_by_type[signal.type].inc()

    async def report_connected(self, sid: str, user_id: str, call_id: int) -> None:
        joined = self._joined.get(sid)
        if joined is None or joined.call_id != call_id:
            raise await self._not_joined_error(sid, call_id)
        await self._mark_connected(call_id, user_id)

    async def _mark_connected(self, call_id: int, user_id: str) -> None:
        """Start the countdown once every user in the call is connected."""
        async with self._presence.lock(call_id):
            connected = await self._presence.mark_connected(call_id, user_id)
            members = await self._presence.members(call_id)
            if len(members) < 2 or not connected.issuperset(members):
                return
            call = await self._view(call_id)
            if call is None or call.state not in _PRESENCE_STATES:
                return
            live_at = to_millisecond(utcnow() + timedelta(seconds=self.rules.countdown_s))
            ends_at = live_at + timedelta(seconds=self.rules.limit_s)
            changes = CallChanges(state=CallState.COUNTDOWN, live_at=live_at, ends_at=ends_at)
            self._held[call_id] = apply_changes(call, changes)
            self._run_clock(call_id, live_at, "live", lambda: self._go_live(call_id, live_at))
            payload = {
                "call_id": call_id,
                "seconds": self.rules.countdown_s,
                "live_at": iso(live_at),
            }
            for member_sid in members.values():
                await self._outbox.to_sid(member_sid, "countdown", payload)
            # live_at and ends_at must survive a restart: written right after,
            # in one write with the presence that leads there (presence is
            # written only with such a change, and the partner's join may have
            # been decided on another process).
            present = len(members)
            self._writer.submit(call_id, lambda c: presence_state(c, present), "both present")
            self._writer.submit(
                call_id,
                lambda c: changes if c.state is CallState.CONNECTING else None,
                "both connected",
            )
            self._log_held(call, CallState.COUNTDOWN, "both connected")

    async def _go_live(self, call_id: int, live_at: datetime) -> None:
        """The countdown's instant: ``live`` from memory, then the database."""
        call = self._held.get(call_id)
        if call is None or call.state is not CallState.COUNTDOWN or call.live_at != live_at:
            return  # cancelled or restarted meanwhile
        assert call.ends_at is not None  # a countdown always carries both instants
        members = await self._presence.members(call_id)
        if len(members) < 2:
            # A drop on another process; a local one cancels the clock itself.
            self._stop_clock(call_id)
            self._presence_change(call, len(members), "a user left during the countdown")
            return
        ends_at = call.ends_at
        self._held[call_id] = apply_changes(
            call, CallChanges(state=CallState.LIVE, started_at=live_at)
        )
        self._run_clock(call_id, ends_at, "ended", lambda: self._end_on_time(call_id, ends_at))
        question = await self._questions.random()
        payload = {
            "call_id": call_id,
            "ends_at": iso(ends_at),
            "question": question.to_wire() if question else None,
        }
        for member_sid in members.values():
            await self._outbox.to_sid(member_sid, "live", payload)
        self._writer.submit(
            call_id,
            lambda c: (
                CallChanges(state=CallState.LIVE, started_at=c.live_at)
                if c.state is CallState.COUNTDOWN
                else None
            ),
            "countdown over",
        )
        self._log_held(call, CallState.LIVE, "countdown over")

    async def _end_on_time(self, call_id: int, ends_at: datetime) -> None:
        """The limit: ``ended`` from memory, then the database."""
        call = self._held.get(call_id)
        if call is None or call.state is not CallState.LIVE or call.ends_at != ends_at:
            return
        now = max(utcnow(), ends_at)  # the rule's view: the limit has come
        ended = apply_changes(
            call,
            CallChanges(state=CallState.ENDED, ended_at=now, end_reason=EndReason.TIME_LIMIT),
        )
        self._writer.submit(call_id, due_as("ended", now), "time limit")
        await self._finish(ended)
        self._log_held(call, CallState.ENDED, "time limit")

    async def leave(self, sid: str, user_id: str, call_id: int) -> None:
        joined = self._joined.get(sid)
        if joined is None or joined.call_id != call_id:
            raise await self._not_joined_error(sid, call_id)
        await self._depart(sid, joined, "left")

    async def disconnected(self, sid: str) -> None:
        joined = self._joined.get(sid)
        if joined is not None:
            await self._depart(sid, joined, "disconnected")

    # --------------------------------------------- MediaEvents (rtc_bridge)

    async def send_signal(self, call_id: int, user_id: str, signal: dict[str, Any]) -> None:
        sid = self._joined.sid_of(call_id, user_id)
        if sid is None:
            sid = (await self._presence.members(call_id)).get(user_id)
        if sid is not None:
            await self._outbox.to_sid(
                sid, "signal", {**signal, "call_id": call_id, "from": "server"}
            )

    async def media_connected(self, call_id: int, user_id: str) -> None:
        if user_id in await self._presence.members(call_id):
            await self._mark_connected(call_id, user_id)

    async def media_left(self, call_id: int, user_id: str) -> None:
        """The user's media dropped while their socket stayed: before live the
        countdown is cancelled until everyone is connected again."""
        async with self._presence.lock(call_id):
            await self._presence.reset_connected(call_id)
            members = await self._presence.members(call_id)
            call = await self._view(call_id)
            if call is not None:
                self._presence_change(call, len(members), f"media of {user_id} left")

    # ------------------------------------------------- Notifier (the scheduler)

    async def call_soon(self, call: CallRecord) -> None:
        await self._media.open_call(call.id, (call.caller_id, call.callee_id))
        for user_id in (call.caller_id, call.callee_id):
            await self._outbox.to_user(
                user_id,
                "call_soon",
                {
                    "call_id": call.id,
                    "scheduled_at": iso(call.scheduled_at),
                    "partner_id": call.partner_of(user_id),
                },
            )

    async def call_ended(self, call: CallRecord) -> None:
        await self._finish(call)

    async def runs_clock(self, call_id: int) -> bool:
        if call_id in self._clocked or self._writer.pending_for(call_id):
            return True
        return self._claims is not None and await self._claims.held_elsewhere(call_id)

    def forget(self, call_id: int) -> None:
        """Drop this process's hold on a call that is over."""
        self._joined.drop_call(call_id)
        self._held.pop(call_id, None)
        self._instants.cancel(call_id)
        self._writer.discard(call_id)

    # --------------------------------------------------------------- helpers

    async def _view(self, call_id: int) -> CallRecord | None:
        """The call as this process last decided it, else as it last wrote or
        heard of it, else as stored: a user's first join usually costs no
        read, which would queue behind every other call's writes."""
        held = self._held.get(call_id)
        if held is None:
            held = self._calls.recent(call_id)
        return held if held is not None else await self._calls.get(call_id)

    def _presence_change(self, call: CallRecord, present: int, cause: str) -> CallRecord:
        """Apply the pre-live state ``present`` users mean, in memory now and
        in the database behind; returns the call as held."""
        self._held[call.id] = call
        changes = presence_state(call, present)
        if changes is None:
            return call
        after = apply_changes(call, changes)
        self._held[call.id] = after
        if call.state is CallState.COUNTDOWN:
            # Its live_at and ends_at are stored: the database must hear
            # that the countdown was cut short, or its timers would act on it.
            self._stop_clock(call.id)
            self._writer.submit(call.id, lambda c: presence_state(c, present), cause)
        else:
            # Presence alone: not worth a write of its own (a restart loses
            # presence anyway); the call's next write carries it.
            self._writer.defer(call.id, lambda c: presence_state(c, present), cause)
        self._log_held(call, after.state, cause)
        return after

    async def _catch_up(self, call: CallRecord) -> CallRecord:
        """A call this process does not run: apply what is due before a join."""
        now = utcnow()
        if call.state is CallState.COUNTDOWN and call.live_at is not None and call.live_at <= now:
            # Its countdown ran out where it was running (that process may be
            # gone before writing it): its users were told `live`, and the
            # instants stand. Only a database timer that meets it with nobody
            # back in it cuts it short.
            _, after = await self._calls.update(
                call.id,
                lambda c: (
                    CallChanges(state=CallState.LIVE, started_at=c.live_at)
                    if c.state is CallState.COUNTDOWN
                    else None
                ),
                cause="joined after the countdown ran out",
            )
            if after is not None:
                self._arm(after)
            call = after or await self._calls.get(call.id) or call
        if due_change(call, now) is not None:
            call = await self._fire(call.id) or call  # the timers are behind
        return call

    async def _adopt_live(self, call: CallRecord) -> None:
        """A user (re)joined a live call that no live process runs (after a
        restart or a takeover): its end runs on this process's clock."""
        if call.id in self._clocked or call.ends_at is None:
            return
        if self._claims is not None and await self._claims.held_elsewhere(call.id):
            if self.timers is not None:
                self.timers.arm(call, changed=False)  # a takeover, should that one be dead
            return
        ends_at = call.ends_at
        self._run_clock(call.id, ends_at, "ended", lambda: self._end_on_time(call.id, ends_at))

    def _run_clock(
        self, call_id: int, at: datetime, kind: str, action: Callable[[], Awaitable[None]]
    ) -> None:
        async def meet() -> None:
            try:
                await action()
            except Exception:
                # Let go, so the database timers (the sweep) apply the instant.
                self._stop_clock(call_id)
                self._held.pop(call_id, None)
                raise

        self._instants.arm(call_id, at, kind, meet)
        self._clocked.add(call_id)
        if self._claims is not None:
            held = self._held.get(call_id)
            until = held.ends_at if held is not None and held.ends_at else at
            self._claims.claim(call_id, until)

    def _stop_clock(self, call_id: int) -> None:
        self._instants.cancel(call_id)
        self._clocked.discard(call_id)
        if self._claims is not None:
            self._claims.release(call_id)

    async def _written(
        self, call_id: int, before: CallRecord | None, after: CallRecord | None
    ) -> None:
        """What a write-behind found: arm the database timer on what was
        written; a call the database says is over elsewhere ends here too."""
        if after is not None:
            self._arm(after)
            if after.state.is_final:
                self._clocked.discard(call_id)
                if self._claims is not None:
                    self._claims.release(call_id)
        elif before is not None and before.state.is_final and call_id in self._held:
            await self._finish(before)
        if call_id not in self._held and not self._instants.holds(call_id):
            self._clocked.discard(call_id)

    async def _finish(self, call: CallRecord) -> None:
        """The call is over: tell every connection of both users, once each,
        the ones in the call first; then let go of it."""
        reason = call.end_reason.value if call.end_reason else EndReason.SERVER.value
        payload = {"call_id": call.id, "reason": reason}
        members = await self._presence.members(call.id)
        for member_sid in members.values():
            await self._outbox.to_sid(member_sid, "ended", payload)
        for user_id in (call.caller_id, call.callee_id):
            await self._outbox.to_user(user_id, "ended", payload, skip=members.values())
        self.forget(call.id)
        await self._presence.clear(call.id, (call.caller_id, call.callee_id))
        await self._media.close_call(call.id)

    def _log_held(self, call: CallRecord, state: CallState, cause: str) -> None:
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

    async def _participant_call(self, user_id: str, call_id: int) -> CallRecord:
        call = await self._view(call_id)
        if call is None:
            raise not_found()
        if not call.has_participant(user_id):
            raise forbidden()
        return call

    def _raise_if_over(self, call: CallRecord) -> None:
        if call.state in FINAL_STATES:
            raise ApiError("ended", f"the call is {call.state.value}")
        if call.state is CallState.LIVE and call.ends_at and call.ends_at <= utcnow():
            raise ApiError("ended", "the call reached its time limit")

    async def _not_joined_error(self, sid: str, call_id: int) -> ApiError:
        """Why a connection may not act on a call it has not joined (cold path)."""
        user_id = self._user_of(sid)
        call = await self._view(call_id)
        if call is None:
            return not_found()
        if user_id is None or not call.has_participant(user_id):
            return forbidden()
        if call.state in FINAL_STATES:
            return ApiError("ended", f"the call is {call.state.value}")
        return conflict("join the call first")

    def _user_of(self, sid: str) -> str | None:
        joined = self._joined.get(sid)
        return joined.user_id if joined else self.users_by_sid.get(sid)

    async def _hold(self, call_id: int, recipient: str, message: dict[str, Any]) -> None:
        """Keep a signal for a partner who is away (cold path: check the call)."""
        call = await self._view(call_id)
        if call is None or call.state in FINAL_STATES:
            self.forget(call_id)
            raise ApiError("ended", "the call is over")
        limit = self.rules.signal_queue_max
        if not await self._presence.hold(
            call_id,
            recipient,
            message,
            limit,
            sender=message["from"],
            max_bytes=self.rules.held_bytes_max,
        ):
            raise ApiError(
                "rate_limited",
                "your partner is away and their signal queue (or what you hold) is full",
            )
        self._metrics.signals_queued.inc()

    async def _replace(self, old_sid: str, call_id: int) -> None:
        """A second connection of the same user took over: retire the first."""
        self._joined.remove(old_sid)
        await self._outbox.to_sid(old_sid, "ended", {"call_id": call_id, "reason": "replaced"})

    async def _depart(self, sid: str, joined: Joined, reason: str) -> None:
        """A user left (``left``) or dropped (``disconnected``)."""
        call_id, user_id = joined.call_id, joined.user_id
        hung_up: CallRecord | None = None
        async with self._presence.lock(call_id):
            if self._joined.get(sid) is not joined:
                return  # already replaced or ended meanwhile
            self._joined.remove(sid)
            if not await self._presence.leave(call_id, user_id, sid):
                return
            await self._presence.reset_connected(call_id)
            call = await self._view(call_id)
            if call is None or call.state in FINAL_STATES:
                return
            logger.info(
                "user %s left call %s (%s)",
                user_id,
                call_id,
                reason,
                extra={
                    "event": "call.leave",
                    "call_id": call_id,
                    "user_id": user_id,
                    "reason": reason,
                },
            )
            if call.state is CallState.LIVE and reason == "left":
                hung_up = self._hang_up(call, user_id)
            else:
                members = await self._presence.members(call_id)
                self._presence_change(call, len(members), f"{reason} {user_id}")
                partner_sid = members.get(joined.partner_id)
                if partner_sid is not None:
                    await self._outbox.to_sid(
                        partner_sid, "partner_left", {"call_id": call_id, "reason": reason}
                    )
        await self._media.user_left(call_id, user_id)
        if hung_up is not None:
            await self._finish(hung_up)

    def _hang_up(self, call: CallRecord, user_id: str) -> CallRecord:
        """``leave`` while live ends the call for both (decided here, written behind)."""
        now = utcnow()
        changes = CallChanges(state=CallState.ENDED, ended_at=now, end_reason=EndReason.LEFT)
        self._instants.cancel(call.id)
        self._clocked.add(call.id)  # until the database has the end
        self._writer.submit(
            call.id,
            lambda c: changes if c.state is CallState.LIVE else None,
            f"hang-up by {user_id}",
        )
        self._log_held(call, CallState.ENDED, f"hang-up by {user_id}")
        return apply_changes(call, changes)

    def _arm(self, call: CallRecord) -> None:
        if self.timers is not None:
            self.timers.arm(call)

    async def _fire(self, call_id: int) -> CallRecord | None:
        return await self.timers.fire(call_id) if self.timers is not None else None


#: The pre-live states that presence alone decides.
_PRESENCE_STATES = frozenset({CallState.OPEN, CallState.WAITING, CallState.CONNECTING})
