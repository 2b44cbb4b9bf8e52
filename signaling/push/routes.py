"""REST routes of Web Push: the server's public key and the user's subscriptions."""

from __future__ import annotations

from aiohttp import web

from signaling.errors import ApiError
from signaling.http import ok, read_body, require_user
from signaling.push.dispatcher import PushDispatcher
from signaling.push.schemas import Subscribe, Unsubscribe
from signaling.push.subscriptions import PushSubscriptions
from signaling.push.vapid import VapidKeys
from signaling.wire import subscription_wire

routes = web.RouteTableDef()

#: The server's VAPID keys; absent when push is off (no SIGNALING_VAPID_PRIVATE_KEY).
VAPID = web.AppKey("vapid", VapidKeys)
#: The push queue (while the app runs, when push is on).
PUSH = web.AppKey("push", PushDispatcher)
#: The users' subscriptions (while the app runs, push on or off: unsubscribing
#: works either way).
SUBSCRIPTIONS = web.AppKey("push_subscriptions", PushSubscriptions)


def _keys(request: web.Request) -> VapidKeys:
    keys = request.app.get(VAPID)
    if keys is None:
        raise ApiError("not_found", "push notifications are not configured on this server")
    return keys


@routes.get("/api/push/vapid-public-key")
async def vapid_public_key(request: web.Request) -> web.Response:
    return ok(public_key=_keys(request).public_key)


@routes.post("/api/push/subscriptions")
async def subscribe(request: web.Request) -> web.Response:
    user_id = require_user(request)
    _keys(request)
    body = await read_body(request, Subscribe)
    subscription = await request.app[SUBSCRIPTIONS].subscribe(
        user_id, body.endpoint, body.keys.p256dh, body.keys.auth
    )
    return ok(201, subscription=subscription_wire(subscription))


@routes.delete("/api/push/subscriptions")
async def unsubscribe(request: web.Request) -> web.Response:
    user_id = require_user(request)
    body = await read_body(request, Unsubscribe)
    await request.app[SUBSCRIPTIONS].unsubscribe(user_id, body.endpoint)
    return ok()
