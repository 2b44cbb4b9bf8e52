"""REST routes of chat rooms."""

from __future__ import annotations

from aiohttp import web

from signaling.chat.schemas import DEFAULT_PAGE, MAX_PAGE, MarkRead
from signaling.http import ok, path_id, query_int, read_body, require_user
from signaling.keys import CHAT
from signaling.wire import message_wire

routes = web.RouteTableDef()


@routes.get("/api/chat/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    user_id = require_user(request)
    return ok(rooms=await request.app[CHAT].list_rooms(user_id))


@routes.get("/api/chat/rooms/{id}/messages")
async def history(request: web.Request) -> web.Response:
    user_id = require_user(request)
    room_id = path_id(request)
    before_seq = query_int(request, "before_seq", low=1, high=2**53)
    limit = query_int(request, "limit", low=1, high=MAX_PAGE) or DEFAULT_PAGE
    messages = await request.app[CHAT].history(user_id, room_id, before_seq, limit)
    return ok(messages=[message_wire(m) for m in messages])


@routes.post("/api/chat/rooms/{id}/read")
async def mark_read(request: web.Request) -> web.Response:
    user_id = require_user(request)
    room_id = path_id(request)
    body = await read_body(request, MarkRead)
    marker = await request.app[CHAT].read(user_id, room_id, body.seq, hide=True)
    return ok(room_id=room_id, seq=marker)
