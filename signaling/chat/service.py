"""Chat rooms and messages between two users: membership, send with fan-out,
sync, read markers and receipts. No socket in here: it reaches clients
through a :class:`ChatOutbox`, so tests drive it directly."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from persistence.chat import ChatMessage, ChatRoom, MessageStore, RoomStore
from signaling.errors import forbidden, invalid, not_found
from signaling.metrics import Metrics
from signaling.quotas import Quotas
from signaling.wire import iso, message_wire

logger = logging.getLogger(__name__)

#: Rooms never change members and are never deleted, so this process keeps
#: the ones it has seen; past this many it starts over (a cache, not state).
_ROOM_CACHE_MAX = 100_000


class ChatOutbox(Protocol):
    """How the service reaches sockets (implemented over python-socketio)."""

    async def to_users(
        self, user_ids: tuple[str, ...], event: str, payload: dict[str, Any], skip_sid: str | None
    ) -> None:
        """Every connection of these users to /chat but ``skip_sid``."""


class ChatService:
    """Everything chat does, behind the REST routes and the /chat namespace."""

    def __init__(
        self,
        *,
        rooms: RoomStore,
        messages: MessageStore,
        outbox: ChatOutbox,
        metrics: Metrics,
        quotas: Quotas | None = None,
    ) -> None:
        self._rooms = rooms
        self._quotas = quotas
        self._messages = messages
        self._outbox = outbox
        self._metrics = metrics
        self._room_cache: dict[int, ChatRoom] = {}

    async def open_room(self, user1: str, user2: str) -> ChatRoom:
        """The pair's room, created (once) if it does not exist."""
        if user1 == user2:
            raise invalid("a chat room needs two different users")
        room, created = await self._rooms.get_or_create(user1, user2)
        if created:
            logger.info(
                "chat room %s opened",
                room.id,
                extra={
                    "event": "chat.room_created",
                    "room_id": room.id,
                    "users": [room.user_a, room.user_b],
                },
            )
        return room

    async def member_room(self, user_id: str, room_id: int, *, hide: bool = False) -> ChatRoom:
        """The room if ``user_id`` is one of its two users.

        A stranger gets ``forbidden`` on Socket.IO and, with ``hide`` (REST),
        ``not_found``, as REST does not reveal other people's rooms.
        """
        room = self._room_cache.get(room_id)
        if room is None:
            room = await self._rooms.get(room_id)
            if room is None:
                raise not_found("no such room")
            if len(self._room_cache) >= _ROOM_CACHE_MAX:
                self._room_cache.clear()
            self._room_cache[room_id] = room
        if not room.has_member(user_id):
            raise not_found("no such room") if hide else forbidden("not a member of this room")
        return room

    async def send(
        self, user_id: str, room_id: int, content: str, client_msg_id: str, sid: str | None = None
    ) -> ChatMessage:
        """Store the message and send it to every other socket of both users.

        A retry (same ``client_msg_id``) returns the stored message and sends
        nothing again: the first attempt did, and clients dedupe by ``seq``.
        """
        room = await self.member_room(user_id, room_id)
        if self._quotas is not None:
            await self._quotas.check_chat(user_id)
        message, created = await self._messages.append(room_id, user_id, content, client_msg_id)
        if created:
            self._metrics.chat_messages.inc()
            await self._outbox.to_users(
                (room.partner_of(user_id), user_id), "message", message_wire(message), sid
            )
        logger.debug(
            "chat message %s/%s",
            room_id,
            message.seq,
            extra={
                "event": "chat.message",
                "room_id": room_id,
                "seq": message.seq,
                "sender_id": user_id,
                "retry": not created,
            },
        )
        return message

    async def sync(
        self, user_id: str, room_id: int, after_seq: int, limit: int
    ) -> tuple[list[ChatMessage], bool]:
        """Messages after ``after_seq``, oldest first, and whether more follow."""
        await self.member_room(user_id, room_id)
        found = await self._messages.after(room_id, after_seq, limit + 1)
        return found[:limit], len(found) > limit

    async def history(
        self, user_id: str, room_id: int, before_seq: int | None, limit: int
    ) -> list[ChatMessage]:
        await self.member_room(user_id, room_id, hide=True)
        return await self._messages.before(room_id, before_seq, limit)

    async def read(
        self, user_id: str, room_id: int, seq: int, *, sid: str | None = None, hide: bool = False
    ) -> int:
        """Move the user's read marker and send the marker now stored as a
        ``read`` receipt to every other socket of both users (also when it did
        not move: receipts are idempotent, clients keep the highest). Returns
        the marker."""
        room = await self.member_room(user_id, room_id, hide=hide)
        marker = await self._messages.mark_read(room_id, user_id, seq)
        await self._outbox.to_users(
            (room.partner_of(user_id), user_id),
            "read",
            {"room_id": room_id, "user_id": user_id, "seq": marker},
            sid,
        )
        logger.info(
            "user %s read room %s up to %s",
            user_id,
            room_id,
            marker,
            extra={"event": "chat.read", "room_id": room_id, "user_id": user_id, "seq": marker},
        )
        return marker

    async def list_rooms(self, user_id: str) -> list[dict[str, Any]]:
        """The user's rooms with last message and unread count, newest
        activity (last message, else the room's creation) first."""
        rooms = await self._rooms.list_for_user(user_id)
        summaries = await self._messages.summaries(user_id, [r.id for r in rooms])

        def activity(room: ChatRoom) -> tuple[Any, int]:
            last = summaries[room.id].last_message
            return (last.created_at if last else room.created_at, room.id)

        result = []
        for room in sorted(rooms, key=activity, reverse=True):
            summary = summaries[room.id]
            result.append(
                {
                    "id": room.id,
                    "partner_id": room.partner_of(user_id),
                    "last_message": message_wire(summary.last_message)
                    if summary.last_message
                    else None,
                    "unread_count": summary.unread_count,
                    "last_read_seq": summary.last_read_seq,
                    "created_at": iso(room.created_at),
                }
            )
        return result
