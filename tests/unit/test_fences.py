"""Guards of the two fence modules, the only users of library private names.

``signaling/engineio_fence.py`` (python-engineio) and
``signaling/socketio_fence.py`` (python-socketio) rely on names and behaviour
the libraries do not promise to keep. Each test here pins one of them: after an
upgrade that changes it, the test fails and says what to re-read, instead of a
server that silently stops refusing binary packets or starts negotiating
permessage-deflate again. The behaviour itself is tested against real servers
(tests/functional/test_deflate.py, test_hostile.py, test_fences.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import engineio
import pytest
import socketio
from aiohttp import web
from engineio import async_server as eio_server
from engineio import async_socket as eio_socket
from engineio.async_drivers import aiohttp as aiohttp_driver
from engineio.packet import Packet as EngineIOPacket
from redis import asyncio as redis_asyncio

from signaling import engineio_fence, socketio_fence
from signaling.engineio_fence import install, is_engineio_text
from signaling.socketio_fence import FencedServer, PooledRedisManager
from signaling.ticks import TICK_S


def source(function: Callable[..., Any]) -> str:
    return textwrap.dedent(inspect.getsource(function))


def flat(function: Callable[..., Any]) -> str:
    """The source with every run of whitespace made one space."""
    return " ".join(source(function).split())


def fingerprint(function: Callable[..., Any]) -> str:
    return hashlib.sha256(source(function).encode()).hexdigest()[:16]


# ------------------------------------------------------------ python-engineio


def test_the_aiohttp_driver_table_is_what_install_replaces() -> None:
    table = aiohttp_driver._async
    assert table["websocket"] is aiohttp_driver.WebSocket
    assert table["translate_request"] is aiohttp_driver.translate_request


def test_install_replaces_two_drivers_of_one_server_only() -> None:
    eio = engineio.AsyncServer(async_mode="aiohttp")
    other = engineio.AsyncServer(async_mode="aiohttp")
    install(eio, deflate=False)
    assert eio._async["websocket"] is engineio_fence._WebSocket
    assert eio._async["translate_request"] is engineio_fence._translate_request
    assert other._async["websocket"] is aiohttp_driver.WebSocket  # the shared table is intact
    deflating = engineio.AsyncServer(async_mode="aiohttp")
    install(deflating, deflate=True)
    assert deflating._async["websocket"] is engineio_fence._DeflateWebSocket
    with pytest.raises(RuntimeError, match="driver table changed"):
        install(eio, deflate=False)  # twice: the table is no longer the library's


def test_the_library_looks_its_drivers_up_in_the_table() -> None:
    assert "self.server._async['websocket'](" in flat(eio_socket.AsyncSocket._upgrade_websocket)
    assert "self._async['translate_request']" in flat(eio_server.AsyncServer.handle_request)


def test_the_websocket_driver_call_is_the_one_the_fence_copies() -> None:
    """``_WebSocket.__call__`` is the library's plus ``compress=``: if the
    library's changes, copy the change into the fence and update this pin."""
    assert fingerprint(aiohttp_driver.WebSocket.__call__) == "ab81905a4baf2354", source(
        aiohttp_driver.WebSocket.__call__
    )
    for method in ("send", "wait", "close"):
        assert "self._sock" in flat(getattr(aiohttp_driver.WebSocket, method)), method


def test_the_direct_websocket_loop_is_the_librarys_minus_its_timeouts() -> None:
    """``serve_websocket`` copies ``AsyncSocket._websocket_handler`` for a
    socket that was not connected yet (flags, receive, errors, close) and
    leaves out the per-packet task and ``wait_for``. If the library's loop
    changes, copy the change into the fence and update this pin."""
    assert fingerprint(eio_socket.AsyncSocket._websocket_handler) == "3548a4051e6f43df", source(
        eio_socket.AsyncSocket._websocket_handler
    )
    # The writer sends as the driver's send does, minus its per-packet
    # iscoroutinefunction (aiohttp's send_str and send_bytes are coroutines).
    driver_send = flat(aiohttp_driver.WebSocket.send)
    assert "f = self._sock.send_bytes" in driver_send and "f = self._sock.send_str" in driver_send
    assert inspect.iscoroutinefunction(web.WebSocketResponse.send_str)
    assert inspect.iscoroutinefunction(web.WebSocketResponse.send_bytes)
    fenced = flat(engineio_fence.serve_websocket)
    for step in (
        "socket.connected = True",
        "socket.upgraded = True",
        "await socket.receive(packet.Packet(encoded_packet=data))",
        "await socket.queue.put(None)",
        "await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)",
    ):
        assert step in fenced, step
    # The ping service, not the reader, ends a connection whose client went
    # quiet: it closes the socket with this reason, on which the edge calls
    # release_silent (the library queues no close packet for it).
    assert "await s.check_ping_timeout()" in flat(eio_server.AsyncServer._service_task)
    assert "reason=self.server.reason.PING_TIMEOUT" in flat(
        eio_socket.AsyncSocket.check_ping_timeout
    )


def test_an_os_error_from_wait_ends_the_websocket_loop_quietly() -> None:
    """The fence's ``wait`` raises OSError on a text frame that is not Engine.IO."""
    handler = flat(eio_socket.AsyncSocket._websocket_handler)
    assert "data = await ws.wait()" in handler
    assert "except OSError:" in handler  # during an upgrade
    assert "except: break" in handler  # in the main loop


def test_a_polling_upload_is_read_from_wsgi_input() -> None:
    post = flat(eio_socket.AsyncSocket.handle_post_request)
    assert "int(environ.get('CONTENT_LENGTH', '0'))" in post
    assert "environ['wsgi.input'].read(length)" in post


def test_close_now_relies_on_close_and_the_queue_sentinel() -> None:
    params = inspect.signature(eio_socket.AsyncSocket.close).parameters
    assert list(params) == ["self", "wait", "abort", "reason"]
    poll = flat(eio_socket.AsyncSocket.poll)
    assert "if packets == [None]:" in poll and "if pkt is None:" in poll
    assert isinstance(engineio.AsyncServer(async_mode="aiohttp").sockets, dict)


def test_a_client_close_leaves_a_pending_poll_waiting_unless_released() -> None:
    """``release_poll``: the library closes a socket its client closed with
    ``abort=True``, which queues nothing for a pending long-polling request."""
    assert (
        "elif pkt.packet_type == packet.CLOSE: await self.close(wait=False, abort=True, "
        "reason=self.server.reason.CLIENT_DISCONNECT)"
    ) in flat(eio_socket.AsyncSocket.receive)
    assert "if not abort:" in flat(eio_socket.AsyncSocket.close)


def test_each_socket_queue_comes_from_create_queue() -> None:
    """The send budget (F3): install swaps the server's ``create_queue`` for
    one that makes counting queues, which every socket gets its queue from."""
    from engineio import base_socket

    assert "self.queue = self.server.create_queue()" in flat(base_socket.BaseSocket.__init__)
    assert "return asyncio.Queue(*args, **kwargs)" in flat(eio_server.AsyncServer.create_queue)
    eio = engineio.AsyncServer(async_mode="aiohttp")
    install(eio, deflate=False, send_budget=10)
    assert isinstance(eio.create_queue(), engineio_fence.CountingQueue)
    assert type(eio.create_queue(5)) is asyncio.Queue
    with pytest.raises(RuntimeError, match="driver table changed"):
        install(eio, deflate=False)  # twice: create_queue is no longer the library's


def test_the_websocket_writer_takes_packets_through_the_queue() -> None:
    """A socket's packets wait in its queue until its writer (websocket) or a
    poll (long polling) takes them: what the budget counts."""
    assert "await self.queue.put(pkt)" in flat(eio_socket.AsyncSocket.send)
    handler = flat(eio_socket.AsyncSocket._websocket_handler)
    assert "packets = await self.poll()" in handler
    assert "await ws.send(pkt.encode())" in handler


def test_the_websocket_driver_is_handed_the_sockets_bound_handler() -> None:
    """``abort_now`` finds a websocket's TCP transport through the driver's
    ``handler``, the Engine.IO socket's bound ``_websocket_handler``."""
    assert "self.handler = handler" in flat(aiohttp_driver.WebSocket.__init__)
    assert "self._websocket_handler, self.server)" in flat(
        eio_socket.AsyncSocket._upgrade_websocket
    )


async def test_a_counting_queue_counts_and_calls_once_past_its_budget() -> None:
    calls: list[int] = []
    queue = engineio_fence.CountingQueue(10, lambda: calls.append(1))
    queue.put_nowait(EngineIOPacket(4, data="abcdef"))
    assert (queue.queued, calls) == (6, [])
    queue.put_nowait(EngineIOPacket(4, data="ghijkl"))
    assert (queue.queued, calls, queue.overflowed) == (12, [1], True)
    queue.put_nowait(EngineIOPacket(4, data="x"))
    assert calls == [1]
    queue.get_nowait()
    assert queue.queued == 7
    queue.put_nowait(None)
    assert queue.queued == 8


def test_the_library_uses_only_the_queue_methods_the_counting_queue_has() -> None:
    """``CountingQueue`` is not an ``asyncio.Queue``: it has the methods the
    library calls on a socket's queue, with their semantics (tested below)."""
    import re

    from engineio import base_socket

    used: set[str] = set()
    for module in (eio_socket, base_socket):
        used |= set(re.findall(r"queue\.(\w+)\(", inspect.getsource(module)))
    assert used <= {"get", "get_nowait", "put", "put_nowait", "task_done", "join"}, used
    for name in used:
        assert callable(getattr(engineio_fence.CountingQueue, name))


async def test_a_counting_queue_behaves_as_an_unbounded_asyncio_queue() -> None:
    queue = engineio_fence.CountingQueue(0, lambda: None)
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    await queue.put(EngineIOPacket(4, data="a"))
    queue.put_nowait(None)
    assert (await getter).data == "a"
    assert await queue.get() is None and queue.empty()
    # join waits for a task_done per item
    joined = asyncio.ensure_future(queue.join())
    await asyncio.sleep(0)
    assert not joined.done()
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError, match="too many times"):
        queue.task_done()
    # a getter woken and then cancelled passes the item on to the next one
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("x")
    first.cancel()
    assert await asyncio.wait_for(second, 1) == "x"
    # a get under a timeout (AsyncSocket.poll) leaves nothing behind
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    queue.put_nowait("y")
    assert queue.get_nowait() == "y" and queue.queued == 0


def test_a_sockets_ping_wait_is_the_task_install_replaces() -> None:
    """``send_ping`` is ``AsyncSocket._send_ping`` after its sleep, and
    ``send`` with a fresh ``last_ping`` only queues the packet. If either
    changes, re-read ``send_ping`` and update these pins."""
    assert "self.server.start_background_task(self._send_ping)" in flat(
        eio_socket.AsyncSocket.schedule_ping
    )
    assert fingerprint(eio_socket.AsyncSocket._send_ping) == "af7d301862db9af7", source(
        eio_socket.AsyncSocket._send_ping
    )
    send = flat(eio_socket.AsyncSocket.send)
    assert "if not await self.check_ping_timeout(): return else: await self.queue.put(pkt)" in send
    check = flat(eio_socket.AsyncSocket.check_ping_timeout)
    assert "if last_ping and time.time() - last_ping > self.server.ping_timeout:" in check


async def test_install_turns_only_the_ping_wait_into_a_slot_of_a_tick() -> None:
    eio = engineio.AsyncServer(async_mode="aiohttp", ping_interval=0.01)
    install(eio, deflate=False)
    sockets = [eio_socket.AsyncSocket(eio, f"s{n}") for n in range(3)]
    sockets[2].closed = True
    for socket in sockets:
        socket.last_ping = 1.0
        socket.schedule_ping()
        assert socket.last_ping is None
    await asyncio.sleep(0.01 + 2 * TICK_S)
    for socket in sockets[:2]:
        assert socket.last_ping is not None
        assert socket.queue.get_nowait().packet_type == EngineIOPacket(2).packet_type  # PING
    assert sockets[2].queue.empty()  # no ping for a closed socket

    async def other() -> str:
        return "done"

    task = eio.start_background_task(other)
    assert isinstance(task, asyncio.Task) and await task == "done"


async def test_a_sockets_ping_slot_does_not_keep_it_alive() -> None:
    """A socket that closes is freed at once, not when its ping would have
    been due: the slot in the ticks holds it weakly."""
    import gc
    import weakref

    eio = engineio.AsyncServer(async_mode="aiohttp", ping_interval=30)
    install(eio, deflate=False)
    socket = eio_socket.AsyncSocket(eio, "gone")
    socket.schedule_ping()  # a slot 30 s away
    alive = weakref.ref(socket)
    del socket
    gc.collect()
    assert alive() is None


def test_text_the_fence_lets_through_decodes_without_raising() -> None:
    accepted = [
        "2",
        "3",
        "2probe",
        "3probe",
        "5",
        "6",
        "1",
        '40{"token":"t"}',
        "42[]",
        "4" + "6" * 5,
    ]
    for text in accepted:
        assert is_engineio_text(text), text
        EngineIOPacket(encoded_packet=text)
    for text in ["", "9", "x", "4", "4x", "4{}", "b4AAA", "2" + "[" * 20, "d=42"]:
        assert not is_engineio_text(text), text


# ------------------------------------------------------------ python-socketio


def test_the_message_dispatch_is_the_one_the_fence_replaces() -> None:
    """``FencedServer._handle_eio_message`` replaces the library's: if the
    library's changes (a new packet type, another dispatch), bring the change
    into the fence and update this pin."""
    original = socketio.AsyncServer._handle_eio_message
    assert fingerprint(original) == "38a7a6c5de2dd6e9", source(original)


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("_handle_eio_connect", ["self", "eio_sid", "environ"]),
        ("_handle_eio_message", ["self", "eio_sid", "data"]),
        ("_handle_eio_disconnect", ["self", "eio_sid", "reason"]),
        ("_handle_event", ["self", "eio_sid", "namespace", "id", "data"]),
        ("_handle_ack", ["self", "eio_sid", "namespace", "id", "data"]),
        ("_handle_connect", ["self", "eio_sid", "namespace", "data"]),
        ("_handle_disconnect", ["self", "eio_sid", "namespace", "reason"]),
        ("_send_packet", ["self", "eio_sid", "pkt"]),
    ],
)
def test_the_private_methods_the_fence_uses_keep_their_signature(
    name: str, parameters: list[str]
) -> None:
    method = getattr(socketio.AsyncServer, name)
    assert inspect.iscoroutinefunction(method), name
    assert list(inspect.signature(method).parameters) == parameters


def test_engineio_events_reach_the_fenced_handlers() -> None:
    """python-socketio registers its handlers by attribute look-up at start,
    so the subclass's overrides are the ones Engine.IO calls."""
    server = FencedServer(async_mode="aiohttp")
    assert server.eio.handlers["message"].__func__ is FencedServer._handle_eio_message
    assert server.eio.handlers["connect"].__func__ is FencedServer._handle_eio_connect
    assert server.eio.handlers["disconnect"].__func__ is FencedServer._handle_eio_disconnect


def test_binary_packets_are_buffered_by_the_library_unless_fenced() -> None:
    """Why the fence exists: the library keeps a binary packet's header until
    its attachments arrive, however many it announces."""
    assert "self._binary_packet[eio_sid] = pkt" in flat(socketio.AsyncServer._handle_eio_message)
    header = socketio.packet.Packet(encoded_packet='51000000-["x",{"_placeholder":true,"num":0}]')
    assert header.packet_type == socketio.packet.BINARY_EVENT
    assert header.attachment_count == 1_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('2/call,17["signal",{', ("/call", "17")),
        ("2/call?x=1,3[", ("/call", "3")),
        ("25[", ("/", "5")),
        ("51-/chat,9[", ("/chat", "9")),
        ("5123456789012-/chat,9[", ("/chat", "9")),
        ("2/call," + "1" * 101 + "[", ("/call", "1" * 101)),
        ("2[", (None, None)),
        ("3/call,4[", (None, None)),
    ],
)
def test_the_header_of_an_undecodable_event(
    text: str, expected: tuple[str | None, str | None]
) -> None:
    assert socketio_fence.event_header(text) == expected


def test_the_library_keeps_each_connections_environ_until_it_closes() -> None:
    """``_handle_eio_message`` drops a packet of a connection the library no
    longer has in ``environ``: it is filled on connect, emptied on disconnect,
    and read by ``_handle_connect``."""
    assert "self.environ[eio_sid] = environ" in flat(socketio.AsyncServer._handle_eio_connect)
    assert "del self.environ[eio_sid]" in flat(socketio.AsyncServer._handle_eio_disconnect)
    assert "self.environ[eio_sid]" in flat(socketio.AsyncServer._handle_connect)


async def test_a_packet_handled_after_its_connection_closed_is_dropped() -> None:
    """A CONNECT read just before the server closed its connection (an auth
    timeout) used to raise KeyError in the library and log a traceback."""
    server = FencedServer(async_mode="aiohttp")
    for text in ('0/call,{"token":"x"}', '2/call,5["join",{}]', "1/call,", "3/call,1[]"):
        await server._handle_eio_message("closed-meanwhile", text)


def test_the_redis_manager_connects_in_the_method_the_fence_overrides() -> None:
    """``PooledRedisManager._redis_connect`` replaces the library's for plain
    Redis URLs and hands every other scheme back to it: if the library's
    changes (another attribute, a new scheme), bring the change into the
    fence and update this pin."""
    original = socketio.AsyncRedisManager._redis_connect
    assert fingerprint(original) == "982157b8eed980ba", source(original)


def test_the_pooled_redis_manager_builds_plain_urls_with_the_servers_client() -> None:
    built: list[tuple[str, dict[str, Any]]] = []

    def client_for(url: str, options: dict[str, Any]) -> Any:
        built.append((url, options))
        return redis_asyncio.Redis.from_url(url, **options)

    manager = PooledRedisManager(
        "redis://127.0.0.1:9/0",
        channel="x",
        client_for=client_for,
        redis_options={"socket_timeout": 1.0},
    )
    manager._redis_connect()
    assert built == [("redis://127.0.0.1:9/0", {"socket_timeout": 1.0})]
    assert (manager.connected, manager.pubsub is not None) == (True, True)

    sentinel = PooledRedisManager(
        "redis+sentinel://127.0.0.1:9/0/main", channel="x", client_for=client_for
    )
    sentinel._redis_connect()  # the library's own: a Sentinel, connected lazily
    assert len(built) == 1
    assert type(sentinel.redis).__name__ == "Redis"
    assert "Sentinel" in type(sentinel.redis.connection_pool).__name__


# ------------------------------------------------------ the rooms' index


class _Ids:
    """The ``server.eio.generate_id`` a manager asks for a new sid."""

    def __init__(self) -> None:
        self.count = 0

    def generate_id(self) -> str:
        self.count += 1
        return f"s{self.count}"


class _Server:
    def __init__(self) -> None:
        self.eio = _Ids()
        self.packet_class = socketio.packet.Packet


def _manager(kind: type[socketio.AsyncManager]) -> socketio.AsyncManager:
    manager = kind()
    manager.set_server(_Server())
    return manager


def test_the_disconnect_the_index_replaces_is_the_librarys() -> None:
    """``IndexedRooms.basic_disconnect`` does what the library's does after
    its scan of the namespace's rooms (callbacks, pending lists): if the
    library's changes, bring the change into the fence and update this pin."""
    original = socketio.base_manager.BaseManager.basic_disconnect
    assert fingerprint(original) == "badf3313db9ad2e1", source(original)


async def test_indexed_rooms_end_where_the_librarys_rooms_end() -> None:
    """The same connects, room changes and disconnects, through the
    manager's public methods, on the library's manager and on the indexed
    one: the same rooms, callbacks and pending lists after every step, and
    the same answer to ``get_rooms``. Fails if a new version changes rooms
    other than through ``basic_enter_room`` and ``basic_leave_room``."""
    import random

    plain = _manager(socketio.AsyncManager)
    indexed = _manager(socketio_fence.IndexedAsyncManager)
    pick = random.Random(7)
    namespaces = ["/call", "/chat"]
    live: list[tuple[str, str]] = []  # (namespace, sid), the same on both
    for step in range(3000):
        roll = pick.random()
        if roll < 0.25 or not live:
            namespace = pick.choice(namespaces)
            eio_sid = f"e{step}"
            sids = {await m.connect(eio_sid, namespace) for m in (plain, indexed)}
            assert len(sids) == 1
            sid = sids.pop()
            live.append((namespace, sid))
        else:
            namespace, sid = pick.choice(live)
            room = f"r{pick.randrange(40)}"
            for m in (plain, indexed):
                if roll < 0.55:
                    await m.enter_room(sid, namespace, room)
                elif roll < 0.7:
                    await m.leave_room(sid, namespace, room)
                elif roll < 0.73:
                    await m.close_room(room, namespace)
                elif roll < 0.78:
                    m._generate_ack_id(sid, lambda *args: None)
                elif roll < 0.8:
                    m.pre_disconnect(sid, namespace)
                else:
                    await m.disconnect(sid, namespace)
            if roll >= 0.8:
                live.remove((namespace, sid))
        assert plain.rooms == indexed.rooms
        assert plain.callbacks.keys() == indexed.callbacks.keys()
        assert plain.pending_connect == indexed.pending_connect
        assert plain.pending_disconnect == indexed.pending_disconnect
        if (namespace, sid) in live:  # the connection this step touched
            assert sorted(plain.get_rooms(sid, namespace)) == sorted(
                indexed.get_rooms(sid, namespace)
            )
    assert live  # the walk kept some connections to the end
    for namespace, sid in live:
        # (in any order: the library's follows when each room was made)
        assert sorted(plain.get_rooms(sid, namespace)) == sorted(indexed.get_rooms(sid, namespace))


class _NoScan(dict[Any, Any]):
    """A namespace's rooms that refuse to be scanned."""

    def copy(self) -> dict[Any, Any]:
        raise AssertionError("a disconnect scanned every room of the namespace")

    def items(self) -> Any:
        raise AssertionError("get_rooms scanned every room of the namespace")


async def test_a_disconnect_leaves_its_own_rooms_without_scanning_the_others() -> None:
    for kind, scans in ((socketio.AsyncManager, True), (socketio_fence.IndexedAsyncManager, False)):
        manager = _manager(kind)
        sids = [await manager.connect(f"e{i}", "/call") for i in range(3)]
        await manager.enter_room(sids[0], "/call", "user:alice")
        manager.rooms["/call"] = _NoScan(manager.rooms["/call"])
        try:
            assert manager.get_rooms(sids[0], "/call") == [sids[0], "user:alice"]
            await manager.disconnect(sids[0], "/call")
        except AssertionError:
            assert scans  # the library's own manager does scan: the reason for the index
            continue
        assert not scans
        assert set(manager.rooms["/call"]) == {None, sids[1], sids[2]}


def test_both_managers_the_server_uses_index_their_rooms() -> None:
    assert issubclass(PooledRedisManager, socketio_fence.IndexedRooms)
    from signaling.app import create_sio
    from signaling.config import Settings

    sio = create_sio(Settings(jwt_secret="x" * 32))
    assert isinstance(sio.manager, socketio_fence.IndexedAsyncManager)
