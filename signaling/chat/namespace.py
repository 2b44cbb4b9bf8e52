"""The /chat Socket.IO namespace: validate, call the service, return the ack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import socketio

from signaling.auth import Identity
from signaling.chat.schemas import MAX_SYNC, ReadRequest, SendMessage, SyncRequest
from signaling.chat.service import ChatService
from signaling.edge import OK, GuardedNamespace, user_room
from signaling.metrics import Metrics
from signaling.quotas import Quotas
from signaling.wire import message_wire

NAMESPACE = "/chat"


class SocketChatOutbox:
    """The chat service's :class:`ChatOutbox` over a python-socketio server:
    each user's connections to /chat share the room ``user:<id>``."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def to_users(
        self, user_ids: tuple[str, ...], event: str, payload: dict[str, Any], skip_sid: str | None
    ) -> None:
        await self._sio.emit(
            event,
            payload,
            to=[user_room(u) for u in user_ids],
            skip_sid=skip_sid,
            namespace=NAMESPACE,
        )


class ChatNamespace(GuardedNamespace):
    def __init__(
        self,
        service: ChatService,
        authenticate: Callable[[Any], Identity],
        metrics: Metrics,
        quotas: Quotas | None = None,
    ) -> None:
        self._service = service
        super().__init__(NAMESPACE, metrics, authenticate, quotas=quotas)

    async def on_send(self, sid: str, data: Any) -> dict[str, Any]:
        body = SendMessage.model_validate(data)
        message = await self._service.send(
            self._users[sid], body.room_id, body.content, body.client_msg_id, sid=sid
        )
        return {"ok": True, "message": message_wire(message)}

    async def on_sync(self, sid: str, data: Any) -> dict[str, Any]:
        body = SyncRequest.model_validate(data)
        messages, more = await self._service.sync(
            self._users[sid], body.room_id, body.after_seq, MAX_SYNC
        )
        return {"ok": True, "messages": [message_wire(m) for m in messages], "has_more": more}

    async def on_read(self, sid: str, data: Any) -> dict[str, Any]:
        body = ReadRequest.model_validate(data)
        await self._service.read(self._users[sid], body.room_id, body.seq, sid=sid)
        return OK
