"""REST plumbing shared by every route: errors, JSON, auth, CORS."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from signaling.errors import ApiError, error_body, invalid, validation_message
from signaling.keys import METRICS, SETTINGS, VERIFIER

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)

_CODE_BY_STATUS = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "invalid",
    409: "conflict",
    413: "invalid",
    429: "rate_limited",
}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def ok(status: int = 200, **payload: Any) -> web.Response:
    """``{"ok": true, ...payload}``."""
    return web.json_response({"ok": True, **payload}, status=status, dumps=_dumps)


def fail(code: str, message: str, status: int) -> web.Response:
    return web.json_response(error_body(code, message), status=status, dumps=_dumps)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure, ours or aiohttp's, leaves as PROTOCOL.md's error body."""
    try:
        return await handler(request)
    except ApiError as exc:
        request.app[METRICS].errors.labels(exc.code).inc()
        response = web.json_response(exc.to_body(), status=exc.status, dumps=_dumps)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODE_BY_STATUS.get(exc.status, "invalid" if exc.status < 500 else "unavailable")
        request.app[METRICS].errors.labels(code).inc()
        status = exc.status if exc.status in (405, 413) else _status_for(code)
        response = fail(code, exc.reason or code, status)
        if exc.status == 413:
            response.force_close()  # the rest of the body is never read
        return response
    except Exception:
        logger.exception(
            "%s %s failed",
            request.method,
            request.path,
            extra={"event": "http.failed", "method": request.method, "path": request.path},
        )
        request.app[METRICS].errors.labels("unavailable").inc()
        return fail("unavailable", "internal error; please retry", 503)


def _status_for(code: str) -> int:
    return ApiError(code, "").status


def cors_middleware_for(origins: tuple[str, ...]) -> Any:
    allow_all = "*" in origins

    @web.middleware
    async def cors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and (allow_all or origin in origins)
        if request.method == "OPTIONS" and allowed:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if allowed:
            assert origin is not None
            response.headers["Access-Control-Allow-Origin"] = "*" if allow_all else origin
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Vary"] = "Origin"
        return response

    return cors_middleware


#: Response headers for every answer (F14): the web client's page may load
#: only its own files and talk only to its own origin and its sockets.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; connect-src 'self'"
)
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?", re.ASCII)
SERVER_NAME = "giftcall"


@functools.lru_cache(maxsize=64)
def _csp_for(host: str) -> str:
    """The policy for ``host``: one string per host, not one per response (a
    websocket's 101 keeps its headers for as long as it is open)."""
    if _HOST.fullmatch(host):
        # 'self' covers ws:/wss: in CSP 3; older browsers need them named.
        return f"{_CSP} ws://{host} wss://{host}"
    return _CSP


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CSP, no framing, ``nosniff``, no referrer, and a
    ``Server`` header without a version."""
    headers = response.headers
    headers["Content-Security-Policy"] = _csp_for(request.headers.get("Host", ""))
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Server"] = SERVER_NAME


def require_user(request: web.Request) -> str:
    return request.app[VERIFIER].user_from_header(request.headers.get("Authorization"))


#: The largest REST body read, with or without ``Content-Length`` (F12).
MAX_BODY_BYTES = 64 * 1024


async def read_body(request: web.Request, model: type[Model]) -> Model:
    """The JSON object body as ``model``: ``413 invalid`` over 64 KiB, whether
    announced by ``Content-Length`` or found while reading a chunked body."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _too_large(request.content_length)
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large(len(body))
    raw = bytes(body)
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise invalid("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(validation_message(exc)) from None


def _too_large(size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=MAX_BODY_BYTES, actual_size=size, reason="request body too large (64 KiB at most)"
    )


#: The most digits a number in a path or query may have.
MAX_DIGITS = 15


def is_ascii_number(raw: str) -> bool:
    """Only ASCII digits, at most MAX_DIGITS of them (``str.isdigit`` alone also
    takes superscript, Arabic-Indic and fullwidth digits)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not is_ascii_number(raw) or int(raw) == 0:
        raise invalid(f"{name} must be a positive integer")
    return int(raw)


def query_int(request: web.Request, name: str, *, low: int, high: int) -> int | None:
    """An optional integer query parameter in ``low..high``; empty is absent."""
    raw = request.query.get(name, "")
    if raw == "":
        return None
    if not is_ascii_number(raw) or not low <= int(raw) <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}")
    return int(raw)


def dev_only(request: web.Request) -> None:
    if not request.app[SETTINGS].dev:
        raise ApiError("not_found", "dev mode is off")
