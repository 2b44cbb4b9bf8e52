"""What every Socket.IO namespace shares: one event table, one error mapping."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from aiohttp import HttpVersion11, web
from engineio.payload import Payload
from pydantic import ValidationError
from socketio import packet

from signaling.admission import ClientAddresses, PendingConnections
from signaling.auth import Identity
from signaling.engineio_fence import (
    POLLING_BODY,
    abort_now,
    close_now,
    drop_queued,
    install,
    is_engineio_text,
    overflowed,
    queued,
    release_poll,
    release_silent,
)
from signaling.errors import ApiError, error_body, rate_limited, validation_message
from signaling.http import fail
from signaling.metrics import Metrics
from signaling.quotas import Quotas
from signaling.socketio_fence import AckId, FencedServer, RefusalKind
from signaling.ticks import Ticks

logger = logging.getLogger(__name__)

#: The ack of an event that returns nothing else. Never mutated.
OK: dict[str, Any] = {"ok": True}

Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]
_LIFECYCLE = frozenset({"connect", "disconnect"})
#: Event names a client may not send: python-socketio would hand them to the
#: lifecycle handlers, which cannot tell them from a real connect/disconnect.
_RESERVED = frozenset({*_LIFECYCLE, "connect_error"})
#: The client address of a new connection's handshake request, worked out
#: once at the door and counted under it once the connection opens.
_CLIENT_ADDRESS = web.RequestKey("giftcall_client_address", str)


class GuardedServer(FencedServer):
    """python-socketio's server with this project's rules at the edge.

    - Namespaces: only the registered ones (``/call``, ``/chat``) accept
      connections. Any other, ``/`` included, is refused like a bad token
      (``unauthorized``) without a valid one, and as ``not_found`` with one.
    - An Engine.IO connection that is not in an authenticated namespace within
      ``auth_timeout_s`` of opening (or of leaving its last one) is closed.
      One client address (``client_addresses``) may hold at most
      ``pending_per_address`` such connections; a new one over that gets 429
      ``rate_limited`` before any Engine.IO session exists.
    - Packets: no binary events or attachments (nothing is buffered), reserved
      event names are refused, and a packet that is not Socket.IO closes its
      connection; each of these gets an ``invalid`` ack when it carries an ack
      id the server can read.
    - HTTP: a long-polling upload over ``max_http_buffer_size`` gets 413 at
      once and closes its session; one that is not Engine.IO text gets 400.
    - Websockets negotiate permessage-deflate only when ``ws_deflate``.
    - Slow consumers: a connection with more than ``send_budget`` characters
      of packets waiting to be sent to it is closed (its TCP connection
      dropped); a sender whose ``emit_to_sid`` found it so gets
      ``rate_limited``.
    """

    def __init__(
        self,
        *,
        authenticate: Callable[[Any], Identity] | None = None,
        auth_timeout_s: float = 10.0,
        pending_per_address: int = 0,
        client_addresses: ClientAddresses | None = None,
        ws_deflate: bool = False,
        send_budget: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("engineio_logger", _EngineIOLog(logging.getLogger("engineio.server")))
        super().__init__(namespaces="*", **kwargs)
        install(self.eio, deflate=ws_deflate, send_budget=send_budget, on_overflow=self._overflowed)
        self.auth_timeout_s = auth_timeout_s
        self.pending = PendingConnections(pending_per_address)
        self.client_addresses = client_addresses or ClientAddresses()
        self.send_budget = send_budget
        self._closing: set[asyncio.Task[Any]] = set()
        #: connections to close unless they are in a namespace by then (a
        #: dict slot each, not a loop timer: every connection has one)
        self._namespace_checks: Ticks[str] = Ticks(self._close_if_outside)
        self.register_namespace(UnknownNamespace(authenticate))

    # ------------------------------------------------------------------ HTTP

    def attach(self, app: web.Application, socketio_path: str = "socket.io") -> None:
        path = f"/{socketio_path.strip('/')}/"
        app.router.add_route("GET", path, self.handle_http)
        app.router.add_route("POST", path, self.handle_http, expect_handler=self._expect_upload)
        app.router.add_route("OPTIONS", path, self.handle_http)

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and "sid" not in request.query:
            # A new Engine.IO connection: refused at the door while its
            # address holds its share of connections without a token.
            address = request[_CLIENT_ADDRESS] = self.client_addresses.of(request)
            if self.pending.full(address):
                logger.info(
                    "connection refused: %d connections outside a namespace from one address",
                    self.pending.per_address,
                    extra={"event": "socket.refused", "why": "pending per address"},
                )
                raise rate_limited(
                    f"too many connections without a token from one address "
                    f"(at most {self.pending.per_address})",
                    retry_after=math.ceil(self.auth_timeout_s),
                )
        if request.method == "POST":
            refused = await self._read_upload(request)
            if refused is not None:
                return refused
        try:
            response: web.StreamResponse = await self.handle_request(request)
        except ConnectionResetError:
            # The client went away before its answer (mid websocket handshake,
            # say): nobody to answer, and no failure of the server's to log.
            # aiohttp drops the response below quietly on the closed transport.
            logger.info("client gone before its answer", extra={"event": "socket.client_gone"})
            return web.Response(status=400)
        return response

    async def _expect_upload(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse an announced oversized upload before
        the client sends it; otherwise what aiohttp does by default."""
        if (request.content_length or 0) > self.eio.max_http_buffer_size:
            return await self._upload_too_large(request)
        if request.version == HttpVersion11:
            if request.headers.get("Expect", "").lower() != "100-continue":
                raise web.HTTPExpectationFailed(text="Unknown Expect")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    async def _read_upload(self, request: web.Request) -> web.StreamResponse | None:
        """Read a long-polling upload, at most ``max_http_buffer_size`` bytes,
        and check that it is Engine.IO text; the body goes on to python-engineio
        from memory. A refusal is the response to send."""
        limit = self.eio.max_http_buffer_size
        if (request.content_length or 0) > limit:
            return await self._upload_too_large(request)
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                return await self._upload_too_large(request)
        problem = _polling_problem(bytes(body))
        if problem is not None:
            await self._close_session(request, "upload refused: " + problem)
            return fail("invalid", problem, 400)
        request[POLLING_BODY] = bytes(body)
        return None

    async def _upload_too_large(self, request: web.Request) -> web.StreamResponse:
        limit = self.eio.max_http_buffer_size
        await self._close_session(request, "upload over the limit")
        response = fail("invalid", f"message larger than {limit} bytes", 413)
        response.force_close()
        # Sent now, then the connection closes: the rest of the upload is never
        # read (aiohttp would otherwise read and drop it for up to 10 s).
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()
        return response

    async def _close_session(self, request: web.Request, why: str) -> None:
        sid = request.query.get("sid")
        if sid and await close_now(self.eio, sid):
            logger.info("connection closed: %s", why, extra={"event": "socket.refused", "why": why})

    # ---------------------------------------------------------- connections

    def engineio_connected(self, eio_sid: str, environ: dict[str, Any]) -> None:
        request = environ.get("aiohttp.request")
        address = request.get(_CLIENT_ADDRESS, "") if request is not None else ""
        self.pending.opened(eio_sid, address)
        self.expect_namespace(eio_sid)

    def engineio_disconnected(self, eio_sid: str, reason: str) -> None:
        self.pending.closed(eio_sid)
        if reason in (self.reason.CLIENT_DISCONNECT, self.reason.TRANSPORT_CLOSE):
            # Nothing queued for it can be sent now; let it go at once.
            drop_queued(self.eio, eio_sid)
        if reason == self.reason.CLIENT_DISCONNECT:
            release_poll(self.eio, eio_sid)
        elif reason == self.reason.PING_TIMEOUT:
            release_silent(self.eio, eio_sid)

    def namespace_entered(self, sid: str, namespace: str) -> None:
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        if eio_sid is not None:
            self.pending.inside(eio_sid)

    def namespace_left(self, sid: str, namespace: str) -> None:
        """``sid`` left ``namespace``: its connection may stay open outside
        every namespace, with the same time as a new one to join one again."""
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        if eio_sid is None:
            return
        if not self._in_a_namespace(eio_sid):
            self.pending.outside(eio_sid)
        self.expect_namespace(eio_sid)  # checks again when it fires

    def expect_namespace(self, eio_sid: str) -> None:
        """Close ``eio_sid`` unless it is in a namespace ``auth_timeout_s`` from now."""
        self._namespace_checks.add(eio_sid, self.auth_timeout_s)

    def _close_if_outside(self, eio_sid: str) -> None:
        socket = self.eio.sockets.get(eio_sid)
        if socket is None or socket.closed or socket.closing or self._in_a_namespace(eio_sid):
            return
        logger.info(
            "connection closed: no namespace within %ss",
            self.auth_timeout_s,
            extra={"event": "socket.auth_timeout"},
        )
        task = asyncio.ensure_future(close_now(self.eio, eio_sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _overflowed(self) -> None:
        """A packet queue went over ``send_budget``: close its slow consumer
        soon (not inside the ``put`` that found it)."""
        task = asyncio.ensure_future(self._close_slow_consumers())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_slow_consumers(self) -> None:
        for eio_sid in overflowed(self.eio):
            if await abort_now(self.eio, eio_sid):
                logger.warning(
                    "connection closed: slow consumer",
                    extra={"event": "socket.slow_consumer", "budget": self.send_budget},
                )

    def _in_a_namespace(self, eio_sid: str) -> bool:
        manager = self.manager
        return any(
            self._connected_to(eio_sid, namespace) for namespace in list(manager.get_namespaces())
        )

    def _connected_to(self, eio_sid: str, namespace: str) -> bool:
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        return sid is not None and bool(self.manager.is_connected(sid, namespace))

    # --------------------------------------------------------------- packets

    def event_refusal(self, data: list[Any]) -> str | None:
        name = data[0]
        if not isinstance(name, str):
            return "an event name is a string"
        if name in _RESERVED:
            return f"{name!r} is a reserved event name"
        return None

    async def refuse_packet(
        self,
        eio_sid: str,
        kind: RefusalKind,
        namespace: str | None,
        ack_id: AckId | None,
        message: str,
    ) -> None:
        if ack_id is not None and namespace is not None and self._connected_to(eio_sid, namespace):
            ack = error_body("invalid", message)
            await self.send_socketio_packet(
                eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=ack_id, data=[ack])
            )
        elif kind in ("malformed", "unexpected") and await close_now(self.eio, eio_sid):
            # Not Socket.IO, and nothing to answer: the reference server closes
            # the connection on a parse error, and so does this one.
            logger.info(
                "connection closed: %s", message, extra={"event": "socket.refused", "why": message}
            )
        # else: binary without an ack id, or a refused event without one: dropped

    async def emit_to_sid(self, sid: str, event: str, payload: Any, namespace: str) -> None:
        """``emit(event, payload, to=sid)`` without the room machinery.

        The relay's hot path: python-socketio's emit resolves ``sid`` as a
        room, scans the payload for binary parts and spawns a task per
        recipient that it then waits for. For one connection of this process
        none of that is needed: encode once and queue the frame. Connections
        on other processes (a pub/sub client manager) take the normal path.
        """
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        if eio_sid is None:
            await self.emit(event, payload, to=sid, namespace=namespace)
            return
        # binary=False: payloads here come from JSON, so they have no bytes.
        await self.send_socketio_packet(
            eio_sid,
            self.packet_class(
                packet.EVENT, namespace=namespace, data=[event, payload], binary=False
            ),
        )
        if self.send_budget and queued(self.eio, eio_sid) > self.send_budget:
            raise rate_limited(
                "the recipient does not read fast enough and is being disconnected", 1
            )


class UnknownNamespace(socketio.AsyncNamespace):
    """Every namespace without a handler of its own (python-socketio's
    catch-all ``*``): a connection is refused, ``unauthorized`` first so a
    caller without a token learns nothing, ``not_found`` otherwise (without
    ``authenticate``, always ``unauthorized``)."""

    def __init__(self, authenticate: Callable[[Any], Identity] | None) -> None:
        super().__init__("*")
        self._authenticate = authenticate

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event != "connect":
            return None
        namespace, auth = args[0], args[3] if len(args) > 3 else None
        if self._authenticate is None:
            raise socketio.exceptions.ConnectionRefusedError(
                "unauthorized", {"code": "unauthorized", "message": "no such namespace"}
            )
        self._authenticate(auth)  # raises ConnectionRefusedError("unauthorized", ...)
        raise socketio.exceptions.ConnectionRefusedError(
            "not_found",
            {"code": "not_found", "message": f"no namespace {str(namespace)[:64]!r}"},
        )


class _EngineIOLog(logging.LoggerAdapter[logging.Logger]):
    """python-engineio's logger, with its ``error`` lines (a client's bad
    request: unknown session, origin, transport; logged once) as warnings.
    Its ``exception`` lines, which are the server's own failures, stay errors."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger)
        # The library logs every packet it receives and sends at INFO: those
        # calls go straight to the logger, without the adapter's three layers
        # of calls (a few per cent of the relay's CPU, for lines that are off).
        self.info = logger.info  # type: ignore[method-assign,assignment]
        self.debug = logger.debug  # type: ignore[method-assign,assignment]

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.warning(msg, *args, **kwargs)


def _polling_problem(body: bytes) -> str | None:
    """What is wrong with a long-polling upload for python-engineio, if anything."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    if not text:
        return None
    packets = text.split("\x1e")
    if len(packets) > Payload.max_decode_packets:
        return f"more than {Payload.max_decode_packets} packets"
    if not all(is_engineio_text(p) for p in packets):
        return "not Engine.IO packets"
    return None


def user_room(user_id: str) -> str:
    """The Socket.IO room of every connection of a user, in each namespace."""
    return f"user:{user_id}"


class GuardedNamespace(socketio.AsyncNamespace):
    """An authenticated namespace whose ``on_<event>(sid, payload)`` handlers
    never leak an exception: every failure becomes PROTOCOL.md's error ack, an
    unknown event or a wrong number of arguments included, so no client waits
    for an ack that never comes and no connection dies of bad input.

    A connection is refused unless ``authenticate`` accepts its ``auth``; an
    accepted one is recorded in ``users`` (sid -> user id) and joins the
    user's room until it goes.
    """

    def __init__(
        self,
        namespace: str,
        metrics: Metrics,
        authenticate: Callable[[Any], Identity],
        users: dict[str, str] | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        super().__init__(namespace)
        self._metrics = metrics
        self._quotas = quotas
        self._authenticate = authenticate
        self._users: dict[str, str] = {} if users is None else users
        #: sid -> the tick of ``_expiry_ticks`` at which its token expires
        self._expiries: dict[str, int] = {}
        self._expiry_ticks: Ticks[str] = Ticks(self._expire)
        self._expiring: set[asyncio.Task[Any]] = set()
        self._events: dict[str, Handler] = {
            name[3:]: getattr(self, name)
            for name in dir(self)
            if name.startswith("on_") and name[3:] not in _LIFECYCLE
        }

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        identity = self._authenticate(auth)  # raises ConnectionRefusedError
        user_id = identity.user_id
        if self._quotas is not None:
            try:
                self._quotas.admit_connection(self.namespace, user_id)
            except ApiError as exc:
                self._metrics.errors.labels(exc.code).inc()
                raise socketio.exceptions.ConnectionRefusedError(
                    exc.code, exc.to_body()["error"]
                ) from None
        self._users[sid] = user_id
        if isinstance(self.server, GuardedServer):
            self.server.namespace_entered(sid, self.namespace)
        # A connection lives no longer than its token: out of the namespace at exp.
        self._expiries[sid] = self._expiry_ticks.add(sid, identity.expires_at - time.time())
        await self.enter_room(sid, user_room(user_id))
        self._metrics.connections.labels(self.namespace).inc()

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        if isinstance(self.server, GuardedServer):
            self.server.namespace_left(sid, self.namespace)
        expiry = self._expiries.pop(sid, None)
        if expiry is not None:
            self._expiry_ticks.discard(sid, expiry)
        user_id = self._users.pop(sid, None)
        if user_id is not None:
            if self._quotas is not None:
                self._quotas.release_connection(self.namespace, user_id, sid)
            self._metrics.connections.labels(self.namespace).dec()
            await self.disconnected(sid)

    def _expire(self, sid: str) -> None:
        """The connection's token expired: disconnect it from this namespace
        (the client sees an ``io server disconnect``; it reconnects with a new
        token). Its Engine.IO connection then has the namespace timeout."""
        self._expiries.pop(sid, None)
        if sid not in self._users:
            return
        logger.info(
            "connection closed: token expired",
            extra={"event": "socket.token_expired", "namespace": self.namespace},
        )
        task = asyncio.ensure_future(self.disconnect(sid))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def disconnected(self, sid: str) -> None:
        """A connection that was accepted is gone (after it left ``users``)."""

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in _LIFECYCLE:
            return await super().trigger_event(event, *args)
        handler = self._events.get(event)
        if handler is None:
            return self._fail("invalid", f"unknown event {str(event)[:64]!r}")
        if len(args) != 2:
            return self._fail("invalid", "expected exactly one payload object")
        try:
            return await handler(args[0], args[1])
        except ApiError as exc:
            self._metrics.errors.labels(exc.code).inc()
            return exc.to_body()
        except ValidationError as exc:
            return self._fail("invalid", validation_message(exc))
        except Exception:
            logger.exception(
                "handler %s failed",
                event,
                extra={"event": "handler.failed", "namespace": self.namespace, "handler": event},
            )
            return self._fail("unavailable", "internal error; please retry")

    def _fail(self, code: str, message: str) -> dict[str, Any]:
        self._metrics.errors.labels(code).inc()
        return error_body(code, message)
