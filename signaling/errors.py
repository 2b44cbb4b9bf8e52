"""The protocol's error codes as exceptions, and the error body they become."""

from __future__ import annotations

from typing import Any

#: REST status of every error code (PROTOCOL.md, Errors).
STATUS_BY_CODE = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_early": 409,
    "ended": 409,
    "rate_limited": 429,
    "unavailable": 503,
}


class ApiError(Exception):
    """An error the client is told about, with a code of PROTOCOL.md."""

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        assert code in STATUS_BY_CODE, code
        super().__init__(message)
        self.code = code
        self.message = message
        #: whole seconds to wait before trying again (``rate_limited``)
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code]

    def to_body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.retry_after)


def error_body(code: str, message: str, retry_after: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if retry_after is not None:
        error["retry_after"] = retry_after
    return {"ok": False, "error": error}


def invalid(message: str) -> ApiError:
    return ApiError("invalid", message)


def not_found(message: str = "no such call") -> ApiError:
    return ApiError("not_found", message)


def forbidden(message: str = "not a participant of this call") -> ApiError:
    return ApiError("forbidden", message)


def conflict(message: str) -> ApiError:
    return ApiError("conflict", message)


def unauthorized(message: str = "missing or invalid token") -> ApiError:
    return ApiError("unauthorized", message)


def rate_limited(message: str, retry_after: int) -> ApiError:
    return ApiError("rate_limited", message, retry_after=retry_after)


def validation_message(exc: Exception) -> str:
    """A short, safe description of a pydantic validation error."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return "invalid payload"
    parts = []
    for err in errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
