"""Store contracts for chat: rooms (one per pair of users) and their messages."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

#: ``client_msg_id`` and user ids are at most this long (PROTOCOL.md).
MAX_CLIENT_MSG_ID = 64
#: ``content`` is 1 to this many characters (PROTOCOL.md).
MAX_CONTENT = 2000


def ordered_pair(user1: str, user2: str) -> tuple[str, str]:
    """The pair key of a room: both ids, smaller first, so (a, b) and (b, a)
    name the same room."""
    return (user1, user2) if user1 <= user2 else (user2, user1)


@dataclass(frozen=True, slots=True)
class ChatRoom:
    """The room of two users; ``user_a`` < ``user_b``."""

    id: int
    user_a: str
    user_b: str
    created_at: datetime

    def has_member(self, user_id: str) -> bool:
        return user_id in (self.user_a, self.user_b)

    def partner_of(self, user_id: str) -> str:
        return self.user_b if user_id == self.user_a else self.user_a


@dataclass(frozen=True, slots=True)
class ChatMessage:
    room_id: int
    seq: int
    sender_id: str
    content: str
    client_msg_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """What the message store knows about one room, seen by one user."""

    room_id: int
    last_message: ChatMessage | None
    #: messages of the partner with a ``seq`` above the user's read marker
    unread_count: int
    last_read_seq: int


class RoomStore(abc.ABC):
    """Chat rooms. Lives in the SQL database with the gifts that create them."""

    @abc.abstractmethod
    async def get_or_create(self, user1: str, user2: str) -> tuple[ChatRoom, bool]:
        """The pair's room, inserted if missing; ``True`` when this call made it.

        Exactly one room per pair, also when both users ask at the same moment
        (or on two processes): the pair is a unique key, a lost insert reads
        the winner's room.
        """

    @abc.abstractmethod
    async def get(self, room_id: int) -> ChatRoom | None: ...

    @abc.abstractmethod
    async def find(self, user1: str, user2: str) -> ChatRoom | None: ...

    @abc.abstractmethod
    async def list_for_user(self, user_id: str) -> list[ChatRoom]:
        """Every room the user is in, in no particular order."""


class MessageStore(abc.ABC):
    """The messages of every room, their ``seq`` counters and read markers.

    ``seq`` is per room, starts at 1 and has no gaps and no duplicates, also
    with concurrent senders on several processes. ``append`` is idempotent per
    ``(room_id, sender_id, client_msg_id)``: a retry returns the stored message.
    """

    @abc.abstractmethod
    async def append(
        self, room_id: int, sender_id: str, content: str, client_msg_id: str
    ) -> tuple[ChatMessage, bool]:
        """Store a message with the room's next ``seq``; returns it and
        ``True``, or the message stored earlier under the same
        ``client_msg_id`` and ``False``."""

    @abc.abstractmethod
    async def after(self, room_id: int, after_seq: int, limit: int) -> list[ChatMessage]:
        """Messages with ``seq > after_seq``, oldest first."""

    @abc.abstractmethod
    async def before(self, room_id: int, before_seq: int | None, limit: int) -> list[ChatMessage]:
        """Messages with ``seq < before_seq`` (all when ``None``), newest first."""

    @abc.abstractmethod
    async def last_seq(self, room_id: int) -> int:
        """The room's highest ``seq``; 0 before the first message."""

    @abc.abstractmethod
    async def mark_read(self, room_id: int, user_id: str, seq: int) -> int:
        """Move the user's read marker up to ``seq`` (clamped to the last
        message; a marker never moves back); returns the marker now stored."""

    @abc.abstractmethod
    async def summaries(self, user_id: str, room_ids: list[int]) -> dict[int, RoomSummary]:
        """Last message and unread count of each room, for ``user_id``."""

    async def ping(self) -> None:
        """Raise if the backend does not answer (the health route)."""
        await self.last_seq(0)

    async def close(self) -> None:
        """Release connections; the default backend has none of its own."""
        return None
