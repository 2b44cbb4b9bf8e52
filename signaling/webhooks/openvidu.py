"""``POST /api/webhooks/openvidu``: OpenVidu's session events.

Only a request carrying the configured secret in :data:`SECRET_HEADER` is
accepted (anything else gets 401 and changes nothing). OpenVidu counts only a
200 and never retries, so the route answers at once: the event is handed to
the media backend, which handles it in a background task of its own.
"""

from __future__ import annotations

import hmac
import logging

import orjson
from aiohttp import web

from rtc_bridge.base import MediaBackend
from rtc_bridge.openvidu import OpenViduMedia, WebhookError, parse_webhook
from signaling.http import fail, ok
from signaling.keys import METRICS, SETTINGS

logger = logging.getLogger(__name__)

#: The header OpenVidu is told to send (``OPENVIDU_WEBHOOK_HEADERS``).
SECRET_HEADER = "X-Webhook-Secret"
#: OpenVidu's events are a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
PATH = "/api/webhooks/openvidu"

#: The media backend in use (set by the composition root).
MEDIA = web.AppKey("media", MediaBackend)

routes = web.RouteTableDef()


def _refuse(request: web.Request, code: str, message: str, status: int) -> web.Response:
    request.app[METRICS].errors.labels(code).inc()
    return fail(code, message, status)


@routes.post(PATH)
async def openvidu_webhook(request: web.Request) -> web.Response:
    media = request.app.get(MEDIA)
    if not isinstance(media, OpenViduMedia):
        return _refuse(request, "not_found", "the OpenVidu media backend is off", 404)
    secret = request.app[SETTINGS].openvidu_webhook_secret
    given = request.headers.get(SECRET_HEADER, "")
    # surrogatepass: a header byte that is not UTF-8 arrives as a lone
    # surrogate; encoded this way it compares (unequal) instead of raising.
    if not secret or not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass")
    ):
        logger.warning(
            "OpenVidu webhook refused: %s",
            "no secret" if not given else "wrong secret",
            extra={"event": "webhook.unauthorized", "remote": request.remote},
        )
        return _refuse(request, "unauthorized", f"missing or wrong {SECRET_HEADER}", 401)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _invalid(request, f"body larger than {MAX_BODY_BYTES} bytes", b"")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return _invalid(request, f"body larger than {MAX_BODY_BYTES} bytes", raw)
    try:
        event = parse_webhook(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return _invalid(request, "body is not valid JSON", raw)
    except WebhookError as exc:
        return _invalid(request, f"not an OpenVidu event: {exc}", raw)
    logger.info(
        "OpenVidu webhook %s",
        event.event,
        extra={
            "event": "webhook.openvidu",
            "webhook": event.event,
            "session_id": event.session_id,
            "connection_id": event.connection_id,
            "timestamp": event.timestamp,
        },
    )
    media.submit_webhook(event)  # never awaited here: OpenVidu waits for the answer
    return ok()


def _invalid(request: web.Request, message: str, raw: bytes) -> web.Response:
    logger.warning(
        "OpenVidu webhook rejected: %s",
        message,
        extra={
            "event": "webhook.invalid",
            "why": message,
            "body": raw[:500].decode(errors="replace"),
        },
    )
    return _refuse(request, "invalid", message, 400)
