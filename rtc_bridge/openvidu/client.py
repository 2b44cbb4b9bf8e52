"""OpenVidu 2's REST API on aiohttp: the part of it this project uses.

REST (``<url>/openvidu/api``, Basic auth ``OPENVIDUAPP:<secret>``): every
request has a timeout; 5xx answers, timeouts and connection errors are retried
a bounded number of times with exponential backoff; a 4xx never is.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from rtc_bridge.errors import MediaUnavailableError

logger = logging.getLogger(__name__)

API_PATH = "/openvidu/api"
USERNAME = "OPENVIDUAPP"


# ------------------------------------------------------------------ errors


class OpenViduError(MediaUnavailableError):
    """Any failure talking to OpenVidu (the join ack says ``unavailable``)."""


class OpenViduUnavailableError(OpenViduError):
    """No usable answer after the retries: down, slow or failing (5xx)."""


class OpenViduRejectedError(OpenViduError):
    """OpenVidu answered a 4xx this client did not expect; never retried."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"OpenVidu {method} {path} answered {status}: {str(body)[:200]}")
        self.status = status


class SessionNotFoundError(OpenViduRejectedError):
    """The session does not exist (any more)."""


class _NoAnswerError(Exception):
    """One attempt without a usable answer (timeout, connection error, 5xx):
    worth another; its message says which."""


# ------------------------------------------------------------------ REST


@dataclass(frozen=True)
class RetryPolicy:
    """Timeout of one request, and how often and how patiently to retry."""

    attempts: int = 3
    timeout_s: float = 1.5
    backoff_s: float = 0.1
    backoff_max_s: float = 1.0

    def delay(self, retry: int) -> float:
        """Pause before retry number ``retry`` (0 for the first retry)."""
        return float(min(self.backoff_s * 2**retry, self.backoff_max_s))


@dataclass(frozen=True)
class SessionInfo:
    id: str
    created_at: int | None

    @property
    def unique_id(self) -> str | None:
        """OpenVidu's ``uniqueSessionId``: the id and the creation instant."""
        return None if self.created_at is None else f"{self.id}_{self.created_at}"


@dataclass(frozen=True)
class ConnectionInfo:
    id: str
    token: str


async def _body(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _created_at(body: Any) -> int | None:
    value = body.get("createdAt") if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class OpenViduClient:
    """The part of OpenVidu 2's REST API this project uses."""

    def __init__(self, url: str, secret: str, *, policy: RetryPolicy | None = None) -> None:
        self._base = url.rstrip("/") + API_PATH
        credentials = base64.b64encode(f"{USERNAME}:{secret}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}"}
        self.policy = policy or RetryPolicy()
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(headers=self._headers)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """One call with retries; returns the status and JSON body of the first
        answer below 500, or raises :class:`OpenViduUnavailableError`."""
        policy = self.policy

        def log_failure(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            logger.warning(
                "OpenVidu %s %s failed (%s), attempt %d of %d",
                method,
                path,
                failure,
                state.attempt_number,
                policy.attempts,
                extra={
                    "event": "openvidu.request_failed",
                    "method": method,
                    "path": path,
                    "failure": str(failure),
                    "attempt": state.attempt_number,
                    "attempts": policy.attempts,
                },
            )

        attempts = AsyncRetrying(
            retry=retry_if_exception_type(_NoAnswerError),
            stop=stop_after_attempt(policy.attempts),
            wait=lambda state: policy.delay(state.attempt_number - 1),
            after=log_failure,
            reraise=True,
        )
        try:
            result: tuple[int, Any] = await attempts(self._attempt, method, path, body)
        except _NoAnswerError as failure:
            raise OpenViduUnavailableError(
                f"OpenVidu does not answer ({method} {path}: {failure}, {policy.attempts} attempts)"
            ) from None
        return result

    async def _attempt(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
        try:
            async with self._session().request(
                method, self._base + path, json=body, timeout=timeout
            ) as response:
                status, payload = response.status, await _body(response)
        except TimeoutError:
            raise _NoAnswerError(f"no answer within {self.policy.timeout_s} s") from None
        except aiohttp.ClientError as exc:
            raise _NoAnswerError(f"{type(exc).__name__}: {exc}") from None
        if status >= 500:
            raise _NoAnswerError(f"HTTP {status}")
        return status, payload

    async def create_session(self, custom_id: str) -> SessionInfo | None:
        """Create the session; ``None`` when it already exists (409)."""
        path = "/sessions"
        status, body = await self.request("POST", path, {"customSessionId": custom_id})
        if status == 200 and isinstance(body, dict) and isinstance(body.get("id"), str):
            return SessionInfo(body["id"], _created_at(body))
        if status == 409:
            return None
        raise OpenViduRejectedError("POST", path, status, body)

    async def get_session(self, session_id: str) -> SessionInfo | None:
        path = f"/sessions/{quote(session_id, safe='')}"
        status, body = await self.request("GET", path)
        if status == 200 and isinstance(body, dict):
            return SessionInfo(session_id, _created_at(body))
        if status == 404:
            return None
        raise OpenViduRejectedError("GET", path, status, body)

    async def create_connection(self, session_id: str, server_data: str) -> ConnectionInfo:
        """A ``WEBRTC`` publisher connection whose ``serverData`` is ``server_data``."""
        path = f"/sessions/{quote(session_id, safe='')}/connection"
        status, body = await self.request(
            "POST", path, {"type": "WEBRTC", "role": "PUBLISHER", "data": server_data}
        )
        if (
            status == 200
            and isinstance(body, dict)
            and isinstance(body.get("id"), str)
            and isinstance(body.get("token"), str)
        ):
            return ConnectionInfo(body["id"], body["token"])
        if status == 404:
            raise SessionNotFoundError("POST", path, status, body)
        raise OpenViduRejectedError("POST", path, status, body)

    async def disconnect(self, session_id: str, connection_id: str) -> bool:
        """Force a connection out (or invalidate a pending one); ``False`` when
        the session or the connection is already gone."""
        path = f"/sessions/{quote(session_id, safe='')}/connection/{quote(connection_id, safe='')}"
        status, body = await self.request("DELETE", path)
        if status == 204:
            return True
        if status in (400, 404):
            return False
        raise OpenViduRejectedError("DELETE", path, status, body)

    async def close_session(self, session_id: str) -> bool:
        """Close the session; ``False`` when it did not exist (404)."""
        path = f"/sessions/{quote(session_id, safe='')}"
        status, body = await self.request("DELETE", path)
        if status == 204:
            return True
        if status == 404:
            return False
        raise OpenViduRejectedError("DELETE", path, status, body)
