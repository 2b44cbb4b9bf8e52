"""A simulator of the documented OpenVidu 2 REST API (``/openvidu/api``) and of
its webhook, for tests: an aiohttp server on 127.0.0.1.

REST, as documented (status codes and bodies):

- every route: Basic auth ``OPENVIDUAPP:<secret>``, else 401;
- ``POST /sessions``: 200 with the session object; 409 when ``customSessionId``
  exists; 400 on a bad body;
- ``GET /sessions/{id}``: 200 / 404; ``DELETE /sessions/{id}``: 204 / 404;
- ``POST /sessions/{id}/connection``: 200 with the connection object
  (``token``, ``serverData`` = the ``data`` sent); 404 unknown session; 400 bad body;
- ``GET`` / ``DELETE /sessions/{id}/connection/{cid}``: 200 or 204 / 400 unknown
  session / 404 unknown connection.

What a browser does with a token (:meth:`OpenViduSim.connect`,
:meth:`OpenViduSim.leave`) produces the webhook events OpenVidu would send:
``participantJoined``, ``webrtcConnectionCreated`` (``OUTBOUND`` for its
publisher, ``INBOUND`` for each subscription, both ways), ``participantLeft``
and ``sessionDestroyed`` (closed by the REST API, or when the last participant
leaves). Events go to ``webhook_url`` with ``webhook_headers``, in order,
unless ``hold_webhooks`` keeps them in :attr:`held` for a test to deliver in
another order, twice, or not at all (:meth:`deliver`).

Failure modes: ``fail_status`` (every request answers it, e.g. 503),
``delay_s`` (every request waits first, e.g. longer than the client's
timeout), and :meth:`go_down` / :meth:`come_back` (connection refused).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.support import free_port

API = "/openvidu/api"
_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass
class SimConnection:
    id: str
    session_id: str
    token: str
    server_data: str
    role: str
    created_at: int
    status: str = "pending"  # "active" once a user connected with the token
    active_at: int | None = None
    publishing: bool = False
    stream_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "connection",
            "type": "WEBRTC",
            "status": self.status,
            "sessionId": self.session_id,
            "createdAt": self.created_at,
            "activeAt": self.active_at,
            "location": "",
            "ip": "127.0.0.1" if self.status == "active" else "",
            "platform": "aiortc" if self.status == "active" else "",
            "token": self.token,
            "serverData": self.server_data,
            "clientData": "" if self.status == "active" else None,
            "record": True,
            "role": self.role,
            "kurentoOptions": None,
            "customIceServers": [],
            "publishers": [],
            "subscribers": [],
        }


@dataclass
class SimSession:
    id: str
    created_at: int
    custom: bool
    connections: dict[str, SimConnection] = field(default_factory=dict)

    @property
    def unique_id(self) -> str:
        return f"{self.id}_{self.created_at}"

    def to_json(self) -> dict[str, Any]:
        active = [c.to_json() for c in self.connections.values() if c.status == "active"]
        return {
            "id": self.id,
            "object": "session",
            "createdAt": self.created_at,
            "mediaMode": "ROUTED",
            "recordingMode": "MANUAL",
            "defaultRecordingProperties": {"name": "", "hasAudio": True, "hasVideo": True},
            "customSessionId": self.id if self.custom else "",
            "connections": {"numberOfElements": len(active), "content": active},
            "recording": False,
            "broadcasting": False,
            "forcedVideoCodec": "VP8",
            "allowTranscoding": False,
        }


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    status: int  # 0: the request got no answer (delayed past the client's timeout)
    body: Any = None


class OpenViduSim:
    def __init__(self, secret: str = "sim-secret") -> None:
        self.secret = secret
        self.port = free_port()
        self.sessions: dict[str, SimSession] = {}
        self.destroyed: list[str] = []
        self.log: list[Logged] = []
        self.fail_status: int | None = None
        self.delay_s = 0.0
        self.webhook_url: str | None = None
        self.webhook_headers: dict[str, str] = {}
        self.hold_webhooks = False
        self.held: list[dict[str, Any]] = []
        #: every webhook delivered: (event body, status of our server's answer)
        self.delivered: list[tuple[dict[str, Any], int]] = []
        self._clock = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def expected_auth(self) -> str:
        """The Authorization header OpenVidu expects: Basic OPENVIDUAPP:<secret>."""
        return "Basic " + base64.b64encode(f"OPENVIDUAPP:{self.secret}".encode()).decode()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post(API + "/sessions", self._create_session)
        app.router.add_get(API + "/sessions", self._list_sessions)
        app.router.add_get(API + "/sessions/{sid}", self._get_session)
        app.router.add_delete(API + "/sessions/{sid}", self._delete_session)
        app.router.add_post(API + "/sessions/{sid}/connection", self._create_connection)
        app.router.add_get(API + "/sessions/{sid}/connection/{cid}", self._get_connection)
        app.router.add_delete(API + "/sessions/{sid}/connection/{cid}", self._delete_connection)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.go_down()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def go_down(self) -> None:
        """Stop listening: requests get ``connection refused``."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def come_back(self) -> None:
        if self._runner is None:
            await self.start()

    # ------------------------------------------------------------ REST side

    def now(self) -> int:
        """UTC milliseconds, strictly increasing across events."""
        self._clock = max(int(time.time() * 1000), self._clock + 1)
        return self._clock

    def requests(self, method: str, path_part: str = "") -> list[Logged]:
        return [r for r in self.log if r.method == method and path_part in r.path]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.delay_s:
            try:
                await asyncio.sleep(self.delay_s)
            except asyncio.CancelledError:  # the client gave up
                self.log.append(Logged(request.method, request.path, 0))
                raise
        if request.headers.get("Authorization") != self.expected_auth:
            response: web.StreamResponse = web.Response(status=401)
        elif self.fail_status is not None:
            response = web.json_response(
                {"status": self.fail_status, "message": "simulated failure"},
                status=self.fail_status,
            )
        else:
            response = await handler(request)
        body = response.text if isinstance(response, web.Response) else None
        self.log.append(Logged(request.method, request.path, response.status, body))
        return response

    @staticmethod
    async def _json(request: web.Request, empty_ok: bool) -> dict[str, Any] | None:
        raw = await request.read()
        if not raw and empty_ok:
            return {}
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response(
            {"timestamp": int(time.time() * 1000), "status": status, "message": message},
            status=status,
        )

    async def _create_session(self, request: web.Request) -> web.Response:
        body = await self._json(request, empty_ok=True)
        if body is None:
            return self._error(400, "the body must be a JSON object")
        custom = body.get("customSessionId") or ""
        if not isinstance(custom, str) or (custom and not _CUSTOM_ID.fullmatch(custom)):
            return self._error(400, "customSessionId: alphanumeric, dashes and underscores")
        if body.get("mediaMode", "ROUTED") not in ("ROUTED", "RELAYED"):
            return self._error(400, "mediaMode")
        if custom in self.sessions:
            return web.Response(status=409)
        session_id = custom or "ses_" + secrets.token_hex(5)
        session = SimSession(session_id, self.now(), bool(custom))
        self.sessions[session_id] = session
        return web.json_response(session.to_json())

    async def _list_sessions(self, request: web.Request) -> web.Response:
        content = [s.to_json() for s in self.sessions.values()]
        return web.json_response({"numberOfElements": len(content), "content": content})

    async def _get_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["sid"])
        if session is None:
            return web.Response(status=404)
        return web.json_response(session.to_json())

    async def _delete_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["sid"])
        if session is None:
            return web.Response(status=404)
        await self._close(session, "sessionClosedByServer")
        return web.Response(status=204)

    async def _create_connection(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["sid"])
        if session is None:
            return web.Response(status=404)
        body = await self._json(request, empty_ok=True)
        if body is None:
            return self._error(400, "the body must be a JSON object")
        kind = body.get("type", "WEBRTC")
        role = body.get("role", "PUBLISHER")
        data = body.get("data", "")
        if kind != "WEBRTC" or role not in ("SUBSCRIBER", "PUBLISHER", "MODERATOR"):
            return self._error(400, "type must be WEBRTC; role SUBSCRIBER, PUBLISHER or MODERATOR")
        if not isinstance(data, str):
            return self._error(400, "data must be a string")
        connection_id = "con_" + secrets.token_hex(5)
        token = (
            f"ws://127.0.0.1:{self.port}?sessionId={session.id}"
            f"&token=tok_{secrets.token_hex(8)}&role={role}&version=2.30.0"
        )
        connection = SimConnection(connection_id, session.id, token, data, role, self.now())
        session.connections[connection_id] = connection
        return web.json_response(connection.to_json())

    async def _get_connection(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["sid"])
        if session is None:
            return web.Response(status=400)
        connection = session.connections.get(request.match_info["cid"])
        if connection is None:
            return web.Response(status=404)
        return web.json_response(connection.to_json())

    async def _delete_connection(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["sid"])
        if session is None:
            return web.Response(status=400)
        connection = session.connections.get(request.match_info["cid"])
        if connection is None:
            return web.Response(status=404)
        await self._drop(session, connection, "forceDisconnectByServer")
        return web.Response(status=204)

    # --------------------------------------------------------- browser side

    def connection_for(self, token: str) -> SimConnection:
        for session in self.sessions.values():
            for connection in session.connections.values():
                if connection.token == token:
                    return connection
        raise KeyError("no connection has this token")

    async def connect(self, token: str, *, publish: bool = True) -> SimConnection:
        """A user's ``Session.connect(token)`` (and ``publish``); the other
        publishers are subscribed to both ways, as an app usually does."""
        connection = self.connection_for(token)
        if connection.status != "pending":
            raise ValueError("the token was used already")
        session = self.sessions[connection.session_id]
        connection.status, connection.active_at = "active", self.now()
        await self._emit(
            session,
            "participantJoined",
            connectionId=connection.id,
            location="",
            ip="127.0.0.1",
            platform="aiortc",
            clientData="",
            serverData=connection.server_data,
        )
        if publish:
            await self.publish(connection)
        return connection

    async def publish(self, connection: SimConnection) -> None:
        session = self.sessions[connection.session_id]
        connection.publishing = True
        connection.stream_id = f"str_CAM_{secrets.token_hex(2)}_{connection.id}"
        await self._emit(session, "webrtcConnectionCreated", **_stream(connection, None))
        for other in self._others(session, connection):
            if other.publishing:  # the newcomer receives the others ...
                await self._emit(session, "webrtcConnectionCreated", **_stream(other, connection))
            # ... and the others receive the newcomer
            await self._emit(session, "webrtcConnectionCreated", **_stream(connection, other))

    async def leave(self, connection: SimConnection, reason: str = "disconnect") -> None:
        session = self.sessions.get(connection.session_id)
        if session is not None and connection.id in session.connections:
            await self._drop(session, connection, reason)

    # ------------------------------------------------------------- webhooks

    async def deliver(self, events: Iterable[dict[str, Any]]) -> list[int]:
        """Post ``events`` to the webhook, in this order; their statuses."""
        return [await self._post(event) for event in events]

    def _others(self, session: SimSession, connection: SimConnection) -> list[SimConnection]:
        return [
            c for c in session.connections.values() if c is not connection and c.status == "active"
        ]

    async def _drop(self, session: SimSession, connection: SimConnection, reason: str) -> None:
        del session.connections[connection.id]
        if connection.status == "active":
            await self._emit(
                session,
                "participantLeft",
                connectionId=connection.id,
                startTime=connection.active_at,
                duration=0,
                reason=reason,
                location="",
                ip="127.0.0.1",
                platform="aiortc",
                clientData="",
                serverData=connection.server_data,
            )
            if reason != "sessionClosedByServer" and not self._others(session, connection):
                await self._close(session, "lastParticipantLeft")

    async def _close(self, session: SimSession, reason: str) -> None:
        for connection in list(session.connections.values()):
            await self._drop(session, connection, "sessionClosedByServer")
        self.sessions.pop(session.id, None)
        self.destroyed.append(session.id)
        await self._emit(
            session,
            "sessionDestroyed",
            startTime=session.created_at,
            duration=0,
            reason=reason,
        )

    async def _emit(self, session: SimSession, event: str, **fields: Any) -> None:
        body = {
            "event": event,
            "timestamp": self.now(),
            "sessionId": session.id,
            "uniqueSessionId": session.unique_id,
            **fields,
        }
        if self.hold_webhooks:
            self.held.append(body)
        else:
            await self._post(body)

    async def _post(self, body: dict[str, Any]) -> int:
        if self.webhook_url is None:
            return 0
        if self._http is None:
            self._http = aiohttp.ClientSession()
        async with self._http.post(
            self.webhook_url,
            json=body,
            headers=self.webhook_headers,
            timeout=aiohttp.ClientTimeout(total=5),
        ) as response:
            status = response.status
        self.delivered.append((body, status))
        return status


def _stream(publisher: SimConnection, receiver: SimConnection | None) -> dict[str, Any]:
    """The fields of a ``webrtcConnectionCreated``: ``receiver`` receiving
    ``publisher``'s stream, or ``publisher`` publishing it (``None``)."""
    fields: dict[str, Any] = {
        "streamId": publisher.stream_id,
        "connectionId": publisher.id if receiver is None else receiver.id,
        "connection": "OUTBOUND" if receiver is None else "INBOUND",
        "videoSource": "CAMERA",
        "videoFramerate": 30,
        "videoDimensions": '{"width":640,"height":480}',
        "audioEnabled": True,
        "videoEnabled": True,
    }
    if receiver is not None:
        fields["receivingFrom"] = publisher.id
    return fields
