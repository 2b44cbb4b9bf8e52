"""In-memory backends: the reference implementation of every contract."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter
from datetime import datetime
from typing import Any

from persistence.calls import CallStore, NotificationStore, is_due
from persistence.models import (
    FINAL_STATES,
    CallChanges,
    CallRecord,
    CallState,
    Notification,
    Question,
    utcnow,
)
from persistence.presence import PresenceStore
from persistence.questions import QuestionStore


def apply_changes(call: CallRecord, changes: CallChanges) -> CallRecord:
    """The record ``changes`` turn ``call`` into (one version later)."""
    updates: dict[str, Any] = {"state": changes.state, "version": call.version + 1}
    for name in ("live_at", "ends_at", "started_at", "ended_at", "end_reason"):
        value = getattr(changes, name)
        if value is not None:
            updates[name] = value
        elif name in changes.clear:
            updates[name] = None
    return dataclasses.replace(call, **updates)


class MemoryCallStore(CallStore):
    def __init__(self) -> None:
        self._calls: dict[int, CallRecord] = {}
        self._ids = itertools.count(1)

    async def create(
        self,
        caller_id: str,
        callee_id: str,
        scheduled_at: datetime,
        opens_at: datetime,
        closes_at: datetime,
    ) -> CallRecord:
        call = CallRecord(
            id=next(self._ids),
            caller_id=caller_id,
            callee_id=callee_id,
            scheduled_at=scheduled_at,
            opens_at=opens_at,
            closes_at=closes_at,
            state=CallState.SCHEDULED,
        )
        self._calls[call.id] = call
        return call

    async def get(self, call_id: int) -> CallRecord | None:
        return self._calls.get(call_id)

    async def list_for_user(self, user_id: str, limit: int = 100) -> list[CallRecord]:
        mine = [c for c in self._calls.values() if c.has_participant(user_id)]
        mine.sort(key=lambda c: (c.scheduled_at, c.id), reverse=True)
        return mine[:limit]

    async def transition(self, call: CallRecord, changes: CallChanges) -> CallRecord | None:
        current = self._calls.get(call.id)
        if current is None or current.version != call.version:
            return None
        updated = apply_changes(current, changes)
        self._calls[call.id] = updated
        return updated

    async def list_unfinished(self) -> list[CallRecord]:
        return [c for c in self._calls.values() if c.state not in FINAL_STATES]

    async def list_due(self, now: datetime) -> list[CallRecord]:
        return [c for c in self._calls.values() if is_due(c, now)]

    async def count_by_state(self) -> dict[CallState, int]:
        return dict(Counter(c.state for c in self._calls.values()))


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

    async def list_for_user(self, user_id: str, limit: int = 50) -> list[Notification]:
        mine = [n for n in reversed(self._items) if n.user_id == user_id]
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


class MemoryPresenceStore(PresenceStore):
    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    async def enter(self, call_id: int, user_id: str, sid: str) -> str | None:
        members = self._calls.setdefault(call_id, {})
        previous = members.get(user_id)
        members[user_id] = sid
        return previous if previous != sid else None

    async def leave(self, call_id: int, user_id: str, sid: str) -> bool:
        members = self._calls.get(call_id)
        if not members or members.get(user_id) != sid:
            return False
        del members[user_id]
        if not members:
            del self._calls[call_id]
        return True

    async def members(self, call_id: int) -> dict[str, str]:
        return dict(self._calls.get(call_id, {}))

    async def clear(self, call_id: int) -> None:
        self._calls.pop(call_id, None)
