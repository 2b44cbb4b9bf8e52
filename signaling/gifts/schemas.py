"""Payloads of the gift routes, validated strictly."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from persistence.gifts import MAX_GIFT_MESSAGE
from signaling.calls.schemas import BodyUserId, IsoTime


class SendGift(BaseModel):
    model_config = ConfigDict(strict=False, extra="forbid", frozen=True)

    receiver_id: BodyUserId
    kind: Literal["general", "special"]
    message: Annotated[str, Field(strict=True, max_length=MAX_GIFT_MESSAGE)]
    scheduled_at: IsoTime | None = None

    @model_validator(mode="before")
    @classmethod
    def _ids_as_strings(cls, data: object) -> object:
        # User ids are strings on the wire; accept a JSON number for convenience.
        receiver = data.get("receiver_id") if isinstance(data, dict) else None
        if isinstance(receiver, int) and not isinstance(receiver, bool):
            data = {**data, "receiver_id": str(receiver)}  # type: ignore[dict-item]
        return data

    @model_validator(mode="after")
    def _scheduled_at_matches_kind(self) -> SendGift:
        if self.kind == "special" and self.scheduled_at is None:
            raise ValueError("a special gift needs scheduled_at")
        if self.kind == "general" and self.scheduled_at is not None:
            raise ValueError("only a special gift has scheduled_at")
        return self
