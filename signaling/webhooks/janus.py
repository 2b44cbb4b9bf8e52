"""``POST /api/webhooks/janus``: the events of Janus's sample HTTP event handler.

The handler authenticates with HTTP Basic auth (``backend_user`` /
``backend_pwd`` in ``janus.eventhandler.sampleevh.jcfg``): the password must be
``SIGNALING_JANUS_EVENT_SECRET`` (the user name is not checked); anything else
gets 401 and changes nothing. The handler retries what is not answered 200, so
the route answers at once: the events go to the media backend, which handles
them in a background task of its own.

Also here: the Content-Security-Policy addition that lets the web client talk
to Janus (``connect-src``), as the browser calls Janus's API itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from rtc_bridge.janus import EventError, JanusMedia, parse_events
from signaling.http import ok
from signaling.keys import SETTINGS
from signaling.webhooks.common import BodyError, invalid, json_body, refuse, secret_matches
from signaling.webhooks.openvidu import MEDIA

logger = logging.getLogger(__name__)

PATH = "/api/webhooks/janus"
#: A grouped post holds many events of a few hundred bytes each.
MAX_BODY_BYTES = 512 * 1024
SOURCE = "Janus"

routes = web.RouteTableDef()


def _password(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    try:
        return aiohttp.BasicAuth.decode(header).password if header else ""
    except ValueError:
        return ""


@routes.post(PATH)
async def janus_events(request: web.Request) -> web.Response:
    media = request.app.get(MEDIA)
    if not isinstance(media, JanusMedia):
        return refuse(request, "not_found", "the Janus media backend is off", 404)
    if not secret_matches(_password(request), request.app[SETTINGS].janus_event_secret):
        logger.warning(
            "Janus events refused: missing or wrong secret",
            extra={"event": "webhook.unauthorized", "source": SOURCE, "remote": request.remote},
        )
        return refuse(request, "unauthorized", "missing or wrong Basic auth password", 401)
    try:
        events = parse_events(await json_body(request, MAX_BODY_BYTES))
    except BodyError as exc:
        return invalid(request, SOURCE, str(exc), exc.raw)
    except EventError as exc:
        return invalid(request, SOURCE, f"not Janus events: {exc}", b"")
    logger.debug("Janus events: %d", len(events), extra={"event": "webhook.janus"})
    media.submit_events(events)  # never awaited here: Janus waits for the answer
    return ok()


def janus_csp(public_url: str) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` hook (after ``security_headers``) adding the
    Janus origin to ``connect-src``: the page calls Janus's HTTP API."""
    parts = urlsplit(public_url)
    origin = f"{parts.scheme}://{parts.netloc}"

    async def add_origin(request: web.Request, response: web.StreamResponse) -> None:
        csp = response.headers.get("Content-Security-Policy")
        if csp and "connect-src " in csp:
            response.headers["Content-Security-Policy"] = csp.replace(
                "connect-src ", f"connect-src {origin} ", 1
            )

    return add_origin
