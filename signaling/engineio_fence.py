"""The one module that touches python-engineio's private names.

python-engineio has no public way to choose how its aiohttp driver makes a
websocket or reads a long-polling upload, so this module swaps two entries of
the server's driver table (``AsyncServer._async``) for subclasses of its own:

- ``websocket``: the same driver with ``compress`` chosen by us (aiohttp's
  ``WebSocketResponse`` negotiates permessage-deflate by default: two zlib
  contexts, about 124 KB, per idle socket), and which ends a connection on a
  text frame that is not an Engine.IO packet (the library would log a
  traceback or let an exception escape into aiohttp);
- ``translate_request``: the same environ, but a long-polling upload that the
  edge has already read and checked (``POLLING_BODY``) is handed over from
  memory.

``close_now`` closes one connection without waiting for its client (the
library's ``disconnect`` waits until a long-polling client fetches the close
packet, forever if it never does); ``drop_queued`` forgets what waits for a
connection whose transport is gone (a closed socket is kept until its next ping
is due, up to 25 s later, and its queue with it); ``release_poll`` answers the pending
long-polling request of a connection its client closed (the library leaves it
waiting for the next ping, 25 s, which is how long python-socketio's polling
client then takes to disconnect).

A socket that starts on a websocket (every client of ours) is served by
``serve_websocket``, the library's websocket loop without a task and a
timeout per packet; an upgrade from long polling keeps the library's loop.

The server's packet queues (what ``create_queue`` makes for each socket) count the characters of the
packets waiting in them (:class:`CountingQueue`), and call ``on_overflow``
when a queue holds more than ``send_budget``: the edge then closes that slow
consumer with ``abort_now``, which also drops its websocket's TCP connection
(a writer blocked on a client that does not read would otherwise keep the
connection, and what it holds, open).

Memory per idle socket (docs/performance.md, "Memory per idle socket"): the
queue is lighter than ``asyncio.Queue`` (about 3 KB less), and the wait for
a socket's next ping is a slot in ``signaling.ticks.Ticks`` instead of a task (what the
server's ``start_background_task`` does for ``AsyncSocket._send_ping``; then
``send_ping`` sends it).

Every name used here is pinned by ``tests/unit/test_fences.py``: an upgrade of
python-engineio that changes them fails those tests, not production.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import engineio
from aiohttp import web
from engineio import async_socket, exceptions, packet
from engineio.async_drivers import aiohttp as aiohttp_driver

from signaling.ticks import Ticks

#: A long-polling upload read and checked by the edge, for ``translate_request``.
POLLING_BODY = web.RequestKey("giftcall_polling_body", bytes)

_TYPES = "0123456"  # Engine.IO packet types: open, close, ping, pong, message, upgrade, noop
_MESSAGE = "4"
#: The longest non-message packet a client sends is ``2probe``.
_MAX_CONTROL_PACKET = 16


def is_engineio_text(text: str) -> bool:
    """Whether a text packet from a client is one python-engineio decodes
    safely: a known type, a message carrying a Socket.IO packet (which starts
    with its own type digit), or a short control packet. Anything else makes
    the library raise (an unknown type, an empty packet) or parse JSON it does
    not need (a message or a control packet with a JSON body, nested deep)."""
    if not text or text[0] not in _TYPES:
        return False
    if text[0] == _MESSAGE:
        return len(text) > 1 and text[1] in _TYPES
    return len(text) <= _MAX_CONTROL_PACKET


#: The TCP transport of each Engine.IO socket that runs over a websocket.
_TRANSPORTS: weakref.WeakKeyDictionary[Any, asyncio.Transport] = weakref.WeakKeyDictionary()


class CountingQueue:
    """An Engine.IO socket's packet queue that knows how many characters of
    packet data wait in it; over ``budget`` it calls ``on_overflow`` once.

    The part of ``asyncio.Queue`` (unbounded) that python-engineio and this
    module use, with its semantics (``put``, ``get`` with its cancellation,
    ``*_nowait``, ``task_done``, ``join``), in a fraction of its memory: an
    ``asyncio.Queue`` holds four deques of 760 bytes each (items, getters,
    putters, its Event's waiters) whether or not anything waits. An idle
    socket's queue is empty with one getter (its writer), so here the items'
    deque exists only while packets wait, the getters are a list, there are
    no putters (``put`` never waits) and the Event is made by ``join``.
    """

    __slots__ = (
        "_finished",
        "_getters",
        "_items",
        "_on_overflow",
        "_unfinished",
        "budget",
        "overflowed",
        "queued",
    )

    def __init__(self, budget: int, on_overflow: Callable[[], None]) -> None:
        self.budget = budget
        self.queued = 0
        self.overflowed = False
        self._on_overflow = on_overflow
        self._items: deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] = []
        self._unfinished = 0
        self._finished: asyncio.Event | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return False

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._unfinished += 1
        if self._finished is not None:
            self._finished.clear()
        self.queued += _size(item)
        if self.budget and self.queued > self.budget and not self.overflowed:
            self.overflowed = True
            self._on_overflow()
        self._wake_getter()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None
        self.queued -= _size(item)
        return item

    async def get(self) -> Any:
        # asyncio.Queue.get: a getter woken and then cancelled passes its turn on.
        while not self._items:
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if self._items and not getter.cancelled():
                    self._wake_getter()
                raise
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._finished is not None:
            self._finished.set()

    async def join(self) -> None:
        if self._unfinished > 0:
            if self._finished is None:
                self._finished = asyncio.Event()
            await self._finished.wait()

    def _wake_getter(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break


def _size(item: Any) -> int:
    data = getattr(item, "data", None)
    return len(data) if isinstance(data, str | bytes) else 1


class _WebSocket(aiohttp_driver.WebSocket):
    """The aiohttp driver's websocket without permessage-deflate."""

    compress = False

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        # The library's __call__ with compress= added (pinned by the fence tests).
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=self.compress
        )
        await self._sock.prepare(request)
        # The handler is the Engine.IO socket's bound _websocket_handler.
        owner = getattr(self.handler, "__self__", None)
        if isinstance(owner, async_socket.AsyncSocket) and request.transport is not None:
            _TRANSPORTS[owner] = request.transport
        self.environ = environ
        if isinstance(owner, async_socket.AsyncSocket) and not owner.connected:
            await serve_websocket(owner, self)  # a websocket from the first request
        else:
            await self.handler(self)  # an upgrade from long polling: the library's path
        return self._sock

    async def wait(self) -> str | bytes:
        data: str | bytes = await super().wait()
        if isinstance(data, str) and not is_engineio_text(data):
            # The library's websocket loop ends the connection on OSError.
            raise OSError("not an Engine.IO packet")
        return data


async def serve_websocket(socket: async_socket.AsyncSocket, ws: _WebSocket) -> None:
    """python-engineio's websocket loop (``AsyncSocket._websocket_handler``)
    for a socket that starts on a websocket, without its cost per packet.

    The library wraps every read in a new task and ``asyncio.wait_for``, and
    every write in ``wait_for`` on the queue (about a third of the relay's CPU
    outside the handlers). Neither timeout is needed: the server's ping
    service closes a socket whose client stops answering pings, which ends
    the writer, whose ``ws.close()`` ends the read. The rest is the
    library's: the same flags, packets, errors and close.
    """
    socket.connected = True
    socket.upgraded = True
    server = socket.server
    writer = asyncio.ensure_future(_write_queue(socket, ws))
    while True:
        try:
            data = await ws.wait()
        except Exception:  # the library's bare except: a closed or broken transport
            break
        if data is None or len(data) > server.max_http_buffer_size:
            break
        try:
            await socket.receive(packet.Packet(encoded_packet=data))
        except exceptions.UnknownPacketError:
            pass
        except exceptions.SocketIsClosedError:
            break
        except Exception:
            server.logger.exception("Unknown receive error")
    await socket.queue.put(None)  # unlock the writer so it can exit
    await writer
    await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)


async def _write_queue(socket: async_socket.AsyncSocket, ws: _WebSocket) -> None:
    """Send what waits in the socket's queue, in order, until its end (None)."""
    queue = socket.queue
    # The driver's send asks asyncio.iscoroutinefunction of aiohttp's method
    # on every packet; the socket's own methods are coroutines.
    sock = ws._sock
    try:
        while True:
            # get() returns at once, without suspending, while packets wait.
            pkt = await queue.get()
            queue.task_done()
            if pkt is None:
                break
            data = pkt.encode()
            if isinstance(data, bytes):
                await sock.send_bytes(data)
            else:
                await sock.send_str(data)
    except Exception:  # the library's writer: any send error ends it
        pass
    await ws.close()


class _DeflateWebSocket(_WebSocket):
    """The same, negotiating permessage-deflate when the client offers it."""

    compress = True


class _Body:
    """``wsgi.input`` for an upload that was already read."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self, length: int = -1) -> bytes:
        body, self._body = self._body, b""
        return body


def _translate_request(request: web.Request) -> dict[str, Any]:
    environ: dict[str, Any] = aiohttp_driver.translate_request(request)
    body = request.get(POLLING_BODY)
    if body is not None:
        environ["wsgi.input"] = _Body(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def install(
    eio: engineio.AsyncServer,
    *,
    deflate: bool,
    send_budget: int = 0,
    on_overflow: Callable[[], None] = lambda: None,
) -> None:
    """Give ``eio`` (aiohttp mode) the drivers above, and packet queues that
    call ``on_overflow`` past ``send_budget`` characters (0: never)."""
    drivers: dict[str, Any] = eio._async
    if (
        drivers.get("websocket") is not aiohttp_driver.WebSocket
        or drivers.get("translate_request") is not aiohttp_driver.translate_request
        or type(eio).create_queue is not engineio.AsyncServer.create_queue
        or type(eio).start_background_task is not engineio.AsyncServer.start_background_task
    ):
        raise RuntimeError(
            "python-engineio's aiohttp driver table changed: see signaling/engineio_fence.py"
        )
    # A copy: the driver module's table is shared by every server of the process.
    eio._async = {
        **drivers,
        "websocket": _DeflateWebSocket if deflate else _WebSocket,
        "translate_request": _translate_request,
    }

    # Each socket's queue comes from the server's create_queue() (BaseSocket.__init__).
    def create_queue(*args: Any, **kwargs: Any) -> asyncio.Queue[Any] | CountingQueue:
        if args or kwargs:  # not a socket's queue
            return asyncio.Queue(*args, **kwargs)
        return CountingQueue(send_budget, on_overflow)

    eio.create_queue = create_queue
    library_start = eio.start_background_task
    pings: Ticks[weakref.ref[async_socket.AsyncSocket]] = Ticks(send_ping_if_alive)

    # Each socket waits for its next ping in a task that sleeps ping_interval
    # (AsyncSocket.schedule_ping): about 2.5 KB per idle socket, where a slot
    # in Ticks is a dict entry. The slot holds the socket weakly: one that
    # closes is freed at once, not when its next ping would have been due
    # (with 100 sockets closing a second, 2,500 dead sockets held at the
    # 25 s ping interval, each full collection walking them).
    def start_background_task(target: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(target, "__func__", None) is _LIBRARY_SEND_PING and not (args or kwargs):
            pings.add(weakref.ref(target.__self__), eio.ping_interval)
            return None  # the library drops what schedule_ping starts
        return library_start(target, *args, **kwargs)

    eio.start_background_task = start_background_task


_LIBRARY_SEND_PING = async_socket.AsyncSocket._send_ping


def send_ping_if_alive(socket: weakref.ref[async_socket.AsyncSocket]) -> None:
    """``send_ping`` to a socket that still exists."""
    alive = socket()
    if alive is not None:
        send_ping(alive)


def send_ping(socket: async_socket.AsyncSocket) -> None:
    """``AsyncSocket._send_ping`` once its wait is over (at most
    ``signaling.ticks.TICK_S`` late; the client waits pingInterval +
    pingTimeout for it), without a task: its ``send`` checks the ping
    timeout (passed: ``last_ping`` was just set) and puts the packet in the
    queue, which never waits (it is unbounded)."""
    if socket.closing or socket.closed:
        return
    socket.last_ping = time.time()
    socket.queue.put_nowait(packet.Packet(packet.PING))
    socket.server.logger.info("%s: Sending packet %s data %s", socket.sid, "PING", None)


def queued(eio: engineio.AsyncServer, sid: str) -> int:
    """Characters of packet data waiting to be sent to ``sid``."""
    socket = eio.sockets.get(sid)
    queue = None if socket is None else socket.queue
    return queue.queued if isinstance(queue, CountingQueue) else 0


def overflowed(eio: engineio.AsyncServer) -> list[str]:
    """The connections whose queue went over its budget."""
    return [
        sid
        for sid, socket in list(eio.sockets.items())
        if isinstance(socket.queue, CountingQueue) and socket.queue.overflowed
    ]


async def abort_now(eio: engineio.AsyncServer, sid: str) -> bool:
    """``close_now``, and drop the TCP connection of a websocket: its writer
    may be blocked on a client that reads nothing; what was queued for it is
    dropped too. False if already closed."""
    socket = eio.sockets.get(sid)
    closed = await close_now(eio, sid)
    transport = None if socket is None else _TRANSPORTS.pop(socket, None)
    if transport is not None:
        transport.abort()
    if socket is not None:
        _drop_queued(socket)
    return closed


def drop_queued(eio: engineio.AsyncServer, sid: str) -> None:
    """Forget the packets waiting for ``sid``, whose transport is gone."""
    socket = eio.sockets.get(sid)
    if socket is not None:
        _drop_queued(socket)


def _drop_queued(socket: async_socket.AsyncSocket) -> None:
    # A closed socket stays referenced until its next ping is due (up to
    # ping_interval, 25 s), and with it everything in its queue: up to
    # send_budget for a slow consumer. Nothing in it will be sent any more.
    queue = socket.queue
    while not queue.empty():
        queue.get_nowait()
        queue.task_done()
    queue.put_nowait(None)  # the end of the queue, for a writer still waiting on it


async def close_now(eio: engineio.AsyncServer, sid: str) -> bool:
    """Close Engine.IO connection ``sid`` without waiting for its client:
    the close packet is queued, then the end of the queue, so a websocket's
    writer sends it and closes the transport, and a pending long-polling
    request returns it. False if it was already closed or closing."""
    socket = eio.sockets.get(sid)
    if socket is None or socket.closed or socket.closing:
        return False
    await socket.close(wait=False, abort=False, reason=eio.reason.SERVER_DISCONNECT)
    await socket.queue.put(None)
    eio.sockets.pop(sid, None)
    return True


def release_silent(eio: engineio.AsyncServer, sid: str) -> None:
    """End the queue of ``sid``, which the ping service is closing because
    its client stopped answering: the library queues no close packet then
    (``send`` refuses a socket past its ping timeout), so the end of the queue
    is what stops its writer, a websocket's reader (through ``ws.close()``)
    or a pending long-polling request."""
    socket = eio.sockets.get(sid)
    if socket is not None:
        socket.queue.put_nowait(None)


def release_poll(eio: engineio.AsyncServer, sid: str) -> None:
    """End the pending long-polling request (if any) of ``sid``, which its
    client just closed: the end of the queue makes it return at once."""
    socket = eio.sockets.get(sid)
    if socket is not None and not socket.upgraded:
        socket.queue.put_nowait(None)


async def close_all(eio: engineio.AsyncServer) -> int:
    """``close_now`` every connection (the server's shut-down); returns how
    many there were."""
    sids = list(eio.sockets)
    if sids:
        await asyncio.gather(*(close_now(eio, sid) for sid in sids), return_exceptions=True)
    return len(sids)
