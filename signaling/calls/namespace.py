"""The /call Socket.IO namespace: validate, call the service, return the ack."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from signaling.auth import Identity
from signaling.calls.connections import JoinedConnections
from signaling.calls.machine import CallMachine
from signaling.calls.schemas import CallRef, Signal
from signaling.edge import OK, GuardedNamespace, GuardedServer, user_room
from signaling.metrics import Metrics
from signaling.quotas import Quotas

NAMESPACE = "/call"


class SocketOutbox:
    """The call side's :class:`~signaling.calls.state.Outbox` over a python-socketio server."""

    def __init__(self, sio: GuardedServer) -> None:
        self._sio = sio

    async def to_sid(self, sid: str, event: str, payload: dict[str, Any]) -> None:
        await self._sio.emit_to_sid(sid, event, payload, NAMESPACE)

    async def to_user(
        self, user_id: str, event: str, payload: dict[str, Any], skip: Iterable[str] = ()
    ) -> None:
        await self._sio.emit(
            event, payload, room=user_room(user_id), namespace=NAMESPACE, skip_sid=list(skip)
        )


class CallNamespace(GuardedNamespace):
    def __init__(
        self,
        machine: CallMachine,
        connections: JoinedConnections,
        authenticate: Callable[[Any], Identity],
        metrics: Metrics,
        quotas: Quotas | None = None,
    ) -> None:
        self._machine = machine
        # The edge keeps each connection's user in the registry's map.
        super().__init__(NAMESPACE, metrics, authenticate, connections.users_by_sid, quotas)

    async def disconnected(self, sid: str) -> None:
        await self._machine.disconnected(sid)

    async def on_join(self, sid: str, data: Any) -> dict[str, Any]:
        ref = CallRef.model_validate(data)
        return await self._machine.join(sid, self._users[sid], ref.call_id)

    async def on_signal(self, sid: str, data: Any) -> dict[str, Any]:
        await self._machine.relay(sid, Signal.model_validate(data))
        return OK

    async def on_connected(self, sid: str, data: Any) -> dict[str, Any]:
        ref = CallRef.model_validate(data)
        await self._machine.report_connected(sid, self._users[sid], ref.call_id)
        return OK

    async def on_leave(self, sid: str, data: Any) -> dict[str, Any]:
        ref = CallRef.model_validate(data)
        await self._machine.leave(sid, self._users[sid], ref.call_id)
        return OK
