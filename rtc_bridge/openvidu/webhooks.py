"""OpenVidu 2's webhook events as typed data, and the names this project gives
OpenVidu (session ids, a connection's ``serverData``) so that its events lead
back to a call and a user.

Each event the backend acts on has its own type, picked by the body's
``event`` field (a pydantic discriminated union, :data:`WebhookEvent`), in
which the fields that event must carry are required: a handler never meets a
missing one. Any other event is accepted as :class:`OtherEvent` and ignored.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel

SESSION_PREFIX = "call-"

PARTICIPANT_JOINED = "participantJoined"
PARTICIPANT_LEFT = "participantLeft"
WEBRTC_CONNECTION_CREATED = "webrtcConnectionCreated"
SESSION_DESTROYED = "sessionDestroyed"
#: The webhook events the backend acts on; the others are accepted and ignored.
HANDLED_EVENTS = frozenset(
    {PARTICIPANT_JOINED, PARTICIPANT_LEFT, WEBRTC_CONNECTION_CREATED, SESSION_DESTROYED}
)
#: The union's tag for every event not in :data:`HANDLED_EVENTS`.
_OTHER = "other"


class WebhookError(ValueError):
    """A webhook body that is not an OpenVidu event."""


_NonEmpty = Annotated[str, Field(min_length=1)]


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


def _text_or_none(value: Any) -> Any:
    # serverData is ours, read by parse_server_data: anything else is no data.
    return value if isinstance(value, str) else None


def _empty_as_none(value: Any) -> Any:
    # Older OpenVidu versions send receivingFrom "" for a publisher.
    return None if value == "" else value


class _Event(BaseModel):
    """What every OpenVidu event carries (the camelCase names are OpenVidu's)."""

    model_config = ConfigDict(strict=True, frozen=True, alias_generator=to_camel)

    event: str
    #: UTC milliseconds
    timestamp: Annotated[int, Field(ge=0)]
    session_id: _NonEmpty
    unique_session_id: str | None = None
    connection_id: str | None = None

    def key(self) -> tuple[Any, ...]:
        """What makes two deliveries the same event."""
        return (
            self.unique_session_id or self.session_id,
            self.connection_id,
            self.event,
            self.timestamp,
        )


class _ConnectionEvent(_Event):
    connection_id: _NonEmpty


class ParticipantJoined(_ConnectionEvent):
    event: Literal["participantJoined"]
    #: what the connection was made with (:func:`server_data_for`), if a string
    server_data: Annotated[str | None, BeforeValidator(_text_or_none)] = None


class ParticipantLeft(_ConnectionEvent):
    event: Literal["participantLeft"]
    reason: str | None = None


class WebrtcConnectionCreated(_ConnectionEvent):
    event: Literal["webrtcConnectionCreated"]
    #: ``OUTBOUND`` (publishing) or ``INBOUND`` (receiving)
    connection: str | None = None
    receiving_from: Annotated[str | None, BeforeValidator(_empty_as_none)] = None
    stream_id: str | None = None

    @property
    def publishing(self) -> bool:
        if self.connection is not None:
            return self.connection.upper() == "OUTBOUND"
        return not self.receiving_from

    def key(self) -> tuple[Any, ...]:
        # A connection publishes one stream and subscribes to others.
        return (*super().key(), self.stream_id, self.receiving_from)


class SessionDestroyed(_Event):
    event: Literal["sessionDestroyed"]
    reason: str | None = None


class OtherEvent(_Event):
    """An event the backend does not act on (recordings, signals, ...)."""

    event: _NonEmpty
    session_id: Annotated[str, BeforeValidator(_none_as_empty)] = ""


def _event_tag(body: Any) -> str:
    # A body when validating; a model instance when pydantic serializes one.
    event = body.get("event") if isinstance(body, dict) else getattr(body, "event", None)
    return event if isinstance(event, str) and event in HANDLED_EVENTS else _OTHER


#: An OpenVidu webhook event: one type per handled event, else :class:`OtherEvent`.
WebhookEvent = Annotated[
    Annotated[ParticipantJoined, Tag(PARTICIPANT_JOINED)]
    | Annotated[ParticipantLeft, Tag(PARTICIPANT_LEFT)]
    | Annotated[WebrtcConnectionCreated, Tag(WEBRTC_CONNECTION_CREATED)]
    | Annotated[SessionDestroyed, Tag(SESSION_DESTROYED)]
    | Annotated[OtherEvent, Tag(_OTHER)],
    Discriminator(_event_tag),
]
_EVENTS: TypeAdapter[WebhookEvent] = TypeAdapter(WebhookEvent)


def parse_webhook(body: Any) -> WebhookEvent:
    """An OpenVidu webhook body (decoded JSON) as its event type; raises
    :class:`WebhookError` when it is not an OpenVidu event."""
    if not isinstance(body, dict):
        raise WebhookError("the body must be a JSON object")
    try:
        return _EVENTS.validate_python(body)
    except ValidationError as exc:
        # loc[0] is the union's tag; the rest names the field, as OpenVidu does.
        raise WebhookError(
            "; ".join(
                f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
        ) from None


def server_data_for(call_id: int, user_id: str) -> str:
    """The ``serverData`` of a participant's connection: names the call and user."""
    return json.dumps({"call_id": call_id, "user_id": user_id}, separators=(",", ":"))


def parse_server_data(text: str | None) -> tuple[int, str] | None:
    """``(call_id, user_id)`` from a ``serverData`` made by :func:`server_data_for`."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    call_id, user_id = data.get("call_id"), data.get("user_id")
    if not isinstance(call_id, int) or isinstance(call_id, bool) or not isinstance(user_id, str):
        return None
    return call_id, user_id


def session_id_for(call_id: int, prefix: str = SESSION_PREFIX) -> str:
    return f"{prefix}{call_id}"


def call_id_for(session_id: str, prefix: str = SESSION_PREFIX) -> int | None:
    match = re.fullmatch(re.escape(prefix) + r"([1-9][0-9]{0,14})", session_id)
    return int(match.group(1)) if match else None
