"""The OpenVidu media backend: hands each participant a connection token and
follows who is really in the media session through OpenVidu's webhooks
(docs/media.md, *OpenVidu*)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, assert_never

from rtc_bridge.base import MediaBackend, MediaEvents
from rtc_bridge.openvidu.client import (
    OpenViduClient,
    OpenViduError,
    OpenViduUnavailableError,
    RetryPolicy,
    SessionNotFoundError,
)
from rtc_bridge.openvidu.webhooks import (
    SESSION_PREFIX,
    OtherEvent,
    ParticipantJoined,
    ParticipantLeft,
    SessionDestroyed,
    WebhookEvent,
    WebrtcConnectionCreated,
    call_id_for,
    parse_server_data,
    server_data_for,
    session_id_for,
)
from rtc_bridge.tasks import BackgroundTasks

logger = logging.getLogger(__name__)

#: How many event keys a call remembers to drop duplicates.
_SEEN_MAX = 512
#: How long ``close`` lets in-flight REST calls finish before cancelling them.
_CLOSE_GRACE_S = 1.0


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
        events: MediaEvents,
        policy: RetryPolicy | None = None,
        join_budget_s: float = 4.0,
        session_prefix: str = SESSION_PREFIX,
    ) -> None:
        self.client = OpenViduClient(url, secret, policy=policy)
        self.join_budget_s = join_budget_s
        self._prefix = session_prefix
        self._events = events
        self._calls: dict[int, _CallMedia] = {}
        self._tasks = BackgroundTasks(logger, "openvidu.task_failed")

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
        if isinstance(event, OtherEvent):
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
            match event:
                case SessionDestroyed():
                    await self._session_destroyed(call, event)
                case ParticipantJoined():
                    await self._participant_joined(call, event)
                case WebrtcConnectionCreated():
                    await self._webrtc_created(call, event)
                case ParticipantLeft():
                    await self._participant_left(call, event)
                case _:  # a new event type in the union needs its handler here
                    assert_never(event)

    async def _participant_joined(self, call: _CallMedia, event: ParticipantJoined) -> None:
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

    async def _webrtc_created(self, call: _CallMedia, event: WebrtcConnectionCreated) -> None:
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

    async def _participant_left(self, call: _CallMedia, event: ParticipantLeft) -> None:
        connection = call.connections.get(event.connection_id)
        if connection is None:  # left before we heard it join: it stays left
            call.connections[event.connection_id] = _Connection(
                event.connection_id, None, left=True
            )
            return
        if connection.left:
            return
        connection.left = True
        member = call.members.get(connection.user_id) if connection.user_id else None
        if member is None or member.connection_id != connection.id or connection.retired:
            return
        user_id = member.user_id
        member.connection_id = member.token = None  # the token is spent
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
        await self._events.media_left(call.call_id, user_id)

    async def _session_destroyed(self, call: _CallMedia, event: SessionDestroyed) -> None:
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
        await self._events.media_connected(call.call_id, user_id)

    def _reject(self, call: _CallMedia, event: ParticipantJoined, why: str) -> None:
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
