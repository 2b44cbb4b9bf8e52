"""Payloads of the /call namespace and the call routes, validated strictly."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

#: PROTOCOL limits: an SDP over 64 KiB or a candidate over 4 KiB is invalid.
MAX_SDP = 64 * 1024
MAX_CANDIDATE = 4 * 1024
MAX_ID = 2**53  # what a JavaScript client can represent exactly

CallId = Annotated[int, Field(strict=True, gt=0, lt=MAX_ID)]
UserId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


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

    partner_id: UserId
    scheduled_at: AwareDatetime

    @field_validator("scheduled_at", mode="before")
    @classmethod
    def _time_is_a_string(cls, value: object) -> object:
        # PROTOCOL: times are ISO 8601 strings; lax mode would take epoch numbers.
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 string with a zone, e.g. 2026-01-31T18:00:00Z")
        return value

    @model_validator(mode="before")
    @classmethod
    def _ids_as_strings(cls, data: object) -> object:
        # User ids are strings on the wire; accept a JSON number for convenience.
        partner = data.get("partner_id") if isinstance(data, dict) else None
        if isinstance(partner, int) and not isinstance(partner, bool):
            data = {**data, "partner_id": str(partner)}  # type: ignore[dict-item]
        return data
