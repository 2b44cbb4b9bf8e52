"""Payloads of the /call namespace and the call routes, validated strictly."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

#: PROTOCOL limits: an SDP over 64 KiB or a candidate over 4 KiB is invalid.
MAX_SDP = 64 * 1024
MAX_CANDIDATE = 4 * 1024
MAX_ID = 2**53  # what a JavaScript client can represent exactly

CallId = Annotated[int, Field(strict=True, gt=0, lt=MAX_ID)]


def _trimmed(value: str) -> str:
    # The length bound holds for the string as sent (what the JSON Schema of
    # docs/openapi.json says); what remains once trimmed must not be empty.
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


#: Strips surrounding whitespace after the length check of the raw string.
Trimmed = AfterValidator(_trimmed)
UserId = Annotated[str, StringConstraints(min_length=1, max_length=64), Trimmed]
#: A user id in a REST body, where a JSON number is also taken (as its
#: decimal string, by the model's ``_ids_as_strings``): so the JSON Schema says.
BodyUserId = Annotated[
    UserId,
    WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 64}, {"type": "integer"}]}
    ),
]

#: ISO 8601 date and time with a zone, in ASCII digits: ``2026-01-31T18:00:00Z``,
#: ``2026-01-31T19:00:00.250+01:00``.
_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}([.,]\d{1,9})?)?([Zz]|[+-]\d{2}(:?\d{2})?)",
    re.ASCII,
)


def _iso_time(value: object) -> object:
    # PROTOCOL: times are ISO 8601 strings with a zone; pydantic's lax mode
    # would also take epoch seconds, as a number or as a string of digits.
    if not isinstance(value, str) or not _ISO_TIME.fullmatch(value):
        raise ValueError("must be an ISO 8601 string with a zone, e.g. 2026-01-31T18:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    # 0001-01-01T00:00+01:00 parses but has no UTC equivalent: invalid, not a 503.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a time between years 1 and 9999 in UTC") from None


#: A point in time on the wire (``scheduled_at``): the one rule for every payload.
IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_time), AfterValidator(_in_utc)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class CallRef(_Strict):
    """``join``, ``connected`` and ``leave`` all carry just the call id."""

    call_id: CallId


class Candidate(_Strict):
    """What ``RTCIceCandidate.toJSON()`` gives."""

    candidate: Annotated[str, Field(max_length=MAX_CANDIDATE)]
    sdpMid: Annotated[str, Field(max_length=256)] | None = None  # noqa: N815 (wire name)
    sdpMLineIndex: Annotated[int, Field(ge=0, lt=1024)] | None = None  # noqa: N815
    usernameFragment: Annotated[str, Field(max_length=256)] | None = None  # noqa: N815


class Signal(_Strict):
    call_id: CallId
    type: Literal["offer", "answer", "candidate", "end-of-candidates"]
    sdp: Annotated[str, Field(max_length=MAX_SDP)] | None = None
    candidate: Candidate | None = None

    @model_validator(mode="after")
    def _fields_match_type(self) -> Signal:
        if self.type in ("offer", "answer"):
            if self.sdp is None or self.candidate is not None:
                raise ValueError(f"a {self.type} carries sdp and no candidate")
        elif self.type == "candidate":
            if self.candidate is None or self.sdp is not None:
                raise ValueError("a candidate signal carries candidate and no sdp")
        elif self.sdp is not None:
            raise ValueError("end-of-candidates carries no sdp")
        return self


class ScheduleCall(_Strict):
    model_config = ConfigDict(strict=False, extra="forbid", frozen=True)

    partner_id: BodyUserId
    scheduled_at: IsoTime

    @model_validator(mode="before")
    @classmethod
    def _ids_as_strings(cls, data: object) -> object:
        # User ids are strings on the wire; accept a JSON number for convenience.
        partner = data.get("partner_id") if isinstance(data, dict) else None
        if isinstance(partner, int) and not isinstance(partner, bool):
            data = {**data, "partner_id": str(partner)}  # type: ignore[dict-item]
        return data
