"""OpenVidu 2: a REST client on aiohttp, the webhook events as plain data, and
the media backend that hands each participant a connection token and follows
who is really in the media session through OpenVidu's webhooks.

REST (``<url>/openvidu/api``, Basic auth ``OPENVIDUAPP:<secret>``): every
request has a timeout; 5xx answers, timeouts and connection errors are retried
a bounded number of times with exponential backoff; a 4xx never is.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from rtc_bridge.base import MediaBackend, MediaEvents
from rtc_bridge.errors import MediaUnavailableError
from rtc_bridge.tasks import BackgroundTasks

logger = logging.getLogger(__name__)

API_PATH = "/openvidu/api"
USERNAME = "OPENVIDUAPP"
SESSION_PREFIX = "call-"

PARTICIPANT_JOINED = "participantJoined"
PARTICIPANT_LEFT = "participantLeft"
WEBRTC_CONNECTION_CREATED = "webrtcConnectionCreated"
SESSION_DESTROYED = "sessionDestroyed"
#: The webhook events the backend acts on; the others are accepted and ignored.
HANDLED_EVENTS = frozenset(
    {PARTICIPANT_JOINED, PARTICIPANT_LEFT, WEBRTC_CONNECTION_CREATED, SESSION_DESTROYED}
)
_CONNECTION_EVENTS = frozenset({PARTICIPANT_JOINED, PARTICIPANT_LEFT, WEBRTC_CONNECTION_CREATED})
#: How many event keys a call remembers to drop duplicates.
_SEEN_MAX = 512
#: How long ``close`` lets in-flight REST calls finish before cancelling them.
_CLOSE_GRACE_S = 1.0


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
        url = self._base + path
        failure = "not tried"
        for attempt in range(policy.attempts):
            if attempt:
                await asyncio.sleep(policy.delay(attempt - 1))
            try:
                async with self._session().request(
                    method, url, json=body, timeout=aiohttp.ClientTimeout(total=policy.timeout_s)
                ) as response:
                    status, payload = response.status, await _body(response)
            except TimeoutError:
                failure = f"no answer within {policy.timeout_s} s"
            except aiohttp.ClientError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if status < 500:
                    return status, payload
                failure = f"HTTP {status}"
            logger.warning(
                "OpenVidu %s %s failed (%s), attempt %d of %d",
                method,
                path,
                failure,
                attempt + 1,
                policy.attempts,
                extra={
                    "event": "openvidu.request_failed",
                    "method": method,
                    "path": path,
                    "failure": failure,
                    "attempt": attempt + 1,
                    "attempts": policy.attempts,
                },
            )
        raise OpenViduUnavailableError(
            f"OpenVidu does not answer ({method} {path}: {failure}, {policy.attempts} attempts)"
        )

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


# --------------------------------------------------------------- webhooks


class WebhookError(ValueError):
    """A webhook body that is not an OpenVidu event."""


@dataclass(frozen=True)
class WebhookEvent:
    """One OpenVidu webhook event (the fields this project reads)."""

    event: str
    timestamp: int
    session_id: str = ""
    unique_session_id: str | None = None
    connection_id: str | None = None
    server_data: str | None = None
    reason: str | None = None
    #: webrtcConnectionCreated: ``OUTBOUND`` (publishing) or ``INBOUND`` (receiving)
    connection: str | None = None
    receiving_from: str | None = None
    stream_id: str | None = None

    @property
    def handled(self) -> bool:
        return self.event in HANDLED_EVENTS

    @property
    def publishing(self) -> bool:
        if self.connection is not None:
            return self.connection.upper() == "OUTBOUND"
        return not self.receiving_from

    def key(self) -> tuple[Any, ...]:
        """What makes two deliveries the same event."""
        return (
            self.unique_session_id or self.session_id,
            self.connection_id,
            self.event,
            self.timestamp,
            self.stream_id,
            self.receiving_from,
        )


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise WebhookError(f"{name}: missing")
        return None
    if not isinstance(value, str) or (required and not value):
        raise WebhookError(f"{name}: must be a non-empty string")
    return value


def parse_webhook(body: Any) -> WebhookEvent:
    """An OpenVidu webhook body as a :class:`WebhookEvent`; raises
    :class:`WebhookError` when it is not one."""
    if not isinstance(body, dict):
        raise WebhookError("the body must be a JSON object")
    event = _text(body, "event", required=True)
    assert event is not None
    timestamp = body.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise WebhookError("timestamp: must be a non-negative integer (UTC milliseconds)")
    handled = event in HANDLED_EVENTS
    server_data = body.get("serverData")
    return WebhookEvent(
        event=event,
        timestamp=timestamp,
        session_id=_text(body, "sessionId", required=handled) or "",
        unique_session_id=_text(body, "uniqueSessionId"),
        connection_id=_text(body, "connectionId", required=event in _CONNECTION_EVENTS),
        server_data=server_data if isinstance(server_data, str) else None,
        reason=_text(body, "reason"),
        connection=_text(body, "connection"),
        receiving_from=_text(body, "receivingFrom") or None,
        stream_id=_text(body, "streamId"),
    )


def server_data_for(call_id: int, user_id: str) -> str:
    """The ``serverData`` of a participant's connection: names the call and user."""
    return json.dumps({"call_id": call_id, "user_id": user_id}, separators=(",", ":"))


def parse_server_data(text: str | None) -> tuple[int, str] | None:
    """``(call_id, user_id)`` from a ``serverData`` made by :func:`server_data_for`."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    call_id, user_id = data.get("call_id"), data.get("user_id")
    if not isinstance(call_id, int) or isinstance(call_id, bool) or not isinstance(user_id, str):
        return None
    return call_id, user_id


def session_id_for(call_id: int, prefix: str = SESSION_PREFIX) -> str:
    return f"{prefix}{call_id}"


def call_id_for(session_id: str, prefix: str = SESSION_PREFIX) -> int | None:
    match = re.fullmatch(re.escape(prefix) + r"([1-9][0-9]{0,14})", session_id)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------- backend


@dataclass
class _Connection:
    """What the webhooks said about one OpenVidu connection."""

    id: str
    user_id: str | None
    joined: bool = False
    publishing: bool = False
    left: bool = False
    #: dropped by us (the user left the call): its events no longer count
    retired: bool = False


@dataclass
class _Member:
    user_id: str
    connection_id: str | None = None
    token: str | None = None
    latest_ts: int = 0


@dataclass
class _CallMedia:
    call_id: int
    session_id: str
    users: set[str]
    ready: bool = False
    unique_session_id: str | None = None
    created_at: int | None = None
    members: dict[str, _Member] = field(default_factory=dict)
    connections: dict[str, _Connection] = field(default_factory=dict)
    seen: set[tuple[Any, ...]] = field(default_factory=set)
    seen_order: deque[tuple[Any, ...]] = field(default_factory=deque)
    setup_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    event_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def member(self, user_id: str) -> _Member:
        member = self.members.get(user_id)
        if member is None:
            member = self.members[user_id] = _Member(user_id)
        return member

    def first_delivery(self, key: tuple[Any, ...]) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        self.seen_order.append(key)
        if len(self.seen_order) > _SEEN_MAX:
            self.seen.discard(self.seen_order.popleft())
        return True


class OpenViduMedia(MediaBackend):
    """One OpenVidu session per call (``customSessionId`` ``call-<id>``), one
    connection per participant, reused while it is usable.

    Presence in the media session comes from webhooks (see
    :meth:`submit_webhook`): a user counts as ``connected`` once their
    connection joined and publishes; ``participantLeft`` reports the media
    gone. Deliveries may repeat or come out of order: a repeated event is
    dropped by its key, and a connection that left stays left.
    """

    name = "openvidu"
    terminates_peers = False

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        policy: RetryPolicy | None = None,
        join_budget_s: float = 4.0,
        session_prefix: str = SESSION_PREFIX,
    ) -> None:
        self.client = OpenViduClient(url, secret, policy=policy)
        self.join_budget_s = join_budget_s
        self._prefix = session_prefix
        self._events: MediaEvents | None = None
        self._calls: dict[int, _CallMedia] = {}
        self._tasks = BackgroundTasks(logger, "openvidu.task_failed")

    def bind(self, events: MediaEvents) -> None:
        self._events = events

    # -------------------------------------------------------- the contract

    async def open_call(self, call_id: int, user_ids: tuple[str, str]) -> None:
        """Start creating the session; a failure only defers it to the first join."""
        call = self._call(call_id)
        call.users.update(user_ids)
        self._tasks.spawn(self._prepare(call), f"openvidu-open-{call_id}")

    async def join_extras(self, call_id: int, user_id: str) -> dict[str, Any]:
        call = self._call(call_id)
        call.users.add(user_id)  # signaling checked that the user is a participant
        try:
            async with asyncio.timeout(self.join_budget_s):
                token = await self._token_for(call, user_id)
        except TimeoutError:
            raise OpenViduUnavailableError(
                f"OpenVidu did not answer within {self.join_budget_s} s; join again"
            ) from None
        return {"openvidu_token": token}

    async def user_left(self, call_id: int, user_id: str) -> None:
        """The user's connection is dropped; a rejoin gets a fresh one."""
        call = self._calls.get(call_id)
        member = call.members.get(user_id) if call else None
        if call is None or member is None or member.connection_id is None:
            return
        connection_id = member.connection_id
        member.connection_id = member.token = None
        known = call.connections.get(connection_id)
        if known is not None:
            known.retired = True
        self._tasks.spawn(
            self._drop_left(call, connection_id), f"openvidu-disconnect-{connection_id}"
        )

    async def _drop_left(self, call: _CallMedia, connection_id: str) -> None:
        # Under the setup lock: a rejoin's new connection is made after this
        # one is gone (and after OpenVidu closed the session, if it did).
        async with call.setup_lock:
            await self._disconnect(call.session_id, connection_id, "left")

    async def close_call(self, call_id: int) -> None:
        call = self._calls.pop(call_id, None)
        session_id = call.session_id if call else session_id_for(call_id, self._prefix)
        self._tasks.spawn(self._close_session(call_id, session_id), f"openvidu-close-{call_id}")

    async def close(self) -> None:
        await self._tasks.stop(grace_s=_CLOSE_GRACE_S)
        self._calls.clear()
        await self.client.close()

    # ------------------------------------------------------------ webhooks

    def submit_webhook(self, event: WebhookEvent) -> None:
        """Handle ``event`` in the background (the webhook answers at once)."""
        self._tasks.spawn(self.handle_webhook(event), f"openvidu-webhook-{event.event}")

    async def handle_webhook(self, event: WebhookEvent) -> None:
        if not event.handled:
            return
        call_id = call_id_for(event.session_id, self._prefix)
        call = self._calls.get(call_id) if call_id is not None else None
        if call is None:
            self._log_ignored(event, "unknown session")
            return
        async with call.event_lock:
            if not call.first_delivery(event.key()):
                self._log_ignored(event, "duplicate")
                return
            if event.event == SESSION_DESTROYED:
                await self._session_destroyed(call, event)
            elif event.event == PARTICIPANT_JOINED:
                await self._participant_joined(call, event)
            elif event.event == WEBRTC_CONNECTION_CREATED:
                await self._webrtc_created(call, event)
            else:
                await self._participant_left(call, event)

    async def _participant_joined(self, call: _CallMedia, event: WebhookEvent) -> None:
        assert event.connection_id is not None
        named = parse_server_data(event.server_data)
        connection = call.connections.get(event.connection_id)
        if (
            named is None
            or named[0] != call.call_id
            or named[1] not in call.users
            or (connection is not None and connection.user_id not in (None, named[1]))
        ):
            self._reject(call, event, "serverData names no participant of the call")
            return
        user_id = named[1]
        member = call.member(user_id)
        if connection is None or connection.user_id is None:
            # Not made by this process (made before a restart): adopt it if the
            # user has no other connection, else it is not the one handed out.
            if member.connection_id not in (None, event.connection_id):
                self._reject(call, event, "not the connection handed out to the user")
                return
            if connection is None:
                connection = call.connections[event.connection_id] = _Connection(
                    event.connection_id, user_id
                )
            connection.user_id = user_id
            member.connection_id = event.connection_id
        if connection.left or connection.retired:
            self._log_ignored(event, "connection already gone")
            return
        connection.joined = True
        await self._maybe_connected(call, connection, event)

    async def _webrtc_created(self, call: _CallMedia, event: WebhookEvent) -> None:
        assert event.connection_id is not None
        connection = call.connections.get(event.connection_id)
        if connection is None:  # before its participantJoined: remember it
            connection = call.connections[event.connection_id] = _Connection(
                event.connection_id, None
            )
        if connection.left or connection.retired:
            self._log_ignored(event, "connection already gone")
            return
        if event.publishing:
            connection.publishing = True
        await self._maybe_connected(call, connection, event)

    async def _participant_left(self, call: _CallMedia, event: WebhookEvent) -> None:
        assert event.connection_id is not None
        connection = call.connections.get(event.connection_id)
        if connection is None:  # left before we heard it join: it stays left
            call.connections[event.connection_id] = _Connection(
                event.connection_id, None, left=True
            )
            return
        if connection.left:
            return
        connection.left = True
        user_id = connection.user_id
        member = call.members.get(user_id) if user_id else None
        if member is None or member.connection_id != connection.id or connection.retired:
            return
        assert user_id is not None
        member.connection_id = member.token = None  # the token is spent
        member.latest_ts = max(member.latest_ts, event.timestamp)
        logger.info(
            "OpenVidu: user %s left the media of call %s (%s)",
            user_id,
            call.call_id,
            event.reason,
            extra={
                "event": "openvidu.media_left",
                "call_id": call.call_id,
                "user_id": user_id,
                "connection_id": connection.id,
                "reason": event.reason,
            },
        )
        if self._events is not None:
            await self._events.media_left(call.call_id, user_id)

    async def _session_destroyed(self, call: _CallMedia, event: WebhookEvent) -> None:
        stale = (
            call.unique_session_id is not None
            and event.unique_session_id is not None
            and event.unique_session_id != call.unique_session_id
        ) or (call.created_at is not None and event.timestamp < call.created_at)
        if stale or not call.ready:
            self._log_ignored(event, "an earlier session of the call")
            return
        call.ready = False
        gone: list[str] = []
        for member in call.members.values():
            connection = call.connections.get(member.connection_id or "")
            if connection is not None:
                if connection.joined and not connection.left:
                    gone.append(member.user_id)
                connection.left = True
            member.connection_id = member.token = None
        logger.info(
            "OpenVidu session of call %s destroyed (%s)",
            call.call_id,
            event.reason,
            extra={
                "event": "openvidu.session_destroyed",
                "call_id": call.call_id,
                "session_id": call.session_id,
                "reason": event.reason,
            },
        )
        if self._events is not None:
            for user_id in gone:
                await self._events.media_left(call.call_id, user_id)

    async def _maybe_connected(
        self, call: _CallMedia, connection: _Connection, event: WebhookEvent
    ) -> None:
        """Report the user connected once their connection joined and publishes
        (again on each later stream of theirs: a join resets ``connected``)."""
        user_id = connection.user_id
        if user_id is None or not (connection.joined and connection.publishing):
            return
        member = call.member(user_id)
        if member.connection_id != connection.id:
            return
        member.latest_ts = max(member.latest_ts, event.timestamp)
        logger.info(
            "OpenVidu: user %s's media is up in call %s",
            user_id,
            call.call_id,
            extra={
                "event": "openvidu.media_connected",
                "call_id": call.call_id,
                "user_id": user_id,
                "connection_id": connection.id,
                "webhook": event.event,
            },
        )
        if self._events is not None:
            await self._events.media_connected(call.call_id, user_id)

    def _reject(self, call: _CallMedia, event: WebhookEvent, why: str) -> None:
        assert event.connection_id is not None
        connection = call.connections.setdefault(
            event.connection_id, _Connection(event.connection_id, None)
        )
        connection.retired = True
        logger.warning(
            "OpenVidu: disconnecting %s from call %s: %s",
            event.connection_id,
            call.call_id,
            why,
            extra={
                "event": "openvidu.foreign_participant",
                "call_id": call.call_id,
                "connection_id": event.connection_id,
                "server_data": (event.server_data or "")[:200],
                "why": why,
            },
        )
        self._tasks.spawn(
            self._disconnect(call.session_id, event.connection_id, "foreign"),
            f"openvidu-disconnect-{event.connection_id}",
        )

    def _log_ignored(self, event: WebhookEvent, why: str) -> None:
        logger.info(
            "OpenVidu %s ignored: %s",
            event.event,
            why,
            extra={
                "event": "openvidu.webhook_ignored",
                "webhook": event.event,
                "session_id": event.session_id,
                "connection_id": event.connection_id,
                "timestamp": event.timestamp,
                "why": why,
            },
        )

    # ------------------------------------------------------------- helpers

    def _call(self, call_id: int) -> _CallMedia:
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _CallMedia(
                call_id, session_id_for(call_id, self._prefix), set()
            )
        return call

    async def _prepare(self, call: _CallMedia) -> None:
        try:
            async with call.setup_lock:
                await self._ensure_session(call)
        except OpenViduError as exc:
            logger.warning(
                "OpenVidu session of call %s not created yet: %s",
                call.call_id,
                exc,
                extra={"event": "openvidu.session_deferred", "call_id": call.call_id},
            )

    async def _ensure_session(self, call: _CallMedia) -> None:
        """Create the call's session unless it is known to exist (setup lock held)."""
        if call.ready:
            return
        info = await self.client.create_session(call.session_id)
        existed = info is None
        if info is None:  # 409: it exists, carry on (learn when it was made)
            info = await self.client.get_session(call.session_id)
        call.ready = True
        call.created_at = info.created_at if info else None
        call.unique_session_id = info.unique_id if info else None
        logger.info(
            "OpenVidu session %s ready for call %s",
            call.session_id,
            call.call_id,
            extra={
                "event": "openvidu.session_ready",
                "call_id": call.call_id,
                "session_id": call.session_id,
                "existed": existed,
            },
        )

    async def _token_for(self, call: _CallMedia, user_id: str) -> str:
        async with call.setup_lock:
            member = call.member(user_id)
            if member.connection_id is not None and member.token is not None:
                current = call.connections.get(member.connection_id)
                if current is None or not current.joined:
                    return member.token  # still pending: hand it out again
                # In use: a rejoin (or another device) negotiates anew with a
                # fresh token, and the old connection goes.
                # Dropped first: OpenVidu may close a session whose last
                # participant leaves, and a token made before would die with it.
                current.retired = True
                member.connection_id = member.token = None
                await self._disconnect(call.session_id, current.id, "replaced")
            for _ in range(2):
                await self._ensure_session(call)
                try:
                    info = await self.client.create_connection(
                        call.session_id, server_data_for(call.call_id, user_id)
                    )
                except SessionNotFoundError:
                    call.ready = False  # closed behind our back: create it again
                    continue
                break
            else:
                raise OpenViduUnavailableError("the OpenVidu session keeps disappearing")
            member.connection_id, member.token = info.id, info.token
            call.connections[info.id] = _Connection(info.id, user_id)
            logger.info(
                "OpenVidu connection %s for user %s in call %s",
                info.id,
                user_id,
                call.call_id,
                extra={
                    "event": "openvidu.connection_created",
                    "call_id": call.call_id,
                    "user_id": user_id,
                    "connection_id": info.id,
                },
            )
            return info.token

    async def _disconnect(self, session_id: str, connection_id: str, why: str) -> None:
        try:
            done = await self.client.disconnect(session_id, connection_id)
        except OpenViduError as exc:
            logger.warning(
                "OpenVidu: could not disconnect %s: %s",
                connection_id,
                exc,
                extra={"event": "openvidu.disconnect_failed", "connection_id": connection_id},
            )
            return
        logger.info(
            "OpenVidu connection %s dropped (%s)",
            connection_id,
            why,
            extra={
                "event": "openvidu.disconnected",
                "session_id": session_id,
                "connection_id": connection_id,
                "why": why,
                "existed": done,
            },
        )

    async def _close_session(self, call_id: int, session_id: str) -> None:
        try:
            existed = await self.client.close_session(session_id)
        except OpenViduError as exc:
            logger.error(
                "OpenVidu session %s of call %s not closed: %s",
                session_id,
                call_id,
                exc,
                extra={"event": "openvidu.close_failed", "call_id": call_id},
            )
            return
        logger.info(
            "OpenVidu session %s of call %s closed",
            session_id,
            call_id,
            extra={
                "event": "openvidu.session_closed",
                "call_id": call_id,
                "session_id": session_id,
                "existed": existed,
            },
        )
