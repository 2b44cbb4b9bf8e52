"""Operational routes: health, metrics and the dev-only login."""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from signaling.auth import mint_token
from signaling.calls.schemas import UserId
from signaling.errors import unauthorized
from signaling.http import dev_only, fail, ok, read_body
from signaling.keys import CALLS, METRICS, SETTINGS, STORES

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(request.app[STORES].ping(), timeout=2.0)
    except Exception as exc:  # any backend failure means unhealthy, whatever its type
        logger.warning("health check failed: %s", exc, extra={"event": "health.failed"})
        return fail("unavailable", "a backend does not answer", 503)
    return ok()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    require_metrics_token(request)
    registry = request.app[METRICS]
    registry.set_calls_by_state(await request.app[CALLS].count_by_state())
    return web.Response(
        body=registry.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
    )


def require_metrics_token(request: web.Request) -> None:
    """With ``SIGNALING_METRICS_TOKEN`` set, ``/metrics`` answers only
    ``Authorization: Bearer <that token>`` (compared in constant time)."""
    expected = request.app[SETTINGS].metrics_token
    if not expected:
        return
    header = request.headers.get("Authorization", "")
    given = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        raise unauthorized("metrics need Authorization: Bearer <SIGNALING_METRICS_TOKEN>")


class DevLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UserId


@routes.post("/api/dev/login")
async def dev_login(request: web.Request) -> web.Response:
    dev_only(request)
    body = await read_body(request, DevLogin)
    token = mint_token(request.app[SETTINGS].jwt_secret, body.user_id)
    return ok(user_id=body.user_id, token=token)
