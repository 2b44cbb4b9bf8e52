"""What every webhook route shares: refusing (counted in the metrics), a
constant-time secret check, and a JSON body read with a size bound."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from aiohttp import web

from signaling.http import fail
from signaling.keys import METRICS

logger = logging.getLogger(__name__)


class BodyError(ValueError):
    """The body is too large or not JSON; ``raw`` is what was read of it."""

    def __init__(self, message: str, raw: bytes) -> None:
        super().__init__(message)
        self.raw = raw


def refuse(request: web.Request, code: str, message: str, status: int) -> web.Response:
    request.app[METRICS].errors.labels(code).inc()
    return fail(code, message, status)


def secret_matches(given: str, secret: str) -> bool:
    """Constant-time; never true without a configured secret."""
    # surrogatepass: a header byte that is not UTF-8 arrives as a lone
    # surrogate; encoded this way it compares (unequal) instead of raising.
    return bool(secret) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass")
    )


async def json_body(request: web.Request, max_bytes: int) -> Any:
    """The body as JSON; raises :class:`BodyError` beyond ``max_bytes`` or
    when it does not parse."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyError(f"body larger than {max_bytes} bytes", b"")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise BodyError(f"body larger than {max_bytes} bytes", raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BodyError("body is not valid JSON", raw) from None


def invalid(request: web.Request, source: str, message: str, raw: bytes) -> web.Response:
    """400 ``invalid``, logged with the start of the body."""
    logger.warning(
        "%s webhook rejected: %s",
        source,
        message,
        extra={
            "event": "webhook.invalid",
            "source": source,
            "why": message,
            "body": raw[:500].decode(errors="replace"),
        },
    )
    return refuse(request, "invalid", message, 400)
