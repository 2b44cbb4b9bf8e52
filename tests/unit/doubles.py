"""Recording stand-ins for the ports the services talk through, and a
harness that drives the call side (CallMachine, CallService) directly,
without sockets."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from persistence.calls import NewNotification
from persistence.factory import Stores
from persistence.models import CallRecord, utcnow
from rtc_bridge.base import MediaEvents
from rtc_bridge.p2p import PeerToPeerMedia
from scheduler.service import CallTimers
from signaling.calls.connections import JoinedConnections
from signaling.calls.machine import CallMachine
from signaling.calls.schemas import Signal
from signaling.calls.service import CallService
from signaling.calls.state import CallRules
from signaling.metrics import Metrics

EVENT_TIMEOUT_S = 5.0
#: How late a timer may apply its effect (generous: CI machines get busy).
ON_TIME_S = 0.5


def assert_on_time(at: datetime, deadline: datetime | None) -> None:
    """``at`` is not before ``deadline``, and not much after it either."""
    assert deadline is not None
    assert 0 <= (at - deadline).total_seconds() < ON_TIME_S, (at, deadline)


@dataclass(frozen=True)
class Sent:
    """One emit: ``to`` is a sid, or ``user:<id>`` for every connection of a user."""

    to: str
    event: str
    payload: dict[str, Any]
    at: datetime


class _Recorder:
    """A log that tests can wait on instead of sleeping."""

    def __init__(self) -> None:
        self.log: list[Sent] = []
        self._changed = asyncio.Condition()

    async def record(self, to: str, event: str, payload: dict[str, Any]) -> None:
        async with self._changed:
            self.log.append(Sent(to, event, dict(payload), utcnow()))
            self._changed.notify_all()

    def sent(self, to: str, event: str | None = None) -> list[Sent]:
        return [s for s in self.log if s.to == to and (event is None or s.event == event)]

    def payloads(self, to: str, event: str) -> list[dict[str, Any]]:
        return [s.payload for s in self.sent(to, event)]

    def events(self, to: str) -> list[str]:
        return [s.event for s in self.sent(to)]

    async def wait_for(self, to: str, event: str, count: int = 1) -> list[Sent]:
        """Wait until ``count`` ``event``s went to ``to``; returns them all."""

        def arrived() -> bool:
            return len(self.sent(to, event)) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(arrived), EVENT_TIMEOUT_S)
        return self.sent(to, event)


class RecordingOutbox(_Recorder):
    """The call side's Outbox, recording every emit in order."""

    async def to_sid(self, sid: str, event: str, payload: dict[str, Any]) -> None:
        await self.record(sid, event, payload)

    async def to_user(
        self, user_id: str, event: str, payload: dict[str, Any], skip: Iterable[str] = ()
    ) -> None:
        await self.record(f"user:{user_id}", event, payload)


class RecordingNotifier(_Recorder):
    """The scheduler's Notifier; every call is logged under ``to="timers"``."""

    TO = "timers"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[CallRecord] = []

    async def _note(self, event: str, call: CallRecord) -> None:
        self.calls.append(call)
        await self.record(self.TO, event, {"call_id": call.id, "state": call.state.value})

    def call_soon_notices(self, call: CallRecord) -> list[NewNotification]:
        return [NewNotification(call.caller_id, "call_soon", {"call_id": call.id})]

    async def call_soon(self, call: CallRecord) -> None:
        await self._note("call_soon", call)

    async def call_ended(self, call: CallRecord) -> None:
        await self._note("call_ended", call)

    async def runs_clock(self, call_id: int) -> bool:
        return False

    def count(self, event: str) -> int:
        return len(self.sent(self.TO, event))


@dataclass
class Harness:
    """The call side over memory stores, a recording outbox and real timers:
    the call machine (the /call events), the REST service and the connection
    registry, built as the composition root builds them."""

    stores: Stores
    outbox: RecordingOutbox
    connections: JoinedConnections
    machine: CallMachine
    service: CallService
    rules: CallRules

    @property
    def timers(self) -> CallTimers:
        return self.machine.timers

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, stores: Stores, rules: CallRules) -> AsyncIterator[Harness]:
        """A started harness, stopped in reverse on the way out."""
        calls = stores.calls
        outbox = RecordingOutbox()
        connections = JoinedConnections()
        machine = CallMachine(
            calls=calls,
            presence=stores.presence,
            questions=stores.questions,
            connections=connections,
            outbox=outbox,
            metrics=Metrics(),
            rules=rules,
            open_media=_peer_to_peer,
            open_timers=functools.partial(CallTimers, calls, sweep_interval_s=3600),
        )
        service = CallService(
            calls=calls,
            notifications=stores.notifications,
            held=machine.held,
            timers=machine.timers,
            finish=machine.finish,
            rules=rules,
        )
        await machine.timers.start()
        try:
            yield cls(stores, outbox, connections, machine, service, rules)
        finally:
            await machine.timers.shutdown()
            await machine.close()

    async def schedule(
        self, caller: str = "alice", callee: str = "bob", in_s: float = 1.0
    ) -> CallRecord:
        return await self.service.schedule(caller, callee, utcnow() + timedelta(seconds=in_s))

    async def join(self, sid: str, user_id: str, call_id: int) -> dict[str, Any]:
        """What the namespace does: remember the connection's user, then join."""
        self.connections.users_by_sid[sid] = user_id
        return await self.machine.join(sid, user_id, call_id)

    async def signal(self, sid: str, call_id: int, kind: str, **fields: Any) -> None:
        await self.machine.relay(
            sid, Signal.model_validate({"call_id": call_id, "type": kind, **fields})
        )

    async def connected(self, sid: str, call_id: int) -> None:
        await self.machine.report_connected(sid, self.connections.users_by_sid[sid], call_id)

    async def leave(self, sid: str, call_id: int) -> None:
        await self.machine.leave(sid, self.connections.users_by_sid[sid], call_id)

    async def disconnect(self, sid: str) -> None:
        """What the namespace does when a socket goes."""
        self.connections.users_by_sid.pop(sid, None)
        await self.machine.disconnected(sid)

    async def call(self, call_id: int) -> CallRecord:
        """The call as REST shows it: as stored once what the service decided
        is written, with the presence-driven state the service holds."""
        stored = await self.stored(call_id)
        return await self.service.get_call(stored.caller_id, call_id)

    async def stored(self, call_id: int) -> CallRecord:
        """The call as stored, once what the service decided is written."""
        await self.service.flush(call_id)
        call = await self.stores.calls.get(call_id)
        assert call is not None
        return call

    async def both_in(self, call_id: int, a: str = "a1", b: str = "b1") -> None:
        await self.join(a, "alice", call_id)
        await self.join(b, "bob", call_id)

    async def countdown(self, call_id: int, a: str = "a1", b: str = "b1") -> CallRecord:
        """Both join and report connected: the countdown runs."""
        await self.both_in(call_id, a, b)
        await self.connected(a, call_id)
        await self.connected(b, call_id)
        return await self.call(call_id)

    async def live(self, call_id: int, a: str = "a1", b: str = "b1") -> CallRecord:
        await self.countdown(call_id, a, b)
        await self.outbox.wait_for(a, "live")
        return await self.call(call_id)


class UnheardMediaEvents:
    """MediaEvents that nobody listens to (a backend built on its own)."""

    async def send_signal(self, call_id: int, user_id: str, signal: dict[str, Any]) -> None:
        return None

    async def media_connected(self, call_id: int, user_id: str) -> None:
        return None

    async def media_left(self, call_id: int, user_id: str) -> None:
        return None


def _peer_to_peer(events: MediaEvents) -> PeerToPeerMedia:
    return PeerToPeerMedia()
