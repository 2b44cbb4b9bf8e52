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

from signaling import engineio_fence, socketio_fence
from signaling.engineio_fence import install, is_engineio_text
from signaling.socketio_fence import FencedServer


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
        ('2/call,17["signal",{', ("/call", 17)),
        ("2/call?x=1,3[", ("/call", 3)),
        ("25[", ("/", 5)),
        ("51-/chat,9[", ("/chat", 9)),
        ("2[", (None, None)),
        ("3/call,4[", (None, None)),
        ("2/call," + "1" * 16, (None, None)),
    ],
)
def test_the_header_of_an_undecodable_event(
    text: str, expected: tuple[str | None, int | None]
) -> None:
    assert socketio_fence.event_header(text) == expected
