"""Janus VideoRoom: an SFU that forwards RTP without decoding it.

One VideoRoom room per call (room id = call id), created with ``admin_key``
(so only this server creates rooms), a secret of its own (needed to kick or
destroy) and an ``allowed`` list of two tokens, one per user, handed out in the
``join`` ack with the user's publisher id (``feed_id``). Secret, tokens and
feed ids are derived from the admin key by HMAC: nothing is stored, and after a
restart the same values come out, so rooms made before it stay usable.

The server talks to Janus's HTTP API (``POST <url>``: ``create`` a session,
``attach`` ``janus.plugin.videoroom``, ``message`` with a VideoRoom request;
``keepalive`` every ``keepalive_s``). Janus answers HTTP 200 with an error
object; a connection error or timeout is retried a bounded number of times,
then the backend raises :class:`JanusUnavailableError` (the ``join`` ack says
``unavailable``; the call is not lost).

Presence comes from Janus's sample HTTP event handler, posted to
``/api/webhooks/janus`` (``signaling/webhooks/janus.py``) and handed to
:meth:`JanusMedia.submit_events`. A user counts as ``connected`` once their
publisher joined the room with their feed id and a peer connection of their
Janus session is up (``webrtcup``), reported again for each later one (a
subscription to the partner's new feed after the partner rejoined). Their
publisher going (hang-up, leaving, kick, detach) reports ``media_left``. Facts
only accumulate and a handle that went stays gone, so repeated and reordered
deliveries give the same outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from rtc_bridge.base import MediaBackend, MediaEvents
from rtc_bridge.errors import MediaUnavailableError
from rtc_bridge.tasks import BackgroundTasks

logger = logging.getLogger(__name__)

PLUGIN = "janus.plugin.videoroom"
#: Janus's event types (``type`` of an event handler's event).
EVENT_HANDLE = 2
EVENT_WEBRTC = 16
EVENT_PLUGIN = 64
#: Janus core error codes.
NO_SUCH_SESSION = 458
NO_SUCH_HANDLE = 459
#: VideoRoom error codes.
NO_SUCH_ROOM = 426
ROOM_EXISTS = 427
NO_SUCH_FEED = 428
#: VideoRoom events that end a publisher's presence in the room.
_PUBLISHER_GONE = frozenset({"leaving", "kicked", "unpublished", "destroyed"})
#: Handles remembered without a call (subscriber handles before their session
#: is known, strangers): the oldest are forgotten beyond this.
_LOOSE_HANDLES_MAX = 4096
_SEEN_MAX = 4096
_CLOSE_GRACE_S = 1.0


class JanusError(MediaUnavailableError):
    """Any failure talking to Janus (the join ack says ``unavailable``)."""


class JanusUnavailableError(JanusError):
    """No usable answer after the retries: down or slow."""


class JanusRejectedError(JanusError):
    """Janus or the VideoRoom answered an error this client did not expect."""

    def __init__(self, what: str, code: int | None, reason: str) -> None:
        super().__init__(f"Janus refused {what}: {code} {reason}")
        self.code = code


# ------------------------------------------------------------------ room keys


@dataclass(frozen=True)
class RoomKeys:
    """The derived secrets of calls' rooms (HMAC-SHA256 under ``key``)."""

    key: str

    def _mac(self, *parts: object) -> bytes:
        message = "\x1f".join(str(p) for p in parts).encode()
        return hmac.new(self.key.encode(), message, hashlib.sha256).digest()

    def secret(self, call_id: int) -> str:
        """The room's secret: kick, destroy and edit need it."""
        return self._mac("room-secret", call_id).hex()

    def token(self, call_id: int, user_id: str) -> str:
        """The user's entry in the room's ``allowed`` list."""
        return self._mac("token", call_id, user_id).hex()[:40]

    def feed_id(self, call_id: int, user_id: str) -> int:
        """The user's publisher id: 48 bits, so JavaScript numbers hold it exactly."""
        return int.from_bytes(self._mac("feed", call_id, user_id)[:6], "big") or 1


def room_for(call_id: int) -> int:
    return call_id


# --------------------------------------------------------------------- client


class JanusClient:
    """The part of Janus's HTTP API this project uses: one session and one
    VideoRoom handle of the server's own, kept alive, made again when Janus
    lost them (a restart)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 1.5,
        attempts: int = 3,
        keepalive_s: float = 25.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.keepalive_s = keepalive_s
        self._http: aiohttp.ClientSession | None = None
        self._ids: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        self._keepalive: asyncio.Task[None] | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request with retries; the JSON answer, whatever Janus said."""
        body = {**body, "transaction": secrets.token_hex(8)}
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.1, max=1.0),
                retry=retry_if_exception_type((aiohttp.ClientError, TimeoutError, ValueError)),
                reraise=True,
            ):
                with attempt:
                    async with self._session().post(
                        self.url + path,
                        json=body,
                        timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                    ) as response:
                        answer = await response.json(content_type=None)
                    if not isinstance(answer, dict):
                        raise ValueError(f"not a JSON object: {str(answer)[:200]}")
                    return answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning(
                "Janus %s failed: %s",
                body.get("janus"),
                exc,
                extra={"event": "janus.request_failed", "request": body.get("janus")},
            )
            raise JanusUnavailableError(
                f"Janus does not answer ({body.get('janus')}: {type(exc).__name__}: {exc}, "
                f"{self.attempts} attempts)"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _handle(self) -> tuple[int, int]:
        """The server's session and VideoRoom handle, made on first use."""
        async with self._lock:
            if self._ids is None:
                session_id = _data_id(await self.post("", {"janus": "create"}), "create")
                attached = await self.post(f"/{session_id}", {"janus": "attach", "plugin": PLUGIN})
                self._ids = (session_id, _data_id(attached, "attach"))
                if self._keepalive is None or self._keepalive.done():
                    self._keepalive = asyncio.get_running_loop().create_task(
                        self._keep_alive(), name="janus-keepalive"
                    )
            return self._ids

    async def videoroom(self, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous VideoRoom request; its ``plugindata.data``. A session
        or handle Janus no longer knows is made again, once."""
        for _ in range(2):
            session_id, handle_id = await self._handle()
            answer = await self.post(
                f"/{session_id}/{handle_id}", {"janus": "message", "body": body}
            )
            error = answer.get("error")
            if answer.get("janus") == "error" and isinstance(error, dict):
                if error.get("code") in (NO_SUCH_SESSION, NO_SUCH_HANDLE):
                    self._forget((session_id, handle_id))
                    continue
                raise JanusRejectedError(
                    body["request"], error.get("code"), str(error.get("reason"))
                )
            data = (answer.get("plugindata") or {}).get("data")
            if not isinstance(data, dict):
                raise JanusRejectedError(body["request"], None, f"odd answer {str(answer)[:200]}")
            return data
        raise JanusUnavailableError("Janus keeps losing the server's session")

    def _forget(self, ids: tuple[int, int]) -> None:
        if self._ids == ids:
            self._ids = None

    async def _keep_alive(self) -> None:
        # Janus drops a session that is quiet for session_timeout (60 s by default).
        while True:
            await asyncio.sleep(self.keepalive_s)
            ids = self._ids
            if ids is None:
                continue
            try:
                answer = await self.post(f"/{ids[0]}", {"janus": "keepalive"})
            except JanusUnavailableError:
                continue
            if answer.get("janus") != "ack":
                self._forget(ids)  # made again on next use

    async def create_room(
        self, room: int, *, secret: str, admin_key: str, allowed: Iterable[str], description: str
    ) -> bool:
        """Create the room; ``False`` when it already exists."""
        data = await self.videoroom(
            {
                "request": "create",
                "room": room,
                "admin_key": admin_key,
                "secret": secret,
                "allowed": sorted(allowed),
                "description": description,
                "is_private": True,
                "publishers": 2,
                # subscribers must be participants (who needed a token to join)
                "require_pvtid": True,
                "audiocodec": "opus",
                "videocodec": "vp8",
            }
        )
        return _outcome(data, "create", ok="created", benign=ROOM_EXISTS)

    async def destroy_room(self, room: int, *, secret: str) -> bool:
        """Destroy the room (every participant is hung up); ``False`` when it was gone."""
        data = await self.videoroom({"request": "destroy", "room": room, "secret": secret})
        return _outcome(data, "destroy", ok="destroyed", benign=NO_SUCH_ROOM)

    async def kick(self, room: int, feed_id: int, *, secret: str) -> bool:
        """Kick a participant out; ``False`` when it was not in the room."""
        data = await self.videoroom(
            {"request": "kick", "room": room, "id": feed_id, "secret": secret}
        )
        if data.get("error_code") == NO_SUCH_ROOM:
            return False
        return _outcome(data, "kick", ok="success", benign=NO_SUCH_FEED)

    async def allow(self, room: int, tokens: list[str], *, secret: str) -> None:
        """Add ``tokens`` to the room's ``allowed`` list."""
        data = await self.videoroom(
            {
                "request": "allowed",
                "room": room,
                "secret": secret,
                "action": "add",
                "allowed": tokens,
            }
        )
        _outcome(data, "allowed", ok="success", benign=-1)

    async def exists(self, room: int) -> bool:
        data = await self.videoroom({"request": "exists", "room": room})
        return bool(data.get("exists"))

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
            self._keepalive = None
        ids, self._ids = self._ids, None
        if ids is not None:
            # The session goes with its handle; a Janus that is down will time it out.
            with contextlib.suppress(JanusUnavailableError):
                await self.post(f"/{ids[0]}", {"janus": "destroy"})
        if self._http is not None:
            await self._http.close()
            self._http = None


def _data_id(answer: dict[str, Any], what: str) -> int:
    data = answer.get("data")
    if answer.get("janus") == "success" and isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    error = answer.get("error")
    if not isinstance(error, dict):
        error = {}
    raise JanusRejectedError(what, error.get("code"), str(error.get("reason") or answer)[:200])


def _outcome(data: dict[str, Any], what: str, *, ok: str, benign: int) -> bool:
    if data.get("videoroom") == ok:
        return True
    if data.get("error_code") == benign:
        return False
    raise JanusRejectedError(what, data.get("error_code"), str(data.get("error")))


# --------------------------------------------------------------------- events


@dataclass(frozen=True)
class JanusEvent:
    """One event of Janus's event handler (the fields this project reads)."""

    type: int
    timestamp: int
    session_id: int | None
    handle_id: int | None
    #: handle events: ``name``; webrtc: ``connection``; plugin: ``data.event``
    name: str | None
    #: plugin events: ``data.room`` and ``data.id``
    room: int | None = None
    feed_id: int | None = None

    def key(self) -> tuple[Any, ...]:
        """What makes two deliveries the same event."""
        return (self.type, self.timestamp, self.session_id, self.handle_id, self.name, self.feed_id)


class EventError(ValueError):
    """A body that is not Janus events."""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_events(body: Any) -> list[JanusEvent]:
    """The events of one event-handler post (one object, or an array of them
    when grouping is on); raises :class:`EventError` when it is not that.
    Events this project does not read are dropped."""
    items = body if isinstance(body, list) else [body]
    events: list[JanusEvent] = []
    for item in items:
        if not isinstance(item, dict):
            raise EventError("every event must be a JSON object")
        kind, timestamp = _int(item.get("type")), _int(item.get("timestamp"))
        if kind is None or timestamp is None:
            raise EventError("an event needs an integer type and timestamp")
        inner = item.get("event")
        if not isinstance(inner, dict):
            continue
        name: Any = None
        room = feed = None
        if kind == EVENT_HANDLE:
            name = inner.get("name")
        elif kind == EVENT_WEBRTC:
            name = inner.get("connection")
        elif kind == EVENT_PLUGIN and inner.get("plugin") == PLUGIN:
            data = inner.get("data")
            if isinstance(data, dict):
                name, room, feed = data.get("event"), _int(data.get("room")), _int(data.get("id"))
        if not isinstance(name, str):
            continue
        events.append(
            JanusEvent(
                kind,
                timestamp,
                _int(item.get("session_id")),
                _int(item.get("handle_id")),
                name,
                room,
                feed,
            )
        )
    return events


# -------------------------------------------------------------------- backend


@dataclass
class _Handle:
    """What the events said about one Janus handle."""

    id: int
    session_id: int | None = None
    call_id: int | None = None
    #: set when it joined the call's room as a publisher with a user's feed id
    user_id: str | None = None
    up: bool = False
    gone: bool = False
    #: dropped by us (a rejoin, a leave): its going reports nothing
    retired: bool = False


@dataclass
class _Room:
    call_id: int
    users: set[str]
    ready: bool = False
    setup_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: the user's current publisher handle
    publishers: dict[str, int] = field(default_factory=dict)


class JanusMedia(MediaBackend):
    """One VideoRoom room per call; see the module's docstring."""

    name = "janus"
    terminates_peers = False

    def __init__(
        self,
        url: str,
        admin_key: str,
        *,
        events: MediaEvents,
        public_url: str = "",
        join_budget_s: float = 4.0,
        client: JanusClient | None = None,
    ) -> None:
        self.client = client or JanusClient(url)
        self.public_url = public_url or url
        self.admin_key = admin_key
        self.keys = RoomKeys(admin_key)
        self.join_budget_s = join_budget_s
        self._events = events
        self._rooms: dict[int, _Room] = {}
        self._handles: OrderedDict[int, _Handle] = OrderedDict()
        #: Janus session -> (call, user), learnt from a publisher's ``joined``
        self._sessions: dict[int, tuple[int, str]] = {}
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._event_lock = asyncio.Lock()
        self._tasks = BackgroundTasks(logger, "janus.task_failed")

    # -------------------------------------------------------- the contract

    async def open_call(self, call_id: int, user_ids: tuple[str, str]) -> None:
        """Start creating the room; a failure only defers it to the first join."""
        room = self._room(call_id)
        room.users.update(user_ids)
        self._tasks.spawn(self._prepare(room), f"janus-open-{call_id}")

    async def join_extras(self, call_id: int, user_id: str) -> dict[str, Any]:
        room = self._room(call_id)
        room.users.add(user_id)  # signaling checked that the user is a participant
        try:
            async with asyncio.timeout(self.join_budget_s), room.setup_lock:
                # Create it unless it is there (a Janus restart loses rooms).
                await self._create(room, user_id)
                # A rejoin (a reload, another device) takes the place of the
                # publisher still in the room: its feed id must be free.
                await self._retire(room, user_id)
        except TimeoutError:
            raise JanusUnavailableError(
                f"Janus did not answer within {self.join_budget_s} s; join again"
            ) from None
        return {
            "janus": {
                "url": self.public_url,
                "room": room_for(call_id),
                "token": self.keys.token(call_id, user_id),
                "feed_id": self.keys.feed_id(call_id, user_id),
            }
        }

    async def user_left(self, call_id: int, user_id: str) -> None:
        """Kick the user's publisher: nothing of theirs stays in the room."""
        room = self._rooms.get(call_id)
        if room is not None:
            self._tasks.spawn(self._leave(room, user_id), f"janus-kick-{call_id}")

    async def _leave(self, room: _Room, user_id: str) -> None:
        async with room.setup_lock:
            await self._retire(room, user_id)

    async def close_call(self, call_id: int) -> None:
        """Destroy the room: Janus hangs up every participant's media at once."""
        room = self._rooms.pop(call_id, None)
        for handle_id in room.publishers.values() if room else ():
            handle = self._handles.get(handle_id)
            if handle is not None:
                handle.retired = True
        self._tasks.spawn(self._destroy(call_id), f"janus-destroy-{call_id}")

    async def close(self) -> None:
        await self._tasks.stop(grace_s=_CLOSE_GRACE_S)
        self._rooms.clear()
        await self.client.close()

    # -------------------------------------------------------------- events

    def submit_events(self, events: list[JanusEvent]) -> None:
        """Handle ``events`` in the background (the webhook answers at once)."""
        if events:
            self._tasks.spawn(self.handle_events(events), "janus-events")

    async def handle_events(self, events: Iterable[JanusEvent]) -> None:
        async with self._event_lock:
            for event in events:
                if self._first_delivery(event.key()):
                    await self._apply(event)

    def _first_delivery(self, key: tuple[Any, ...]) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    async def _apply(self, event: JanusEvent) -> None:
        if event.handle_id is None:
            return
        handle = self._handle(event.handle_id, event.session_id)
        if event.type == EVENT_PLUGIN and event.name == "joined":
            await self._joined(handle, event)
        elif event.type == EVENT_WEBRTC and event.name == "webrtcup":
            if not handle.gone:
                handle.up = True
                await self._maybe_connected(handle)
        elif (
            (event.type == EVENT_WEBRTC and event.name == "hangup")
            or (event.type == EVENT_HANDLE and event.name == "detached")
            or (event.type == EVENT_PLUGIN and event.name in _PUBLISHER_GONE)
        ):
            await self._gone(handle, event.name or "")

    async def _joined(self, handle: _Handle, event: JanusEvent) -> None:
        room = self._rooms.get(event.room) if event.room is not None else None
        if room is None or event.feed_id is None:
            self._log_ignored(event, "not the room of a running call")
            return
        user_id = next(
            (u for u in room.users if self.keys.feed_id(room.call_id, u) == event.feed_id), None
        )
        if user_id is None:
            # A token holder under a made-up id: not one of the two users.
            self._log_ignored(event, "a feed id of no participant")
            self._tasks.spawn(self._kick(room, event.feed_id, "foreign"), "janus-kick-foreign")
            return
        handle.call_id, handle.user_id = room.call_id, user_id
        if handle.session_id is not None:
            self._sessions[handle.session_id] = (room.call_id, user_id)
        if handle.gone or handle.retired:
            self._log_ignored(event, "that publisher is already gone")
            return
        previous = room.publishers.get(user_id)
        if previous is not None and previous != handle.id and previous in self._handles:
            self._handles[previous].retired = True
        room.publishers[user_id] = handle.id
        logger.info(
            "Janus: user %s joined the room of call %s",
            user_id,
            room.call_id,
            extra={"event": "janus.joined", "call_id": room.call_id, "user_id": user_id},
        )
        await self._maybe_connected(handle)

    async def _maybe_connected(self, handle: _Handle) -> None:
        """The user counts as connected once their publisher is in the room and
        a peer connection of their Janus session is up (each one reports again)."""
        owner = self._sessions.get(handle.session_id) if handle.session_id is not None else None
        if owner is None:
            return
        call_id, user_id = owner
        room = self._rooms.get(call_id)
        publisher = self._handles.get(room.publishers.get(user_id, 0)) if room else None
        if publisher is None or publisher.gone or publisher.retired:
            return
        if not any(
            h.up and not h.gone and h.session_id == handle.session_id for h in (handle, publisher)
        ):
            return
        logger.info(
            "Janus: user %s's media is up in call %s",
            user_id,
            call_id,
            extra={"event": "janus.media_connected", "call_id": call_id, "user_id": user_id},
        )
        await self._events.media_connected(call_id, user_id)

    async def _gone(self, handle: _Handle, why: str) -> None:
        if handle.gone:
            return
        handle.gone = True
        room = self._rooms.get(handle.call_id) if handle.call_id is not None else None
        user_id = handle.user_id
        if (
            room is None
            or user_id is None
            or handle.retired
            or room.publishers.get(user_id) != handle.id
        ):
            return
        logger.info(
            "Janus: user %s's media left call %s (%s)",
            user_id,
            room.call_id,
            why,
            extra={
                "event": "janus.media_left",
                "call_id": room.call_id,
                "user_id": user_id,
                "why": why,
            },
        )
        await self._events.media_left(room.call_id, user_id)

    def _log_ignored(self, event: JanusEvent, why: str) -> None:
        logger.info(
            "Janus %s ignored: %s",
            event.name,
            why,
            extra={
                "event": "janus.event_ignored",
                "janus_event": event.name,
                "room": event.room,
                "why": why,
            },
        )

    # ------------------------------------------------------------- helpers

    def _room(self, call_id: int) -> _Room:
        room = self._rooms.get(call_id)
        if room is None:
            room = self._rooms[call_id] = _Room(call_id, set())
        return room

    def _handle(self, handle_id: int, session_id: int | None) -> _Handle:
        handle = self._handles.get(handle_id)
        if handle is None:
            handle = self._handles[handle_id] = _Handle(handle_id, session_id)
            if len(self._handles) > _LOOSE_HANDLES_MAX:
                self._forget_loose()
        elif handle.session_id is None:
            handle.session_id = session_id
        return handle

    def _forget_loose(self) -> None:
        """Drop the oldest handles that belong to no running call."""
        for handle_id in list(self._handles)[: len(self._handles) // 4]:
            handle = self._handles[handle_id]
            if handle.call_id not in self._rooms:
                del self._handles[handle_id]

    async def _prepare(self, room: _Room) -> None:
        try:
            async with room.setup_lock:
                await self._create(room)
        except JanusError as exc:
            logger.warning(
                "Janus room of call %s not created yet: %s",
                room.call_id,
                exc,
                extra={"event": "janus.room_deferred", "call_id": room.call_id},
            )

    async def _create(self, room: _Room, joiner: str | None = None) -> None:
        """Create the call's room unless it exists (setup lock held). Asked
        again on each join: one local round trip, and a Janus that restarted
        (and lost its rooms) gets the room back. A room made before a restart
        of this server may lack the joiner's token: it is added."""
        secret = self.keys.secret(room.call_id)
        created = await self.client.create_room(
            room_for(room.call_id),
            secret=secret,
            admin_key=self.admin_key,
            allowed=[self.keys.token(room.call_id, u) for u in room.users],
            description=f"call {room.call_id}",
        )
        if not created and joiner is not None:
            await self.client.allow(
                room_for(room.call_id), [self.keys.token(room.call_id, joiner)], secret=secret
            )
        if created or not room.ready:
            logger.info(
                "Janus room of call %s ready",
                room.call_id,
                extra={"event": "janus.room_ready", "call_id": room.call_id, "created": created},
            )
        room.ready = True

    async def _retire(self, room: _Room, user_id: str) -> None:
        """Kick the user's publisher out of the room (setup lock held); its
        going reports nothing. By feed id, whatever the events said so far:
        one that joined a moment ago may not have been reported yet."""
        handle_id = room.publishers.pop(user_id, None)
        handle = self._handles.get(handle_id) if handle_id is not None else None
        if handle is not None:
            handle.retired = True
        await self._kick(room, self.keys.feed_id(room.call_id, user_id), "replaced or left")

    async def _kick(self, room: _Room, feed_id: int, why: str) -> None:
        try:
            kicked = await self.client.kick(
                room_for(room.call_id), feed_id, secret=self.keys.secret(room.call_id)
            )
        except JanusError as exc:
            logger.warning(
                "Janus: could not kick %s from call %s: %s",
                feed_id,
                room.call_id,
                exc,
                extra={"event": "janus.kick_failed", "call_id": room.call_id},
            )
            return
        logger.info(
            "Janus: feed %s kicked from call %s (%s)",
            feed_id,
            room.call_id,
            why,
            extra={"event": "janus.kicked", "call_id": room.call_id, "why": why, "was_in": kicked},
        )

    async def _destroy(self, call_id: int) -> None:
        try:
            existed = await self.client.destroy_room(
                room_for(call_id), secret=self.keys.secret(call_id)
            )
        except JanusError as exc:
            logger.error(
                "Janus room of call %s not destroyed: %s",
                call_id,
                exc,
                extra={"event": "janus.destroy_failed", "call_id": call_id},
            )
            return
        for handle_id in [h.id for h in self._handles.values() if h.call_id == call_id]:
            handle = self._handles.pop(handle_id)
            if handle.session_id is not None:
                self._sessions.pop(handle.session_id, None)
        logger.info(
            "Janus room of call %s destroyed",
            call_id,
            extra={"event": "janus.room_destroyed", "call_id": call_id, "existed": existed},
        )
