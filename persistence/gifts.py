"""Store contract for gifts; a special gift is stored together with its call."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from datetime import datetime

from persistence.calls import NoticesOf
from persistence.models import CallRecord

#: A gift's message is at most this many characters.
MAX_GIFT_MESSAGE = 500


class GiftKind(enum.StrEnum):
    GENERAL = "general"
    SPECIAL = "special"


class GiftBox(enum.StrEnum):
    RECEIVED = "received"
    SENT = "sent"


@dataclass(frozen=True, slots=True)
class Gift:
    id: int
    sender_id: str
    receiver_id: str
    kind: GiftKind
    message: str
    created_at: datetime
    #: a special gift's call: when it is and which call it is
    scheduled_at: datetime | None = None
    call_id: int | None = None
    opened_at: datetime | None = None

    def has_party(self, user_id: str) -> bool:
        return user_id in (self.sender_id, self.receiver_id)


class GiftStore(abc.ABC):
    @abc.abstractmethod
    async def create(self, sender_id: str, receiver_id: str, message: str) -> Gift:
        """Insert a general gift."""

    @abc.abstractmethod
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
        """Insert a special gift and its call (state ``scheduled``, the sender
        as caller) in one transaction: both are stored or neither is. With
        ``open_max``, as :meth:`CallStore.create`: :class:`TooManyOpenCallsError`
        and nothing stored when the sender has that many calls not over.
        ``opened``, as :meth:`CallStore.create`: the call is inserted ``open``
        with these notifications, in the same transaction."""

    @abc.abstractmethod
    async def get(self, gift_id: int) -> Gift | None: ...

    @abc.abstractmethod
    async def list_for_user(
        self, user_id: str, box: GiftBox, limit: int = 100, before_id: int | None = None
    ) -> list[Gift]:
        """The user's received or sent gifts, newest (highest id) first, at
        most ``limit``; with ``before_id`` only those with a lower id (the next
        page after a page that ended with ``before_id``)."""

    @abc.abstractmethod
    async def open(self, gift_id: int, at: datetime) -> Gift | None:
        """Set ``opened_at`` if it is not set yet (a second open changes
        nothing); returns the stored gift, ``None`` if there is none."""

    @abc.abstractmethod
    async def has_sent(self, sender_id: str, receiver_id: str) -> bool:
        """Whether ``sender_id`` ever gave ``receiver_id`` a gift."""
