"""The machine-readable contract: an OpenAPI 3.1 description of every REST
route and a JSON Schema of every Socket.IO event payload, both built from the
pydantic models the handlers validate with.

The routes are data (:data:`ROUTES`): ``tests/unit/test_openapi.py`` fails
when the app has a route the table does not describe or the table describes a
route the app does not have, and when ``docs/openapi.json`` or
``docs/events.schema.json`` is not what this module generates
(``python -m signaling openapi > docs/openapi.json``,
``python -m signaling events-schema > docs/events.schema.json``).

The answer models below describe what signaling/wire.py and the handlers send.
They forbid extra fields (``additionalProperties: false``), so a field added
on the wire but not here fails the schemathesis run
(``tests/functional/test_openapi_fuzz.py``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from persistence.chat import MAX_CLIENT_MSG_ID, MAX_CONTENT
from persistence.gifts import GiftBox, GiftKind
from persistence.models import CallState, EndReason
from persistence.push import MAX_ENDPOINT
from signaling.calls.routes import MAX_CALLS_PAGE, MAX_NOTIFICATIONS_PAGE
from signaling.calls.schemas import MAX_ID, CallRef, ScheduleCall, Signal
from signaling.chat.schemas import MAX_PAGE as MAX_MESSAGES_PAGE
from signaling.chat.schemas import MarkRead, ReadRequest, SendMessage, SyncRequest
from signaling.errors import STATUS_BY_CODE
from signaling.gifts.routes import MAX_PAGE as MAX_GIFTS_PAGE
from signaling.gifts.schemas import SendGift
from signaling.http import MAX_DIGITS
from signaling.ops import DevLogin
from signaling.push.schemas import Subscribe, Unsubscribe
from signaling.questions import MAX_QUESTION, NewQuestion
from signaling.web_routes import WEB_ROOT
from signaling.webhooks.janus import PATH as JANUS_WEBHOOK
from signaling.webhooks.openvidu import PATH as OPENVIDU_WEBHOOK
from signaling.webhooks.openvidu import SECRET_HEADER

TITLE = "GiftCall signaling"
VERSION = "0.1.0"

#: Routes of the app that are not REST: Socket.IO's transport, described by
#: ``docs/events.schema.json`` instead. The drift check knows them by name.
NOT_REST = frozenset({("GET", "/socket.io/"), ("POST", "/socket.io/"), ("OPTIONS", "/socket.io/")})

#: The largest id a path or query takes: ASCII digits, at most MAX_DIGITS of them.
_MAX_NUMBER = min(MAX_ID - 1, 10**MAX_DIGITS - 1)
_REF = "#/components/schemas/{model}"


# --- Answers: what the routes send -------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: A time as the server writes it: UTC, milliseconds, ``Z``.
WireTime = Annotated[
    str,
    Field(
        json_schema_extra={"format": "date-time"},
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        examples=["2026-11-25T23:44:13.741Z"],
    ),
]
WireId = Annotated[int, Field(ge=1, lt=MAX_ID)]
WireUser = Annotated[str, Field(min_length=1, max_length=64)]


class Call(_Wire):
    id: WireId
    caller_id: WireUser
    callee_id: WireUser
    scheduled_at: WireTime
    state: CallState
    started_at: WireTime | None
    ended_at: WireTime | None
    end_reason: EndReason | None


class Notification(_Wire):
    id: WireId
    kind: Literal["call_soon"]
    call_id: WireId | None
    payload: dict[str, Any] = Field(description="the payload of the event of that kind")
    created_at: WireTime


class Question(_Wire):
    id: WireId
    text: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION)]


class ChatMessage(_Wire):
    """A chat message (also the ``message`` event of ``/chat``)."""

    room_id: WireId
    seq: WireId
    sender_id: WireUser
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)]
    created_at: WireTime
    client_msg_id: Annotated[str, Field(min_length=1, max_length=MAX_CLIENT_MSG_ID)]


class ChatRoom(_Wire):
    id: WireId
    partner_id: WireUser
    last_message: ChatMessage | None
    unread_count: Annotated[int, Field(ge=0)]
    last_read_seq: Annotated[int, Field(ge=0)]
    created_at: WireTime


class Gift(_Wire):
    id: WireId
    sender_id: WireUser
    receiver_id: WireUser
    kind: GiftKind
    message: str
    scheduled_at: WireTime | None
    call_id: WireId | None
    opened: bool
    opened_at: WireTime | None
    created_at: WireTime


class Ok(_Wire):
    ok: Literal[True]


class CallAnswer(Ok):
    call: Call


class CallPage(Ok):
    calls: list[Call]
    next_before: str | None = Field(description="pass as `before` for the next page")


class NotificationPage(Ok):
    notifications: list[Notification]
    next_before_id: WireId | None


class QuestionAnswer(Ok):
    question: Question


class RoomList(Ok):
    rooms: list[ChatRoom]


class MessageList(Ok):
    messages: list[ChatMessage]


class ReadMarker(Ok):
    room_id: WireId
    seq: Annotated[int, Field(ge=0)]


class GiftAnswer(Ok):
    gift: Gift


class GiftPage(Ok):
    gifts: list[Gift]
    next_before_id: WireId | None


class DevToken(Ok):
    user_id: WireUser
    token: str


class PushSubscription(_Wire):
    id: WireId
    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT)]
    created_at: WireTime


class VapidKeyAnswer(Ok):
    public_key: str = Field(description="base64url of the uncompressed P-256 point")


class PushSubscriptionAnswer(Ok):
    subscription: PushSubscription


#: The error codes of docs/contract.md.
_CODES: list[JsonValue] = [*sorted(STATUS_BY_CODE)]


class ErrorDetail(_Wire):
    code: str = Field(json_schema_extra={"enum": _CODES})
    message: Annotated[str, Field(min_length=1)]
    retry_after: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="rate_limited only: whole seconds to wait"
    )


class ErrorBody(_Wire):
    """Every REST error and every failed Socket.IO ack (docs/contract.md, Errors)."""

    ok: Literal[False]
    error: ErrorDetail


# --- The route table -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    description: str

    def to_openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path",
            "description": self.description,
            "schema": self.schema,
        }


def _integer(name: str, where: Literal["path", "query"], high: int, description: str) -> Param:
    number = {"type": "integer", "minimum": 1, "maximum": min(high, _MAX_NUMBER)}
    if where == "path":
        return Param(name, where, number, description)
    # signaling.http.query_int: an empty value is the same as none.
    empty = {"type": "string", "maxLength": 0}
    return Param(name, where, {"anyOf": [number, empty]}, f"{description}; empty means absent")


ID = _integer("id", "path", _MAX_NUMBER, "the id")
BEFORE_ID = _integer("before_id", "query", _MAX_NUMBER, "the `next_before_id` of the last page")


def _limit(high: int, default: int) -> Param:
    return _integer("limit", "query", high, f"page size, default {default}")


#: How the caller proves who it is (components.securitySchemes).
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "SIGNALING_METRICS_TOKEN; needed only when it is set",
    },
    "webhookSecret": {"type": "apiKey", "in": "header", "name": SECRET_HEADER},
    "janusEvents": {
        "type": "http",
        "scheme": "basic",
        "description": "the password is SIGNALING_JANUS_EVENT_SECRET",
    },
}


@dataclass(frozen=True, slots=True)
class Route:
    """One REST operation. ``answer`` is the JSON model of the success body,
    or the media type of a body that is not the JSON envelope."""

    method: str
    path: str
    tag: str
    summary: str
    answer: type[BaseModel] | str
    status: int = 200
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    security: Literal["bearer", "none", "metricsToken", "webhookSecret", "janusEvents"] = "bearer"
    #: Error statuses beyond those implied (400 for input, 401 for auth,
    #: 404 for an id, 413 for a body, 503 for any failure).
    errors: tuple[int, ...] = ()

    @property
    def error_statuses(self) -> list[int]:
        implied = {503}
        if self.body is not None:
            implied |= {400, 413}
        if self.params:
            implied.add(400)
        if self.security != "none":
            implied.add(401)
        if "{" in self.path:
            implied.add(404)
        return sorted(implied | set(self.errors))


_HTML = "text/html"

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/calls",
        "calls",
        "Schedule a call with partner_id",
        CallAnswer,
        201,
        body=ScheduleCall,
        errors=(429,),
    ),
    Route(
        "GET",
        "/api/calls",
        "calls",
        "My calls, latest scheduled_at first",
        CallPage,
        params=(
            _limit(MAX_CALLS_PAGE, MAX_CALLS_PAGE),
            Param(
                "before",
                "query",
                {"type": "string", "pattern": r"^(\d{1,18}-\d{1,15})?$"},
                "the `next_before` cursor of the last page; empty means absent",
            ),
        ),
    ),
    Route("GET", "/api/calls/{id}", "calls", "One of my calls", CallAnswer, params=(ID,)),
    Route(
        "DELETE",
        "/api/calls/{id}",
        "calls",
        "Cancel a call before it is live",
        CallAnswer,
        params=(ID,),
        errors=(409,),
    ),
    Route(
        "GET",
        "/api/notifications",
        "calls",
        "My notifications, newest first",
        NotificationPage,
        params=(_limit(MAX_NOTIFICATIONS_PAGE, 50), BEFORE_ID),
    ),
    Route(
        "GET",
        "/api/questions/random",
        "questions",
        "A random icebreaker",
        QuestionAnswer,
        errors=(404,),
    ),
    Route(
        "POST",
        "/api/questions",
        "questions",
        "Add an icebreaker (admins only)",
        QuestionAnswer,
        201,
        body=NewQuestion,
        errors=(403,),
    ),
    Route("GET", "/api/chat/rooms", "chat", "My chat rooms, newest activity first", RoomList),
    Route(
        "GET",
        "/api/chat/rooms/{id}/messages",
        "chat",
        "A room's history, newest first",
        MessageList,
        params=(
            ID,
            _integer("before_seq", "query", _MAX_NUMBER, "only messages below this seq"),
            _limit(MAX_MESSAGES_PAGE, 50),
        ),
    ),
    Route(
        "POST",
        "/api/chat/rooms/{id}/read",
        "chat",
        "Mark a room read up to seq",
        ReadMarker,
        body=MarkRead,
        params=(ID,),
        errors=(429,),
    ),
    Route(
        "POST",
        "/api/gifts",
        "gifts",
        "Send a gift (a special one schedules a call)",
        GiftAnswer,
        201,
        body=SendGift,
        errors=(429,),
    ),
    Route(
        "GET",
        "/api/gifts",
        "gifts",
        "My received or sent gifts, newest first",
        GiftPage,
        params=(
            Param(
                "box",
                "query",
                {"type": "string", "enum": [b.value for b in GiftBox]},
                "received (default) or sent",
            ),
            _limit(MAX_GIFTS_PAGE, MAX_GIFTS_PAGE),
            BEFORE_ID,
        ),
    ),
    Route("GET", "/api/gifts/{id}", "gifts", "One of my gifts", GiftAnswer, params=(ID,)),
    Route(
        "POST",
        "/api/gifts/{id}/open",
        "gifts",
        "Open a gift I received",
        GiftAnswer,
        params=(ID,),
        errors=(403, 429),
    ),
    Route("GET", "/api/health", "operations", "Every backend answers", Ok, security="none"),
    Route(
        "GET", "/metrics", "operations", "Prometheus metrics", "text/plain", security="metricsToken"
    ),
    Route(
        "POST",
        "/api/dev/login",
        "operations",
        "Mint a token (dev mode only, else 404)",
        DevToken,
        body=DevLogin,
        security="none",
        errors=(404,),
    ),
    Route(
        "POST",
        OPENVIDU_WEBHOOK,
        "operations",
        "OpenVidu's session events",
        Ok,
        security="webhookSecret",
        errors=(400, 404),
    ),
    Route(
        "POST",
        JANUS_WEBHOOK,
        "operations",
        "Janus's events (its sample HTTP event handler)",
        Ok,
        security="janusEvents",
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/api/openapi.json",
        "operations",
        "This description",
        "application/json",
        security="none",
    ),
    Route(
        "GET",
        "/api/docs",
        "operations",
        "This description, rendered for people",
        _HTML,
        security="none",
    ),
    Route("GET", "/", "web client", "The web client's page", _HTML, security="none"),
    Route(
        "GET",
        "/web/{name}",
        "web client",
        "A file of the web client",
        "*/*",
        params=(Param("name", "path", {"type": "string", "maxLength": 255}, "a file name"),),
        security="none",
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/push/vapid-public-key",
        "push",
        "The server's VAPID public key (applicationServerKey)",
        VapidKeyAnswer,
        security="none",
        errors=(404,),
    ),
    Route(
        "POST",
        "/api/push/subscriptions",
        "push",
        "Store this browser's PushSubscription for me (my oldest go beyond the limit)",
        PushSubscriptionAnswer,
        201,
        body=Subscribe,
        errors=(404,),
    ),
    Route(
        "DELETE",
        "/api/push/subscriptions",
        "push",
        "Remove my subscription with that endpoint",
        Ok,
        body=Unsubscribe,
        errors=(404,),
    ),
)


# --- OpenAPI -----------------------------------------------------------------


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the description names: bodies as validated, answers as sent."""
    seen: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for route in ROUTES:
        if route.body is not None:
            seen.append((route.body, "validation"))
        if not isinstance(route.answer, str):
            seen.append((route.answer, "serialization"))
    return list(dict.fromkeys(seen))


def _ref(model: type[BaseModel], mode: JsonSchemaMode, refs: dict[Any, Any]) -> dict[str, Any]:
    return dict(refs[(model, mode)])


_ERROR_HEADERS = {
    429: {
        "Retry-After": {
            "description": "whole seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    }
}


def _operation(route: Route, refs: dict[Any, Any]) -> dict[str, Any]:
    error = {"application/json": {"schema": _ref(ErrorBody, "serialization", refs)}}
    if isinstance(route.answer, str):
        success: dict[str, Any] = {route.answer: {"schema": {}}}
    else:
        success = {"application/json": {"schema": _ref(route.answer, "serialization", refs)}}
    responses: dict[str, Any] = {str(route.status): {"description": "done", "content": success}}
    for status in route.error_statuses:
        responses[str(status)] = {
            "description": _ERROR_DESCRIPTION[status],
            "content": error,
            **({"headers": _ERROR_HEADERS[status]} if status in _ERROR_HEADERS else {}),
        }
    operation: dict[str, Any] = {
        "operationId": _operation_id(route),
        "tags": [route.tag],
        "summary": route.summary,
        "responses": responses,
        "security": _security(route),
    }
    if route.params:
        operation["parameters"] = [p.to_openapi() for p in route.params]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body, "validation", refs)}},
        }
    elif route.path in (OPENVIDU_WEBHOOK, JANUS_WEBHOOK):
        # The media server's own format, parsed by rtc_bridge.openvidu.parse_webhook
        # or rtc_bridge.janus.parse_events (one event, or an array of them).
        schema: dict[str, Any] = {"type": "object"}
        if route.path == JANUS_WEBHOOK:
            schema = {"oneOf": [schema, {"type": "array", "items": schema}]}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return operation


def _security(route: Route) -> list[dict[str, list[str]]]:
    if route.security == "none":
        return []
    if route.security == "metricsToken":
        return [{}, {"metricsToken": []}]  # open unless the token is configured
    return [{route.security: []}]


_ERROR_DESCRIPTION = {
    400: "invalid: bad shape, wrong type, bad path id or query number",
    401: "unauthorized: missing, bad or expired credentials",
    403: "forbidden",
    404: "not_found",
    409: "conflict, too_early or ended",
    413: "invalid: body over 64 KiB",
    429: "rate_limited: a quota or rate limit",
    503: "unavailable: a backend failed; retry",
}


def _operation_id(route: Route) -> str:
    words = re.findall(r"[a-z]+", route.path.replace("{id}", "by id").replace("{name}", "by name"))
    return "_".join([route.method.lower(), *words]) or route.method.lower()


@functools.cache
def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once: it depends on code only)."""
    refs, defs = models_json_schema(_models(), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": (
                "REST routes of docs/contract.md. Every error is "
                '`{"ok": false, "error": {"code", "message"}}`; every success '
                '`{"ok": true, ...}`. Socket.IO events: docs/events.schema.json.'
            ),
        },
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
    }


# --- Socket.IO events ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    namespace: str
    name: str
    direction: Literal["client", "server"]
    payload: type[BaseModel]

    @property
    def acked(self) -> bool:
        """Client events are acknowledged: ``{ok: true, ...}`` or the error body."""
        return self.direction == "client"


EVENTS: tuple[Event, ...] = (
    Event("/call", "join", "client", CallRef),
    Event("/call", "signal", "client", Signal),
    Event("/call", "connected", "client", CallRef),
    Event("/call", "leave", "client", CallRef),
    Event("/chat", "send", "client", SendMessage),
    Event("/chat", "sync", "client", SyncRequest),
    Event("/chat", "read", "client", ReadRequest),
    Event("/chat", "message", "server", ChatMessage),
)


@functools.cache
def events_schema() -> dict[str, Any]:
    """One JSON Schema (2020-12) document: ``$defs`` holds every payload, and
    ``x-events`` names, per namespace and event, the payload and the ack."""
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    pairs += [(e.payload, "validation" if e.acked else "serialization") for e in EVENTS]
    refs, defs = models_json_schema(list(dict.fromkeys(pairs)), ref_template="#/$defs/{model}")
    events: dict[str, dict[str, Any]] = {}
    for event in EVENTS:
        mode: JsonSchemaMode = "validation" if event.acked else "serialization"
        entry: dict[str, Any] = {
            "direction": event.direction,
            "payload": refs[(event.payload, mode)],
        }
        if event.acked:
            entry["ack_error"] = refs[(ErrorBody, "serialization")]
        events.setdefault(event.namespace, {})[event.name] = entry
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{TITLE}: Socket.IO event payloads",
        "description": (
            "x-events: per namespace and event, who sends it and the JSON Schema of its "
            "payload; a client event's failed ack is ack_error (docs/contract.md)."
        ),
        "x-events": events,
        "$defs": defs.get("$defs", {}),
    }


def event_payload_schema(namespace: str, name: str) -> dict[str, Any]:
    """The payload schema of one event, standing alone (with the ``$defs``)."""
    document = events_schema()
    return {**document["x-events"][namespace][name]["payload"], "$defs": document["$defs"]}


def dumps(document: dict[str, Any]) -> str:
    """How the committed copies are written: stable and diff-friendly."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


# --- Serving it ------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get("/api/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_spec(), dumps=lambda value: orjson.dumps(value).decode())


@routes.get("/api/docs")
async def openapi_docs(request: web.Request) -> web.FileResponse:
    # The page and its script are files of the web client (CSP: own origin only).
    return web.FileResponse(WEB_ROOT / "api-docs.html", headers={"Cache-Control": "no-cache"})
