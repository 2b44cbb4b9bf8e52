"""The wire format: how records are written in REST answers, Socket.IO events
and stored notifications (PROTOCOL.md). Persistence keeps records; what a
client reads is decided here, in the layer that talks to clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from persistence.chat import ChatMessage
from persistence.gifts import Gift
from persistence.models import CallRecord, Notification, Question, as_utc
from persistence.push import PushSubscription
from signaling.calls.schemas import Signal


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC to the millisecond with a ``Z``, as the wire contract wants."""
    if value is None:
        return None
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def call_wire(call: CallRecord) -> dict[str, Any]:
    """The ``call`` object of PROTOCOL.md."""
    return {
        "id": call.id,
        "caller_id": call.caller_id,
        "callee_id": call.callee_id,
        "scheduled_at": iso(call.scheduled_at),
        "state": call.state.value,
        "started_at": iso(call.started_at),
        "ended_at": iso(call.ended_at),
        "end_reason": call.end_reason.value if call.end_reason else None,
    }


def call_soon_wire(call: CallRecord, user_id: str) -> dict[str, Any]:
    """The ``call_soon`` event and notification for one of the call's users."""
    return {
        "call_id": call.id,
        "scheduled_at": iso(call.scheduled_at),
        "partner_id": call.partner_of(user_id),
    }


def signal_wire(signal: Signal, from_user_id: str) -> dict[str, Any]:
    """The ``signal`` event the partner gets: what the sender sent, validated,
    and who sent it."""
    message: dict[str, Any] = {"call_id": signal.call_id, "from": from_user_id, "type": signal.type}
    if signal.sdp is not None:
        message["sdp"] = signal.sdp
    if signal.candidate is not None:
        # The fields the browser sent, no others: RTCIceCandidate's JSON as is.
        message["candidate"] = signal.candidate.model_dump(exclude_unset=True)
    return message


def notification_wire(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "kind": notification.kind,
        "call_id": notification.call_id,
        "payload": notification.payload,
        "created_at": iso(notification.created_at),
    }


def question_wire(question: Question) -> dict[str, Any]:
    return {"id": question.id, "text": question.text}


def message_wire(message: ChatMessage) -> dict[str, Any]:
    """The ``message`` event of PROTOCOL.md."""
    return {
        "room_id": message.room_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "content": message.content,
        "created_at": iso(message.created_at),
        "client_msg_id": message.client_msg_id,
    }


def gift_wire(gift: Gift) -> dict[str, Any]:
    """The ``gift`` object (see docs/chat-and-gifts.md)."""
    return {
        "id": gift.id,
        "sender_id": gift.sender_id,
        "receiver_id": gift.receiver_id,
        "kind": gift.kind.value,
        "message": gift.message,
        "scheduled_at": iso(gift.scheduled_at),
        "call_id": gift.call_id,
        "opened": gift.opened_at is not None,
        "opened_at": iso(gift.opened_at),
        "created_at": iso(gift.created_at),
    }


def subscription_wire(subscription: PushSubscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "endpoint": subscription.endpoint,
        "created_at": iso(subscription.created_at),
    }
