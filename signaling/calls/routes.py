"""REST routes of calls and notifications."""

from __future__ import annotations

from aiohttp import web

from signaling.calls.schemas import ScheduleCall
from signaling.http import ok, path_id, read_body, require_user
from signaling.keys import CALLS, STORES

routes = web.RouteTableDef()


@routes.post("/api/calls")
async def schedule_call(request: web.Request) -> web.Response:
    user_id = require_user(request)
    body = await read_body(request, ScheduleCall)
    call = await request.app[CALLS].schedule(user_id, body.partner_id, body.scheduled_at)
    return ok(201, call=call.to_wire())


@routes.get("/api/calls")
async def list_calls(request: web.Request) -> web.Response:
    user_id = require_user(request)
    calls = await request.app[CALLS].list_calls(user_id)
    return ok(calls=[c.to_wire() for c in calls])


@routes.get("/api/calls/{id}")
async def get_call(request: web.Request) -> web.Response:
    user_id = require_user(request)
    call = await request.app[CALLS].get_call(user_id, path_id(request))
    return ok(call=call.to_wire())


@routes.delete("/api/calls/{id}")
async def cancel_call(request: web.Request) -> web.Response:
    user_id = require_user(request)
    call = await request.app[CALLS].cancel(user_id, path_id(request))
    return ok(call=call.to_wire())


@routes.get("/api/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    user_id = require_user(request)
    items = await request.app[STORES].notifications.list_for_user(user_id)
    return ok(notifications=[n.to_wire() for n in items])
