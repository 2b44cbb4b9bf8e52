"""REST routes of gifts."""

from __future__ import annotations

from aiohttp import web

from persistence.gifts import GiftBox, GiftKind
from signaling.errors import invalid
from signaling.gifts.schemas import SendGift
from signaling.http import ok, path_id, query_int, read_body, require_user
from signaling.keys import GIFTS
from signaling.wire import gift_wire

routes = web.RouteTableDef()

#: The most gifts one page holds (and the default page).
MAX_PAGE = 100


@routes.post("/api/gifts")
async def send_gift(request: web.Request) -> web.Response:
    user_id = require_user(request)
    body = await read_body(request, SendGift)
    gift = await request.app[GIFTS].send(
        user_id, body.receiver_id, GiftKind(body.kind), body.message, body.scheduled_at
    )
    return ok(201, gift=gift_wire(gift))


@routes.get("/api/gifts")
async def list_gifts(request: web.Request) -> web.Response:
    user_id = require_user(request)
    raw = request.query.get("box", GiftBox.RECEIVED.value)
    try:
        box = GiftBox(raw)
    except ValueError:
        raise invalid("box must be received or sent") from None
    limit = query_int(request, "limit", low=1, high=MAX_PAGE) or MAX_PAGE
    before_id = query_int(request, "before_id", low=1, high=2**53)
    gifts = await request.app[GIFTS].list_gifts(user_id, box, limit, before_id)
    # A full page may have more behind it: the cursor of the next one.
    next_before_id = gifts[-1].id if len(gifts) == limit else None
    return ok(gifts=[gift_wire(g) for g in gifts], next_before_id=next_before_id)


@routes.get("/api/gifts/{id}")
async def get_gift(request: web.Request) -> web.Response:
    user_id = require_user(request)
    gift = await request.app[GIFTS].get(user_id, path_id(request))
    return ok(gift=gift_wire(gift))


@routes.post("/api/gifts/{id}/open")
async def open_gift(request: web.Request) -> web.Response:
    user_id = require_user(request)
    gift = await request.app[GIFTS].open(user_id, path_id(request))
    return ok(gift=gift_wire(gift))
