"""What every Socket.IO namespace shares: one event table, one error mapping."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from pydantic import ValidationError
from socketio import packet

from signaling.errors import ApiError, error_body, validation_message
from signaling.metrics import Metrics

logger = logging.getLogger(__name__)

#: The ack of an event that returns nothing else. Never mutated.
OK: dict[str, Any] = {"ok": True}

Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]
_LIFECYCLE = frozenset({"connect", "disconnect"})
#: Event names a client may not send: python-socketio would hand them to the
#: lifecycle handlers, which cannot tell them from a real connect/disconnect.
_RESERVED = frozenset({*_LIFECYCLE, "connect_error"})


class GuardedServer(socketio.AsyncServer):
    """python-socketio's server, refusing client events with reserved names."""

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        if data and isinstance(data[0], str) and data[0] in _RESERVED:
            if id is not None:
                ack = error_body("invalid", f"{data[0]!r} is a reserved event name")
                await self._send_packet(
                    eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=id, data=[ack])
                )
            return
        await super()._handle_event(eio_sid, namespace, id, data)

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
        await self._send_packet(
            eio_sid,
            self.packet_class(
                packet.EVENT, namespace=namespace, data=[event, payload], binary=False
            ),
        )


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
        authenticate: Callable[[Any], str],
        users: dict[str, str] | None = None,
    ) -> None:
        super().__init__(namespace)
        self._metrics = metrics
        self._authenticate = authenticate
        self._users: dict[str, str] = {} if users is None else users
        self._events: dict[str, Handler] = {
            name[3:]: getattr(self, name)
            for name in dir(self)
            if name.startswith("on_") and name[3:] not in _LIFECYCLE
        }

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        user_id = self._authenticate(auth)  # raises ConnectionRefusedError
        self._users[sid] = user_id
        await self.enter_room(sid, user_room(user_id))
        self._metrics.connections.labels(self.namespace).inc()

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        if self._users.pop(sid, None) is not None:
            self._metrics.connections.labels(self.namespace).dec()
            await self.disconnected(sid)

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
            return self._fail(exc.code, exc.message)
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
