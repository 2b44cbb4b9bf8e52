"""In-memory backends: the reference implementation of every contract."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import orjson

from persistence.calls import (
    CallStore,
    NewNotification,
    NoticesOf,
    NotificationStore,
    TooManyOpenCallsError,
)
from persistence.chat import (
    ChatMessage,
    ChatRoom,
    MessageStore,
    RoomStore,
    RoomSummary,
    ordered_pair,
)
from persistence.gifts import Gift, GiftBox, GiftKind, GiftStore
from persistence.models import (
    FINAL_STATES,
    CallChanges,
    CallRecord,
    CallState,
    Notification,
    Question,
    apply_changes,
    as_utc,
    is_due,
    utcnow,
)
from persistence.presence import CallLocks, CallPresence, Entered, PresenceStore
from persistence.questions import QuestionStore


class MemoryCallStore(CallStore):
    def __init__(self, notifications: MemoryNotificationStore | None = None) -> None:
        super().__init__()
        self._calls: dict[int, CallRecord] = {}
        self._ids = itertools.count(1)
        #: where the notifications stored with a change go (the server's
        #: notification store; a store of its own when not given)
        self._notifications = notifications or MemoryNotificationStore()

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
        if open_max and self._count_open_booked(caller_id) >= open_max:
            raise TooManyOpenCallsError(caller_id)
        call = CallRecord(
            id=next(self._ids),
            caller_id=caller_id,
            callee_id=callee_id,
            scheduled_at=as_utc(scheduled_at),
            opens_at=as_utc(opens_at),
            closes_at=as_utc(closes_at),
            state=CallState.SCHEDULED if opened is None else CallState.OPEN,
        )
        self._calls[call.id] = call
        if opened is not None:
            self._notifications.keep(call.id, opened(call))
        self._remember(call)
        return call

    async def get(self, call_id: int) -> CallRecord | None:
        return self._calls.get(call_id)

    async def list_for_user(
        self, user_id: str, limit: int = 100, before: tuple[datetime, int] | None = None
    ) -> list[CallRecord]:
        mine = [c for c in self._calls.values() if c.has_participant(user_id)]
        if before is not None:
            mine = [c for c in mine if (c.scheduled_at, c.id) < before]
        mine.sort(key=lambda c: (c.scheduled_at, c.id), reverse=True)
        return mine[:limit]

    async def transition(
        self, call: CallRecord, changes: CallChanges, notices: NoticesOf | None = None
    ) -> CallRecord | None:
        current = self._calls.get(call.id)
        if current is None or current.version != call.version:
            return None
        updated = apply_changes(current, changes)
        self._calls[call.id] = updated
        if notices is not None:
            self._notifications.keep(call.id, notices(updated))
        return updated

    async def list_unfinished(self) -> list[CallRecord]:
        return [c for c in self._calls.values() if c.state not in FINAL_STATES]

    async def list_due(self, now: datetime) -> list[CallRecord]:
        return [c for c in self._calls.values() if is_due(c, now)]

    async def count_by_state(self) -> dict[CallState, int]:
        return dict(Counter(c.state for c in self._calls.values()))

    def _count_open_booked(self, caller_id: str) -> int:
        return sum(
            1 for c in self._calls.values() if c.caller_id == caller_id and not c.state.is_final
        )


class MemoryNotificationStore(NotificationStore):
    def __init__(self) -> None:
        self._items: list[Notification] = []
        self._ids = itertools.count(1)

    async def add(
        self, user_id: str, kind: str, call_id: int | None, payload: dict[str, Any]
    ) -> Notification:
        item = Notification(next(self._ids), user_id, kind, call_id, dict(payload), utcnow())
        self._items.append(item)
        return item

    def keep(self, call_id: int, notices: Sequence[NewNotification]) -> None:
        """Store the notifications of a call's change (``MemoryCallStore``'s)."""
        now = utcnow()
        for notice in notices:
            item = Notification(
                next(self._ids), notice.user_id, notice.kind, call_id, dict(notice.payload), now
            )
            self._items.append(item)

    async def list_for_user(
        self, user_id: str, limit: int = 50, before_id: int | None = None
    ) -> list[Notification]:
        mine = [n for n in reversed(self._items) if n.user_id == user_id]
        if before_id is not None:
            mine = [n for n in mine if n.id < before_id]
        return mine[:limit]


class MemoryQuestionStore(QuestionStore):
    def __init__(self) -> None:
        self._questions: list[Question] = []

    async def add(self, text: str) -> Question:
        question = Question(len(self._questions) + 1, text)
        self._questions.append(question)
        return question

    async def count(self) -> int:
        return len(self._questions)

    async def random(self) -> Question | None:
        return random.choice(self._questions) if self._questions else None

    async def all(self) -> list[Question]:
        return list(self._questions)


class MemoryPresenceStore(PresenceStore):
    """Presence of one process."""

    def __init__(self) -> None:
        self._members: dict[int, dict[str, str]] = {}
        self._connected: dict[int, set[str]] = {}
        #: (call, recipient) -> (sender, weight, message), oldest first
        self._held: dict[tuple[int, str], deque[tuple[str, int, dict[str, Any]]]] = {}
        self._held_bytes: dict[str, int] = {}
        self._locks = CallLocks()

    def lock(self, call_id: int) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(call_id)

    async def enter(self, call_id: int, user_id: str, sid: str) -> Entered:
        members = self._members.setdefault(call_id, {})
        previous = members.get(user_id)
        members[user_id] = sid
        self._connected.pop(call_id, None)
        held = tuple(self._drop_held((call_id, user_id)))
        return Entered(previous if previous != sid else None, dict(members), held)

    async def leave(self, call_id: int, user_id: str, sid: str) -> bool:
        members = self._members.get(call_id)
        if not members or members.get(user_id) != sid:
            return False
        del members[user_id]
        if not members:
            del self._members[call_id]
        self._connected.pop(call_id, None)
        return True

    async def members(self, call_id: int) -> dict[str, str]:
        return dict(self._members.get(call_id, {}))

    async def mark_connected(
        self, call_id: int, user_id: str
    ) -> tuple[frozenset[str], dict[str, str]]:
        connected = self._connected.setdefault(call_id, set())
        connected.add(user_id)
        return frozenset(connected), dict(self._members.get(call_id, {}))

    async def reset_connected(self, call_id: int) -> None:
        self._connected.pop(call_id, None)

    async def hold(
        self,
        call_id: int,
        recipient: str,
        message: dict[str, Any],
        limit: int,
        *,
        sender: str = "",
        max_bytes: int = 0,
    ) -> bool:
        queue = self._held.setdefault((call_id, recipient), deque())
        if len(queue) >= limit:
            return False
        weight = len(orjson.dumps(message))
        total = self._held_bytes.get(sender, 0) + weight
        if max_bytes and total > max_bytes:
            return False
        queue.append((sender, weight, message))
        self._held_bytes[sender] = total
        return True

    async def held_bytes(self, sender: str) -> int:
        return self._held_bytes.get(sender, 0)

    def _drop_held(self, key: tuple[int, str]) -> list[dict[str, Any]]:
        messages = []
        for sender, weight, message in self._held.pop(key, ()):
            left = self._held_bytes.get(sender, 0) - weight
            if left > 0:
                self._held_bytes[sender] = left
            else:
                self._held_bytes.pop(sender, None)
            messages.append(message)
        return messages

    async def clear(self, call_id: int, users: Iterable[str]) -> dict[str, str]:
        members = self._members.pop(call_id, {})
        self._connected.pop(call_id, None)
        for key in [k for k in self._held if k[0] == call_id]:
            self._drop_held(key)
        return members

    def presence_of(self, call_id: int) -> CallPresence:
        """A copy of everything known of the call."""
        held = {
            recipient: [(sender, message) for sender, _, message in queue]
            for (held_call, recipient), queue in self._held.items()
            if held_call == call_id
        }
        members = dict(self._members.get(call_id, {}))
        return CallPresence(members, frozenset(self._connected.get(call_id, ())), held)


class MemoryRoomStore(RoomStore):
    def __init__(self) -> None:
        self._rooms: dict[int, ChatRoom] = {}
        self._by_pair: dict[tuple[str, str], ChatRoom] = {}
        self._ids = itertools.count(1)

    async def get_or_create(self, user1: str, user2: str) -> tuple[ChatRoom, bool]:
        pair = ordered_pair(user1, user2)
        room = self._by_pair.get(pair)
        if room is not None:
            return room, False
        room = ChatRoom(next(self._ids), pair[0], pair[1], utcnow())
        self._rooms[room.id] = self._by_pair[pair] = room
        return room, True

    async def get(self, room_id: int) -> ChatRoom | None:
        return self._rooms.get(room_id)

    async def find(self, user1: str, user2: str) -> ChatRoom | None:
        return self._by_pair.get(ordered_pair(user1, user2))

    async def list_for_user(self, user_id: str) -> list[ChatRoom]:
        return [r for r in self._rooms.values() if r.has_member(user_id)]


class MemoryMessageStore(MessageStore):
    def __init__(self) -> None:
        #: room id -> its messages; index ``i`` holds ``seq`` ``i + 1``
        self._rooms: dict[int, list[ChatMessage]] = {}
        self._by_client_id: dict[tuple[int, str, str], ChatMessage] = {}
        self._read: dict[tuple[int, str], int] = {}

    async def append(
        self, room_id: int, sender_id: str, content: str, client_msg_id: str
    ) -> tuple[ChatMessage, bool]:
        key = (room_id, sender_id, client_msg_id)
        existing = self._by_client_id.get(key)
        if existing is not None:
            return existing, False
        messages = self._rooms.setdefault(room_id, [])
        message = ChatMessage(
            room_id, len(messages) + 1, sender_id, content, client_msg_id, utcnow()
        )
        messages.append(message)
        self._by_client_id[key] = message
        return message, True

    async def after(self, room_id: int, after_seq: int, limit: int) -> list[ChatMessage]:
        messages = self._rooms.get(room_id, [])
        return messages[max(after_seq, 0) : max(after_seq, 0) + limit]

    async def before(self, room_id: int, before_seq: int | None, limit: int) -> list[ChatMessage]:
        messages = self._rooms.get(room_id, [])
        end = len(messages) if before_seq is None else min(max(before_seq - 1, 0), len(messages))
        return list(reversed(messages[max(end - limit, 0) : end]))

    async def last_seq(self, room_id: int) -> int:
        return len(self._rooms.get(room_id, []))

    async def mark_read(self, room_id: int, user_id: str, seq: int) -> int:
        target = min(seq, await self.last_seq(room_id))
        marker = max(self._read.get((room_id, user_id), 0), target)
        self._read[(room_id, user_id)] = marker
        return marker

    async def summaries(self, user_id: str, room_ids: list[int]) -> dict[int, RoomSummary]:
        result = {}
        for room_id in room_ids:
            messages = self._rooms.get(room_id, [])
            marker = self._read.get((room_id, user_id), 0)
            unread = sum(1 for m in messages[marker:] if m.sender_id != user_id)
            last = messages[-1] if messages else None
            result[room_id] = RoomSummary(room_id, last, unread, marker)
        return result


class MemoryGiftStore(GiftStore):
    def __init__(self, calls: CallStore) -> None:
        self._calls = calls
        self._gifts: dict[int, Gift] = {}
        self._ids = itertools.count(1)

    async def create(self, sender_id: str, receiver_id: str, message: str) -> Gift:
        gift = Gift(next(self._ids), sender_id, receiver_id, GiftKind.GENERAL, message, utcnow())
        self._gifts[gift.id] = gift
        return gift

    async def create_with_call(
        self,
        sender_id: str,
        receiver_id: str,
        message: str,
        *,
        scheduled_at: datetime,
        opens_at: datetime,
        closes_at: datetime,
        open_max: int = 0,
        opened: NoticesOf | None = None,
    ) -> tuple[Gift, CallRecord]:
        # Nothing between the two inserts can fail or yield to another task.
        call = await self._calls.create(
            sender_id,
            receiver_id,
            scheduled_at,
            opens_at,
            closes_at,
            open_max=open_max,
            opened=opened,
        )
        gift = Gift(
            next(self._ids),
            sender_id,
            receiver_id,
            GiftKind.SPECIAL,
            message,
            utcnow(),
            scheduled_at=scheduled_at,
            call_id=call.id,
        )
        self._gifts[gift.id] = gift
        return gift, call

    async def get(self, gift_id: int) -> Gift | None:
        return self._gifts.get(gift_id)

    async def list_for_user(
        self, user_id: str, box: GiftBox, limit: int = 100, before_id: int | None = None
    ) -> list[Gift]:
        if box is GiftBox.RECEIVED:
            mine = [g for g in self._gifts.values() if g.receiver_id == user_id]
        else:
            mine = [g for g in self._gifts.values() if g.sender_id == user_id]
        if before_id is not None:
            mine = [g for g in mine if g.id < before_id]
        mine.sort(key=lambda g: g.id, reverse=True)
        return mine[:limit]

    async def open(self, gift_id: int, at: datetime) -> Gift | None:
        gift = self._gifts.get(gift_id)
        if gift is None or gift.opened_at is not None:
            return gift
        gift = self._gifts[gift_id] = dataclasses.replace(gift, opened_at=at)
        return gift

    async def has_sent(self, sender_id: str, receiver_id: str) -> bool:
        return any(
            g.sender_id == sender_id and g.receiver_id == receiver_id for g in self._gifts.values()
        )
