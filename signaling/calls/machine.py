"""The call state machine: the /call events (join, signal, connected, leave,
drop), the in-call clock (countdown, ``live``, the time limit) and the end of
a call. No socket in here: it talks to clients through an :class:`Outbox`, so
tests drive whole calls directly (tests/unit/doubles.py ``Harness``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from persistence.calls import CallStore
from persistence.models import (
    FINAL_STATES,
    CallChanges,
    CallRecord,
    CallState,
    EndReason,
    apply_changes,
    utcnow,
)
from persistence.presence import PresenceStore
from persistence.questions import QuestionStore
from rtc_bridge.base import MediaBackend, MediaEvents
from rtc_bridge.errors import MediaSignalError, MediaUnavailableError
from scheduler.jobs import due_change
from scheduler.ports import NoPush, Notifier, PushNotices
from scheduler.service import CallTimers
from signaling.calls.connections import Joined, JoinedConnections
from signaling.calls.media_events import CallMediaEvents
from signaling.calls.notifier import CallNotifier
from signaling.calls.schemas import Signal
from signaling.calls.state import (
    PRESENCE_STATES,
    CallRules,
    ClockClaims,
    HeldCalls,
    Outbox,
    due_as,
    log_decided,
    presence_state,
    to_millisecond,
)
from signaling.errors import ApiError, conflict, forbidden, invalid, not_found
from signaling.metrics import Metrics
from signaling.quotas import Quotas
from signaling.wire import call_wire, iso, question_wire, signal_wire

logger = logging.getLogger(__name__)

#: Builds the media backend around the events it reports to (``create_media``).
MediaFactory = Callable[[MediaEvents], MediaBackend]
#: Builds the database timers around the notifier they report to.
TimersFactory = Callable[[Notifier], CallTimers]


class CallMachine:
    """Everything a call does between two users once its window is open.

    The process where a call's users are holds the call in memory
    (:class:`HeldCalls`) and decides its presence-driven states and timed
    instants there: every event a user sees (``partner_joined``,
    ``countdown``, ``live``, ``ended``) is sent from that state at once, and
    the change is written to the database just after (write-behind). The
    in-call instants run on the loop's own timers; the database timers
    (:class:`CallTimers`) keep the wall-clock schedule and take a call over
    when no live process runs it.

    The machine sits in two cycles: the media backend reports to it and is
    driven by it, and the database timers notify it and are armed by it. It
    closes both by building the other end, complete, from a factory: the
    backend around a :class:`CallMediaEvents`, the timers around a
    :class:`CallNotifier`, each a small object over the state they need.
    """

    def __init__(
        self,
        *,
        calls: CallStore,
        presence: PresenceStore,
        questions: QuestionStore,
        connections: JoinedConnections,
        outbox: Outbox,
        metrics: Metrics,
        rules: CallRules,
        open_media: MediaFactory,
        open_timers: TimersFactory,
        claims: ClockClaims | None = None,
        quotas: Quotas | None = None,
        push: PushNotices | None = None,
    ) -> None:
        self._calls = calls
        self._presence = presence
        self._questions = questions
        self._connections = connections
        self._outbox = outbox
        self._metrics = metrics
        self._quotas = quotas
        self._push: PushNotices = push if push is not None else NoPush()
        self.rules = rules
        self.held = HeldCalls(
            calls,
            connections,
            self._written,
            claims=claims,
            observe_lateness=metrics.observe_lateness,
            write_linger_s=rules.write_linger_s,
        )
        self.media = open_media(
            CallMediaEvents(
                held=self.held,
                presence=presence,
                connections=connections,
                outbox=outbox,
                mark_connected=self.mark_connected,
            )
        )
        self.timers = open_timers(
            CallNotifier(
                held=self.held,
                media=self.media,
                outbox=outbox,
                finish=self.finish,
            )
        )

    async def close(self) -> None:
        """Stop the clocks, let queued writes land, release the media (shut-down)."""
        await self.held.close()
        await self.media.close()

    async def changed_elsewhere(
        self, call_id: int, state: CallState, deadline: datetime | None
    ) -> None:
        """Another process changed the call (the cluster bus): arm this
        process's timer from what it announced; let go of a call that is over."""
        self.timers.heard(call_id, state, deadline)
        if state.is_final:
            self.held.forget(call_id)

    # ------------------------------------------------------------ /call events

    async def join(self, sid: str, user_id: str, call_id: int) -> dict[str, Any]:
        call = await self._participant_call(user_id, call_id)
        if call.state is CallState.SCHEDULED and utcnow() < call.opens_at:
            raise ApiError("too_early", f"the join window opens at {iso(call.opens_at)}")
        if not self.held.holds(call.id):
            call = await self._catch_up(call)
        _raise_if_over(call)
        # Before entering presence: a media server that fails leaves nothing changed.
        try:
            media_extras = await self.media.join_extras(call_id, user_id)
        except MediaUnavailableError as exc:
            raise ApiError("unavailable", str(exc)) from None

        previous_call = self._connections.get(sid)
        if previous_call is not None and previous_call.call_id != call_id:
            # Before taking this call's lock: holding one call's lock while
            # waiting for another's could deadlock with a connection crossing
            # the other way.
            await self._depart(sid, previous_call, "left")
        async with self._presence.lock(call_id):
            call = self.held.get(call_id) or call
            partner_id = call.partner_of(user_id)
            # A (re)joining user means a new negotiation: entering presence
            # also forgets who was connected.
            entered = await self._presence.enter(call_id, user_id, sid)
            replaced, members = entered.replaced, entered.members
            if replaced is not None:
                await self._replace(replaced, call_id)
            self._connections.add(sid, Joined(call_id, user_id, partner_id))
            partner_sid = members.get(partner_id)
            call = self.held.decide_presence(call, len(members), f"join {user_id}")
            if call.state is CallState.LIVE:
                await self._adopt_live(call)
            if partner_sid is not None:
                # With a media server both peers offer to it; else the waiting one answers.
                role = "offerer" if self.media.terminates_peers else "answerer"
                await self._outbox.to_sid(
                    partner_sid, "partner_joined", {"call_id": call_id, "role": role}
                )
            # Held while the user was away, taken on entering; delivered
            # before the ack, in order, so nothing sent later overtakes them.
            for queued in entered.held:
                await self._outbox.to_sid(sid, "signal", queued)

        if partner_sid is None and not self._connections.has_user(partner_id):
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
            "call": call_wire(call),
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
        joined = self._connections.get(sid)
        if joined is None or joined.call_id != signal.call_id:
            raise await self._not_joined_error(sid, signal.call_id)
        if self._quotas is not None:
            self._quotas.check_signal(sid)
        message = signal_wire(signal, joined.user_id)
        if self.media.terminates_peers:
            try:
                await self.media.on_signal(signal.call_id, joined.user_id, message)
            except MediaSignalError as exc:
                raise invalid(str(exc)) from None
            self._metrics.signals_by_type[signal.type].inc()
            return
        partner_sid = self._connections.sid_of(signal.call_id, joined.partner_id)
        if partner_sid is None:
            members = await self._presence.members(signal.call_id)
            if members.get(joined.user_id) != sid:
                # Replaced or gone on another process, or the call ended there.
                self._connections.remove(sid)
                raise await self._not_joined_error(sid, signal.call_id)
            partner_sid = members.get(joined.partner_id)
        if partner_sid is None:
            await self._hold(signal.call_id, joined.partner_id, message)
        else:
            await self._outbox.to_sid(partner_sid, "signal", message)
        self._metrics.signals_by_type[signal.type].inc()

    async def report_connected(self, sid: str, user_id: str, call_id: int) -> None:
        joined = self._connections.get(sid)
        if joined is None or joined.call_id != call_id:
            raise await self._not_joined_error(sid, call_id)
        await self.mark_connected(call_id, user_id)

    async def leave(self, sid: str, user_id: str, call_id: int) -> None:
        joined = self._connections.get(sid)
        if joined is None or joined.call_id != call_id:
            raise await self._not_joined_error(sid, call_id)
        await self._depart(sid, joined, "left")

    async def disconnected(self, sid: str) -> None:
        joined = self._connections.get(sid)
        if joined is not None:
            await self._depart(sid, joined, "disconnected")

    # ------------------------------------------------------- the in-call clock

    async def mark_connected(self, call_id: int, user_id: str) -> None:
        """Start the countdown once every user in the call is connected
        (their ``connected`` event, or the media server's word for it)."""
        async with self._presence.lock(call_id):
            connected, members = await self._presence.mark_connected(call_id, user_id)
            if len(members) < 2 or not connected.issuperset(members):
                return
            call = await self.held.view(call_id)
            if call is None or call.state not in PRESENCE_STATES:
                return
            live_at = to_millisecond(utcnow() + timedelta(seconds=self.rules.countdown_s))
            ends_at = live_at + timedelta(seconds=self.rules.limit_s)
            changes = CallChanges(state=CallState.COUNTDOWN, live_at=live_at, ends_at=ends_at)
            self.held.hold(apply_changes(call, changes))
            self.held.run_clock(call_id, live_at, "live", lambda: self._go_live(call_id, live_at))
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
            self.held.writer.submit(call_id, lambda c: presence_state(c, present), "both present")
            self.held.writer.submit(
                call_id,
                lambda c: changes if c.state is CallState.CONNECTING else None,
                "both connected",
            )
            log_decided(call, CallState.COUNTDOWN, "both connected")

    async def _go_live(self, call_id: int, live_at: datetime) -> None:
        """The countdown's instant: ``live`` from memory, then the database."""
        call = self.held.get(call_id)
        if call is None or call.state is not CallState.COUNTDOWN or call.live_at != live_at:
            return  # cancelled or restarted meanwhile
        assert call.ends_at is not None  # a countdown always carries both instants
        members = await self._presence.members(call_id)
        if len(members) < 2:
            # A drop on another process; a local one cancels the clock itself.
            self.held.stop_clock(call_id)
            self.held.decide_presence(call, len(members), "a user left during the countdown")
            return
        ends_at = call.ends_at
        self.held.hold(apply_changes(call, CallChanges(state=CallState.LIVE, started_at=live_at)))
        self.held.run_clock(call_id, ends_at, "ended", lambda: self._end_on_time(call_id, ends_at))
        question = await self._questions.random()
        payload = {
            "call_id": call_id,
            "ends_at": iso(ends_at),
            "question": question_wire(question) if question else None,
        }
        for member_sid in members.values():
            await self._outbox.to_sid(member_sid, "live", payload)
        self.held.writer.submit(
            call_id,
            lambda c: (
                CallChanges(state=CallState.LIVE, started_at=c.live_at)
                if c.state is CallState.COUNTDOWN
                else None
            ),
            "countdown over",
            urgent=True,  # a restart must find it live, or it cuts the countdown short
        )
        log_decided(call, CallState.LIVE, "countdown over")

    async def _end_on_time(self, call_id: int, ends_at: datetime) -> None:
        """The limit: ``ended`` from memory, then the database."""
        call = self.held.get(call_id)
        if call is None or call.state is not CallState.LIVE or call.ends_at != ends_at:
            return
        now = max(utcnow(), ends_at)  # the rule's view: the limit has come
        ended = apply_changes(
            call,
            CallChanges(state=CallState.ENDED, ended_at=now, end_reason=EndReason.TIME_LIMIT),
        )
        self.held.writer.submit(call_id, due_as("ended", now), "time limit")
        await self.finish(ended)
        log_decided(call, CallState.ENDED, "time limit")

    async def _adopt_live(self, call: CallRecord) -> None:
        """A user (re)joined a live call that no live process runs (after a
        restart or a takeover): its end runs on this process's clock."""
        if self.held.clocked(call.id) or call.ends_at is None:
            return
        if await self.held.held_elsewhere(call.id):
            self.timers.arm(call, changed=False)  # a takeover, should that one be dead
            return
        ends_at = call.ends_at
        self.held.run_clock(call.id, ends_at, "ended", lambda: self._end_on_time(call.id, ends_at))

    # ------------------------------------------------------- the end of a call

    async def finish(self, call: CallRecord) -> None:
        """The call is over: tell every connection of both users, once each,
        the ones in the call first; then let go of it."""
        reason = call.end_reason.value if call.end_reason else EndReason.SERVER.value
        payload = {"call_id": call.id, "reason": reason}
        # Who was in it, read as its presence is forgotten (one step).
        members = await self._presence.clear(call.id, (call.caller_id, call.callee_id))
        for member_sid in members.values():
            await self._outbox.to_sid(member_sid, "ended", payload)
        for user_id in (call.caller_id, call.callee_id):
            await self._outbox.to_user(user_id, "ended", payload, skip=members.values())
        self.held.forget(call.id)
        await self.media.close_call(call.id)

    async def _written(
        self, call_id: int, before: CallRecord | None, after: CallRecord | None
    ) -> None:
        """What a write-behind found: arm the database timer on what was
        written; a call the database says is over elsewhere ends here too."""
        if after is not None:
            self.timers.arm(after)
        elif before is not None and before.state.is_final and self.held.holds(call_id):
            await self.finish(before)
        self.held.clock_over(call_id, final=after is not None and after.state.is_final)

    # ----------------------------------------------------------------- helpers

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
                self.timers.arm(after)
            call = after or await self._calls.get(call.id) or call
        if due_change(call, now) is not None:
            call = await self.timers.fire(call.id) or call  # the timers are behind
        return call

    async def _participant_call(self, user_id: str, call_id: int) -> CallRecord:
        call = await self.held.view(call_id)
        if call is None:
            raise not_found()
        if not call.has_participant(user_id):
            raise forbidden()
        return call

    async def _not_joined_error(self, sid: str, call_id: int) -> ApiError:
        """Why a connection may not act on a call it has not joined (cold path)."""
        user_id = self._connections.user_of(sid)
        call = await self.held.view(call_id)
        if call is None:
            return not_found()
        if user_id is None or not call.has_participant(user_id):
            return forbidden()
        if call.state in FINAL_STATES:
            return ApiError("ended", f"the call is {call.state.value}")
        return conflict("join the call first")

    async def _hold(self, call_id: int, recipient: str, message: dict[str, Any]) -> None:
        """Keep a signal for a partner who is away (cold path: check the call)."""
        call = await self.held.view(call_id)
        if call is None or call.state in FINAL_STATES:
            self.held.forget(call_id)
            raise ApiError("ended", "the call is over")
        if not await self._presence.hold(
            call_id,
            recipient,
            message,
            self.rules.signal_queue_max,
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
        self._connections.remove(old_sid)
        await self._outbox.to_sid(old_sid, "ended", {"call_id": call_id, "reason": "replaced"})

    async def _depart(self, sid: str, joined: Joined, reason: str) -> None:
        """A user left (``left``) or dropped (``disconnected``)."""
        call_id, user_id = joined.call_id, joined.user_id
        hung_up: CallRecord | None = None
        async with self._presence.lock(call_id):
            if self._connections.get(sid) is not joined:
                return  # already replaced or ended meanwhile
            self._connections.remove(sid)
            # Leaving also forgets who was connected: whoever stays negotiates again.
            if not await self._presence.leave(call_id, user_id, sid):
                return
            call = await self.held.view(call_id)
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
                self.held.decide_presence(call, len(members), f"{reason} {user_id}")
                partner_sid = members.get(joined.partner_id)
                if partner_sid is not None:
                    await self._outbox.to_sid(
                        partner_sid, "partner_left", {"call_id": call_id, "reason": reason}
                    )
        await self.media.user_left(call_id, user_id)
        if hung_up is not None:
            await self.finish(hung_up)

    def _hang_up(self, call: CallRecord, user_id: str) -> CallRecord:
        """``leave`` while live ends the call for both (decided here, written behind)."""
        now = utcnow()
        changes = CallChanges(state=CallState.ENDED, ended_at=now, end_reason=EndReason.LEFT)
        self.held.hang_up_clock(call.id)
        self.held.writer.submit(
            call.id,
            lambda c: changes if c.state is CallState.LIVE else None,
            f"hang-up by {user_id}",
        )
        log_decided(call, CallState.ENDED, f"hang-up by {user_id}")
        return apply_changes(call, changes)


def _raise_if_over(call: CallRecord) -> None:
    if call.state in FINAL_STATES:
        raise ApiError("ended", f"the call is {call.state.value}")
    if call.state is CallState.LIVE and call.ends_at and call.ends_at <= utcnow():
        raise ApiError("ended", "the call reached its time limit")
