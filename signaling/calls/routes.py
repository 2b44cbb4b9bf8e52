"""REST routes of calls and notifications."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from persistence.models import CallRecord
from signaling.calls.schemas import ScheduleCall
from signaling.errors import invalid
from signaling.http import is_ascii_number, ok, path_id, query_int, read_body, require_user
from signaling.keys import CALLS
from signaling.wire import call_wire, notification_wire

routes = web.RouteTableDef()

#: The most calls one page holds (and the default page).
MAX_CALLS_PAGE = 100
#: The most notifications one page holds; the default page is smaller.
MAX_NOTIFICATIONS_PAGE = 100
DEFAULT_NOTIFICATIONS_PAGE = 50

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def call_cursor(call: CallRecord) -> str:
    """The opaque ``before`` cursor of the page after one that ended with
    ``call``: its ``scheduled_at`` in microseconds since the epoch and its id,
    joined by ``-`` (the list is ordered by both, newest first)."""
    return f"{(call.scheduled_at - _EPOCH) // _MICROSECOND}-{call.id}"


def parse_call_cursor(raw: str) -> tuple[datetime, int]:
    micros, sep, call_id = raw.partition("-")
    # Microseconds since the epoch take 16 digits: more than is_ascii_number allows.
    good_micros = micros.isascii() and micros.isdigit() and len(micros) <= 18
    if not sep or not good_micros or not is_ascii_number(call_id):
        raise invalid("before must be a cursor from next_before")
    try:
        at = _EPOCH + int(micros) * _MICROSECOND
    except OverflowError:
        raise invalid("before must be a cursor from next_before") from None
    return at, int(call_id)


@routes.post("/api/calls")
async def schedule_call(request: web.Request) -> web.Response:
    user_id = require_user(request)
    body = await read_body(request, ScheduleCall)
    call = await request.app[CALLS].schedule(user_id, body.partner_id, body.scheduled_at)
    return ok(201, call=call_wire(call))


@routes.get("/api/calls")
async def list_calls(request: web.Request) -> web.Response:
    user_id = require_user(request)
    limit = query_int(request, "limit", low=1, high=MAX_CALLS_PAGE) or MAX_CALLS_PAGE
    raw = request.query.get("before", "")
    before = parse_call_cursor(raw) if raw else None
    calls = await request.app[CALLS].list_calls(user_id, limit, before)
    # A full page may have more behind it: the cursor of the next one.
    next_before = call_cursor(calls[-1]) if len(calls) == limit else None
    return ok(calls=[call_wire(c) for c in calls], next_before=next_before)


@routes.get("/api/calls/{id}")
async def get_call(request: web.Request) -> web.Response:
    user_id = require_user(request)
    call = await request.app[CALLS].get_call(user_id, path_id(request))
    return ok(call=call_wire(call))


@routes.delete("/api/calls/{id}")
async def cancel_call(request: web.Request) -> web.Response:
    user_id = require_user(request)
    call = await request.app[CALLS].cancel(user_id, path_id(request))
    return ok(call=call_wire(call))


@routes.get("/api/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    user_id = require_user(request)
    limit = (
        query_int(request, "limit", low=1, high=MAX_NOTIFICATIONS_PAGE)
        or DEFAULT_NOTIFICATIONS_PAGE
    )
    before_id = query_int(request, "before_id", low=1, high=2**53)
    items = await request.app[CALLS].list_notifications(user_id, limit, before_id)
    next_before_id = items[-1].id if len(items) == limit else None
    return ok(notifications=[notification_wire(n) for n in items], next_before_id=next_before_id)
