"""Gifts between users. A special gift books a call through the call service,
stored in the same transaction as the gift; gifts both ways open a chat room."""

from __future__ import annotations

import logging
from datetime import datetime

from persistence.calls import NoticesOf
from persistence.gifts import Gift, GiftBox, GiftKind, GiftStore
from persistence.models import CallRecord, utcnow
from signaling.calls.service import CallService
from signaling.chat.service import ChatService
from signaling.errors import forbidden, invalid, not_found
from signaling.metrics import Metrics
from signaling.quotas import Quotas

logger = logging.getLogger(__name__)


class GiftService:
    def __init__(
        self,
        *,
        gifts: GiftStore,
        calls: CallService,
        chat: ChatService,
        metrics: Metrics,
        quotas: Quotas | None = None,
    ) -> None:
        self._gifts = gifts
        self._quotas = quotas
        self._calls = calls
        self._chat = chat
        self._metrics = metrics

    async def send(
        self,
        sender_id: str,
        receiver_id: str,
        kind: GiftKind,
        message: str,
        scheduled_at: datetime | None = None,
    ) -> Gift:
        if receiver_id == sender_id:
            raise invalid("receiver_id: you cannot give yourself a gift")
        if self._quotas is not None:
            await self._quotas.check_gift(sender_id)
        if kind is GiftKind.SPECIAL:
            if scheduled_at is None:
                raise invalid("scheduled_at: a special gift needs one")
            gift = await self._send_special(sender_id, receiver_id, message, scheduled_at)
        else:
            gift = await self._gifts.create(sender_id, receiver_id, message)
        self._metrics.gifts.labels(kind.value).inc()
        logger.info(
            "gift %s sent",
            gift.id,
            extra={
                "event": "gift.sent",
                "gift_id": gift.id,
                "kind": kind.value,
                "sender_id": sender_id,
                "receiver_id": receiver_id,
                "call_id": gift.call_id,
            },
        )
        # Checked after our gift is committed: of two crossing gifts, the
        # later check sees the other, and the room's pair key makes it once.
        if await self._gifts.has_sent(receiver_id, sender_id):
            await self._chat.open_room(sender_id, receiver_id)
        return gift

    async def _send_special(
        self, sender_id: str, receiver_id: str, message: str, scheduled_at: datetime
    ) -> Gift:
        made: list[Gift] = []

        async def create(
            opens_at: datetime, closes_at: datetime, open_max: int, opened: NoticesOf | None
        ) -> CallRecord:
            gift, call = await self._gifts.create_with_call(
                sender_id,
                receiver_id,
                message,
                scheduled_at=scheduled_at,
                opens_at=opens_at,
                closes_at=closes_at,
                open_max=open_max,
                opened=opened,
            )
            made.append(gift)
            return call

        # The call service validates the time and arms the call's timer; the
        # store inserts gift and call in one transaction.
        await self._calls.schedule(sender_id, receiver_id, scheduled_at, create=create)
        return made[0]

    async def list_gifts(
        self, user_id: str, box: GiftBox, limit: int, before_id: int | None = None
    ) -> list[Gift]:
        return await self._gifts.list_for_user(user_id, box, limit, before_id)

    async def get(self, user_id: str, gift_id: int) -> Gift:
        gift = await self._gifts.get(gift_id)
        if gift is None or not gift.has_party(user_id):
            raise not_found("no such gift")  # REST does not reveal other people's gifts
        return gift

    async def open(self, user_id: str, gift_id: int) -> Gift:
        gift = await self.get(user_id, gift_id)
        if gift.receiver_id != user_id:
            raise forbidden("only the receiver opens a gift")
        opened = await self._gifts.open(gift_id, utcnow())
        assert opened is not None  # gifts are never deleted
        if opened.opened_at != gift.opened_at:
            logger.info(
                "gift %s opened",
                gift_id,
                extra={"event": "gift.opened", "gift_id": gift_id, "receiver_id": user_id},
            )
        return opened
