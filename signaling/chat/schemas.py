"""Payloads of the /chat namespace and the chat routes, validated strictly."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from persistence.chat import MAX_CLIENT_MSG_ID, MAX_CONTENT
from signaling.calls.schemas import MAX_ID

RoomId = Annotated[int, Field(strict=True, gt=0, lt=MAX_ID)]
Seq = Annotated[int, Field(strict=True, ge=0, lt=MAX_ID)]
Content = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_CONTENT)]
ClientMsgId = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_CLIENT_MSG_ID)]

#: ``GET …/messages``: at most this many per page, this many by default.
MAX_PAGE = 100
DEFAULT_PAGE = 50
#: ``sync`` answers at most this many messages; ``has_more`` says to ask again.
MAX_SYNC = 500


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class SendMessage(_Strict):
    room_id: RoomId
    content: Content
    client_msg_id: ClientMsgId


class SyncRequest(_Strict):
    room_id: RoomId
    after_seq: Seq


class ReadRequest(_Strict):
    room_id: RoomId
    seq: Seq


class MarkRead(_Strict):
    """``POST /api/chat/rooms/{id}/read``."""

    seq: Seq
