"""Hostile clients against a real server: what a client that ignores the
Socket.IO and HTTP protocols can make the server do.

Each test reproduces one finding (F1, F2, F6, F7, F9, F15) or one kind of garbage. In
every test of this file no ERROR log line may appear: a client cannot make the
server log an error (``no_error_lines``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import socketio

from signaling.webhooks.openvidu import PATH as WEBHOOK_PATH
from signaling.webhooks.openvidu import SECRET_HEADER
from tests.functional.conftest import (
    Lab,
    StdJsonPacket,
    assert_error,
    assert_rate_limited,
    refused_connect,
)
from tests.functional.raw_socket import WEBSOCKET_PATH, RawSocket, ack_of, connect_error
from tests.haproxy import run_haproxy
from tests.support import Client, RunningServer

PAYLOAD_LIMIT = 1_000_000
#: How long the tests' servers let a connection stay outside every namespace.
AUTH_TIMEOUT_S = 0.5


@pytest.fixture(autouse=True)
def no_error_lines(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    lines = [
        f"{r.name}: {r.getMessage()}"
        for phase in ("setup", "call")
        for r in caplog.get_records(phase)
        if r.levelno >= logging.ERROR
    ]
    assert lines == [], "a client made the server log an error"


# ----------------------------------------------------------------- helpers


async def raw_http(
    server: RunningServer, head: str, body: bytes = b"", read_s: float = 5
) -> tuple[bytes, bool]:
    """Send ``head`` (request line and headers, no blank line) and ``body``
    as they are; returns what came back and whether the server then closed."""
    reader, writer = await asyncio.open_connection(server.settings.host, server.settings.port)
    try:
        writer.write(head.encode("latin-1") + b"\r\n\r\n" + body)
        await writer.drain()
        received = b""
        deadline = time.monotonic() + read_s
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk
        return received, False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def status_and_json(response: bytes) -> tuple[int, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


async def polling_session(server: RunningServer) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/socket.io/?EIO=4&transport=polling") as response,
    ):
        text = await response.text()
    assert response.status == 200 and text.startswith("0{"), text
    return str(json.loads(text[1:])["sid"])


def polling_url(sid: str) -> str:
    return f"/socket.io/?EIO=4&transport=polling&sid={sid}"


async def polling_get(server: RunningServer, sid: str, timeout: float = 5) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            server.url + polling_url(sid), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response,
    ):
        return response.status, await response.text()


@pytest.fixture
async def hostile(lab: Lab) -> RunningServer:
    """A server with a short ``auth_timeout_s``."""
    return await lab.start(auth_timeout_s=AUTH_TIMEOUT_S)


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as opened:
        yield opened


# ------------------------------------------- F1: namespaces and binary data


async def test_the_default_namespace_refuses_a_connection_without_a_token(
    server: RunningServer, stack: contextlib.AsyncExitStack
) -> None:
    raw = await RawSocket.open(stack, server)
    refusal = connect_error(await raw.connect("/"), "/")
    assert refusal["message"] == "unauthorized", refusal
    assert_error({"ok": False, "error": refusal["data"]}, "unauthorized")

    client = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
    errors: list[Any] = []
    client.on("connect_error", errors.append, namespace="/")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, namespaces=["/"], transports=["websocket"], wait_timeout=5)
    await client.disconnect()
    assert len(errors) == 1 and errors[0]["message"] == "unauthorized", errors
    assert errors[0]["data"]["code"] == "unauthorized", errors


@pytest.mark.parametrize("namespace", ["/", "/nope", "/admin", "/call/x"])
async def test_any_other_namespace_is_refused_with_or_without_a_token(
    server: RunningServer, stack: contextlib.AsyncExitStack, namespace: str
) -> None:
    raw = await RawSocket.open(stack, server)
    refusal = connect_error(await raw.connect(namespace, {"token": "not a jwt"}), namespace)
    assert refusal["message"] == "unauthorized" and refusal["data"]["code"] == "unauthorized"
    refusal = connect_error(await raw.connect(namespace, {"token": server.token("al")}), namespace)
    assert refusal["message"] == "not_found" and refusal["data"]["code"] == "not_found", refusal
    # The same connection may still join a namespace that exists.
    assert (await raw.connect("/call", {"token": server.token("al")}) or "").startswith("40/call,")
    await raw.still_open()


async def test_binary_attachments_are_never_buffered(
    server: RunningServer, stack: contextlib.AsyncExitStack
) -> None:
    """F1: a binary-event header announcing a million attachments, then
    megabyte frames. The server used to keep every frame."""
    token = {"token": server.token("al")}
    for namespace, auth in (("/", None), ("/call", token)):
        raw = await RawSocket.open(stack, server)
        await raw.connect(namespace, auth)  # refused on "/", accepted on /call
        prefix = "" if namespace == "/" else namespace + ","
        placeholder = json.dumps(["x", {"_placeholder": True, "num": 0}])
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await raw.send(f"451000000-{prefix}" + placeholder)
            frame = b"\0" * (PAYLOAD_LIMIT - 1000)
            for _ in range(24):
                await raw.send(frame)
            # A round trip after the frames: every one of them was handled.
            if namespace == "/":
                assert (await raw.connect("/call", token) or "").startswith("40/call,")
            await raw.still_open()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 6 * PAYLOAD_LIMIT, f"{grown} bytes kept after 24 MB of attachments"


async def test_a_binary_event_gets_an_invalid_ack(
    server: RunningServer, stack: contextlib.AsyncExitStack
) -> None:
    raw = await RawSocket.open(stack, server)
    await raw.connect("/call", {"token": server.token("al")})
    await raw.send('451-/call,7["signal",{"_placeholder":true,"num":0}]')
    assert_error(ack_of(await raw.next(), "/call", 7), "invalid")
    await raw.send(b"\x01\x02")  # its attachment: dropped
    await raw.still_open()

    # What python-socketio sends for bytes in a payload.
    client = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
    await client.connect(
        server.url,
        namespaces=["/call"],
        auth={"token": server.token("bo")},
        transports=["websocket"],
        wait_timeout=5,
    )
    try:
        ack = await client.call("signal", {"call_id": 1, "sdp": b"v=0"}, namespace="/call")
        assert_error(ack, "invalid")
        assert "binary" in ack["error"]["message"]
        assert_error(await client.call("join", {"call_id": 10**9}, namespace="/call"), "not_found")
    finally:
        await client.disconnect()


# ------------------------------------------ F2: oversized long-polling upload


@pytest.mark.parametrize("expect", [True, False])
async def test_an_oversized_polling_upload_gets_413_at_once(
    server: RunningServer, expect: bool
) -> None:
    sid = await polling_session(server)
    head = (
        f"POST {polling_url(sid)} HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {2 * PAYLOAD_LIMIT}"
    )
    if expect:  # curl's way: wait for "100 Continue" before the body
        head += "\r\nExpect: 100-continue"
    started = time.monotonic()
    response, closed = await raw_http(server, head, b"" if expect else b"4" * 65536)
    assert time.monotonic() - started < 2, "no prompt answer"
    assert b"100 Continue" not in response
    status, body = status_and_json(response)
    assert status == 413
    assert_error(body, "invalid")
    assert closed, "the connection stayed open"
    status, text = await polling_get(server, sid)  # the session is closed too
    assert status == 400, text


async def test_an_oversized_chunked_polling_upload_gets_413(server: RunningServer) -> None:
    sid = await polling_session(server)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"4" * 65536

    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + polling_url(sid), data=chunks()) as response,
    ):
        assert response.status == 413
        assert_error(await response.json(), "invalid")


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe42",
        b"9",
        b"4",
        b'4{"a":1}',
        b"4" + b"[" * 5000,
        b"2" + b"[" * 5000,
        b"bBAUG",
        b"d=42",
        "\x1e".join(["42[]"] * 17).encode(),
    ],
)
async def test_a_polling_upload_that_is_not_engineio_gets_400(
    server: RunningServer, body: bytes
) -> None:
    sid = await polling_session(server)
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + polling_url(sid), data=body) as response,
    ):
        assert response.status == 400
        assert_error(await response.json(), "invalid")
    assert (await server.request("GET", "/api/health"))[0] == 200


async def test_long_polling_clients_still_work(server: RunningServer) -> None:
    call_id = int((await server.schedule("alice", "bob"))["id"])
    clients = []
    for user, transports in (("alice", ["polling"]), ("bob", ["polling", "websocket"])):
        client = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
        signals: list[Any] = []
        client.on("signal", signals.append, namespace="/call")
        await client.connect(
            server.url,
            namespaces=["/call"],
            auth={"token": server.token(user)},
            transports=transports,
            wait_timeout=5,
        )
        clients.append((client, signals))
    (alice, alice_signals), (bob, _) = clients
    try:
        assert (await alice.call("join", {"call_id": call_id}, namespace="/call"))["ok"]
        assert (await bob.call("join", {"call_id": call_id}, namespace="/call"))["ok"]
        offer = {"call_id": call_id, "type": "offer", "sdp": "v=0 " + "s" * 60_000}
        assert await bob.call("signal", offer, namespace="/call") == {"ok": True}
        for _ in range(100):
            if alice_signals:
                break
            await asyncio.sleep(0.05)
        assert alice_signals == [{**offer, "from": "bob"}]
        big = {"call_id": call_id, "type": "offer", "sdp": "x" * 900_000}
        assert_error(await alice.call("signal", big, namespace="/call", timeout=10), "invalid")
    finally:
        for client, _ in clients:
            await client.disconnect()


# -------------------------------------- F6: connections that never authenticate


async def test_a_websocket_outside_every_namespace_is_closed(
    hostile: RunningServer, stack: contextlib.AsyncExitStack
) -> None:
    quiet = await RawSocket.open(stack, hostile)  # says nothing at all
    refused = await RawSocket.open(stack, hostile)
    connect_error(await refused.connect("/"), "/")
    started = time.monotonic()
    assert await quiet.closed_within(AUTH_TIMEOUT_S + 2)
    assert await refused.closed_within(1)
    assert time.monotonic() - started >= AUTH_TIMEOUT_S - 0.2


async def test_a_polling_session_outside_every_namespace_is_closed(
    hostile: RunningServer,
) -> None:
    sid = await polling_session(hostile)
    status, text = await polling_get(hostile, sid, timeout=AUTH_TIMEOUT_S + 3)
    assert (status, text) == (200, "1")  # Engine.IO's close packet
    status, _ = await polling_get(hostile, sid)
    assert status == 400


async def test_an_authenticated_connection_stays_open(
    hostile: RunningServer, stack: contextlib.AsyncExitStack
) -> None:
    raw = await RawSocket.open(stack, hostile)
    assert (await raw.connect("/chat", {"token": hostile.token("al")}) or "").startswith("40/chat")
    assert not await raw.closed_within(AUTH_TIMEOUT_S * 3)
    await raw.still_open("/chat")


async def test_leaving_the_last_namespace_starts_the_clock_again(
    hostile: RunningServer, stack: contextlib.AsyncExitStack
) -> None:
    raw = await RawSocket.open(stack, hostile)
    await raw.connect("/call", {"token": hostile.token("al")})
    await raw.connect("/chat", {"token": hostile.token("al")})
    await raw.send("41/call,")
    assert not await raw.closed_within(AUTH_TIMEOUT_S * 2)  # still in /chat
    await raw.send("41/chat,")
    assert await raw.closed_within(AUTH_TIMEOUT_S + 2)


async def test_the_default_limit_is_ten_seconds(server: RunningServer) -> None:
    assert server.settings.auth_timeout_s == 10.0


POLLING_HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


def session_from(source: str) -> aiohttp.ClientSession:
    """A client session whose connections come from ``source`` (127.x.y.z: any
    loopback address reaches a server on 127.0.0.1)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))


async def hold_websocket(
    stack: contextlib.AsyncExitStack,
    url: str,
    forwarded_for: str | None = None,
    source: str = "127.0.0.1",
) -> aiohttp.ClientWebSocketResponse:
    """A websocket to ``url`` that never shows a token, open until the test ends."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    session = await stack.enter_async_context(session_from(source))
    ws = await stack.enter_async_context(session.ws_connect(url + WEBSOCKET_PATH, headers=headers))
    assert (await ws.receive_str(timeout=5)).startswith("0{")
    return ws


async def handshake_answer(
    url: str, forwarded_for: str | None = None, source: str = "127.0.0.1"
) -> tuple[int, Any, str]:
    """A new long-polling connection's status, body and ``Retry-After``."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with (
        session_from(source) as session,
        session.get(url + POLLING_HANDSHAKE, headers=headers) as response,
    ):
        body = await response.json() if response.status == 429 else await response.text()
        return response.status, body, response.headers.get("Retry-After", "")


async def eventually_admitted(url: str, forwarded_for: str | None = None) -> None:
    """A new connection is admitted within 2 s (the server sees a close late)."""
    deadline = time.monotonic() + 2
    while (status := (await handshake_answer(url, forwarded_for))[0]) == 429:
        assert time.monotonic() < deadline, "still refused"
        await asyncio.sleep(0.05)
    assert status == 200


async def test_one_address_holds_few_connections_without_a_token(
    lab: Lab, stack: contextlib.AsyncExitStack
) -> None:
    server = await lab.start(pending_per_address=3)
    held = [await hold_websocket(stack, server.url) for _ in range(2)]
    await handshake_answer(server.url)  # the third: a polling session, left open
    # The fourth is refused before any Engine.IO session, in the contract's shape.
    status, body, retry_after = await handshake_answer(server.url)
    assert (status, retry_after) == (429, "10")
    assert assert_rate_limited(body) == 10
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await hold_websocket(stack, server.url)
    assert refused.value.status == 429
    # A connection that shows its token no longer counts: room for one more.
    await held[0].send_str("40/chat," + json.dumps({"token": server.token("al")}))
    assert (await held[0].receive_str(timeout=5)).startswith("40/chat,")
    held.append(await hold_websocket(stack, server.url))
    assert (await handshake_answer(server.url))[0] == 429
    # Leaving its last namespace, it counts again (4 now); closed, one no longer does.
    await held[0].send_str("41/chat,")
    await held[1].close()
    await asyncio.sleep(0.2)
    assert (await handshake_answer(server.url))[0] == 429
    await held[2].close()
    await eventually_admitted(server.url)
    assert (await handshake_answer(server.url))[0] == 429


async def test_many_users_at_one_address_are_not_refused_for_being_many(
    lab: Lab, stack: contextlib.AsyncExitStack
) -> None:
    """Clients that show their token at once are outside a namespace for a
    round trip: far more of them than the bound connect from one address."""
    server = await lab.start(pending_per_address=2)
    for n in range(8):
        raw = await RawSocket.open(stack, server)
        answer = await raw.connect("/chat", {"token": server.token(f"user{n}")})
        assert (answer or "").startswith("40/chat,"), answer


async def test_forwarded_for_counts_only_from_a_trusted_proxy(lab: Lab) -> None:
    untrusted = await lab.start(pending_per_address=1)
    trusted = await lab.start(
        pending_per_address=1, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),)
    )
    async with contextlib.AsyncExitStack() as stack:
        await hold_websocket(stack, untrusted.url, forwarded_for="203.0.113.1")
        # Not from a proxy: the header is the client's own invention.
        assert (await handshake_answer(untrusted.url, "203.0.113.2"))[0] == 429
    async with contextlib.AsyncExitStack() as stack:
        await hold_websocket(stack, trusted.url, forwarded_for="203.0.113.1")
        assert (await handshake_answer(trusted.url, "203.0.113.1"))[0] == 429
        # The nearest address that is not a trusted proxy is the client's.
        assert (await handshake_answer(trusted.url, "203.0.113.1, 203.0.113.2"))[0] == 200
        assert (await handshake_answer(trusted.url, "203.0.113.2, 203.0.113.1"))[0] == 429
        assert (await handshake_answer(trusted.url, "203.0.113.1, 127.0.0.1"))[0] == 429


async def test_behind_haproxy_a_forged_forwarded_for_does_not_escape_the_bound(
    lab: Lab, tmp_path: Path
) -> None:
    """Through a real HAProxy (``option forwardfor``, as docker/haproxy.cfg),
    which reaches the server from 127.0.0.1, the one trusted proxy; clients
    come from other loopback addresses. A client's own X-Forwarded-For is
    left of the address HAProxy saw, so it changes nothing."""
    server = await lab.start(
        pending_per_address=2, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),)
    )
    client, other = "127.0.0.3", "127.0.0.4"
    with run_haproxy({"one": server.settings.port}, tmp_path / "haproxy") as proxy:
        await proxy.all_up()
        async with contextlib.AsyncExitStack() as stack:
            await hold_websocket(stack, proxy.url, "203.0.113.1", source=client)
            await hold_websocket(stack, proxy.url, "203.0.113.2", source=client)
            assert (await handshake_answer(proxy.url, "203.0.113.3", source=client))[0] == 429
            assert (await handshake_answer(proxy.url, source=client))[0] == 429
            # Another client behind the same proxy has a bound of its own.
            assert (await handshake_answer(proxy.url, source=other))[0] == 200


# ----------------------------------------------------- F7: undecodable credentials


async def test_a_bearer_token_that_is_not_utf8_is_unauthorized(server: RunningServer) -> None:
    for token in ("ab\xffcd", "\xe9" * 40, server.token("al")[:-1] + "\xff"):
        head = f"GET /api/calls HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}"
        response, _ = await raw_http(server, head + "\r\nConnection: close")
        status, body = status_and_json(response)
        assert status == 401, response
        assert_error(body, "unauthorized")


@pytest.mark.parametrize("token", ["\ud800", "a.\udfff.b", "\u00e9" * 10, "x" * 5000])
async def test_a_socketio_token_that_cannot_be_encoded_is_unauthorized(
    server: RunningServer, token: str
) -> None:
    _, received = await refused_connect(server, {"token": token})
    assert len(received) == 1 and received[0]["message"] == "unauthorized", received
    assert received[0]["data"]["code"] == "unauthorized", received


async def test_a_webhook_secret_that_is_not_ascii_is_unauthorized(lab: Lab) -> None:
    server = await lab.start(
        media="openvidu",
        openvidu_url="http://127.0.0.1:9",
        openvidu_secret="ov",
        openvidu_webhook_secret="hook-secret",
    )
    for secret in ("s\xe9cret", "hook-secret\xff", "\xff" * 11):
        head = (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: test\r\n{SECRET_HEADER}: {secret}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close"
        )
        response, _ = await raw_http(server, head, b"{}")
        status, body = status_and_json(response)
        assert status == 401, response
        assert_error(body, "unauthorized")


# ------------------------------------------------------------------ garbage

#: Frames after an authenticated connect to /call, and what each must get:
#: "ack" (an invalid ack with id 5), "closed" (the server ends the
#: connection), "refused" (connect_error unauthorized), "nothing" (ignored;
#: the connection still works).
GARBAGE: dict[str, tuple[str | bytes, str]] = {
    "empty text frame": ("", "closed"),
    "unknown Engine.IO type": ("9", "closed"),
    "message without a packet": ("4", "closed"),
    "message that is JSON": ('4{"a":1}', "closed"),
    "deeply nested control packet": ("2" + "[" * 5000, "closed"),
    "base64 binary over websocket": ("b4AAAA", "closed"),
    "Socket.IO packet that is not JSON": ("42/call,{", "closed"),
    "event that is not JSON, with an id": ('42/call,5["join",{', "ack"),
    "event that is an object": ('42/call,5{"a":1}', "ack"),
    "event that is an empty list": ("42/call,5[]", "ack"),
    "event name that is an object": ('42/call,5[{"a":1},{}]', "ack"),
    "event name that is a list": ("42/call,5[[1],{}]", "ack"),
    "event nested too deep": ("42/call,5" + "[" * 3000 + "]" * 3000, "ack"),
    "reserved event name": ('42/call,5["disconnect",{}]', "ack"),
    "reserved event name without an id": ('42/call,["connect",{}]', "nothing"),
    "event without a name, no id": ("42/call,{}", "closed"),
    "connect_error from a client": ('44/call,{"message":"x"}', "closed"),
    "unknown Socket.IO type": ("49/call,[]", "closed"),
    "attachment count too long": ('45123456789012-/call,5["x"]', "ack"),
    "binary ack": ('461-/call,5[{"_placeholder":true,"num":0}]', "nothing"),
    "stray binary frame": (b"\x00\xff", "nothing"),
    "empty binary frame": (b"", "nothing"),
    "ack for nothing": ("43/call,77[1]", "nothing"),
    "disconnect of another namespace": ("41/chat,", "nothing"),
    "event to a namespace not joined": ('42/chat,5["send",{}]', "nothing"),
    "connect with a string": ('40/chat,"token"', "refused"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
async def test_garbage_gets_an_ack_or_closes_only_its_connection(
    server: RunningServer, stack: contextlib.AsyncExitStack, name: str
) -> None:
    frame, outcome = GARBAGE[name]
    raw = await RawSocket.open(stack, server)
    await raw.connect("/call", {"token": server.token("al")})
    await raw.send(frame)
    if outcome == "ack":
        assert_error(ack_of(await raw.next(), "/call", 5), "invalid")
        await raw.still_open()
    elif outcome == "closed":
        assert await raw.closed_within(2), "the connection stayed open"
    elif outcome == "refused":
        assert connect_error(await raw.next(), "/chat")["message"] == "unauthorized"
        await raw.still_open()
    else:
        await raw.still_open()
    other = await RawSocket.open(stack, server)
    await other.connect("/call", {"token": server.token("bo")})
    await other.still_open()


#: F9: malformed events that carry an ack id, as ``(body, ack id)`` after
#: ``42/call,``. Each used to get no ack and log an ERROR.
MALFORMED_WITH_ACK_ID: dict[str, tuple[str, str]] = {
    "truncated JSON": ('["join",{"call_id":', "5"),
    "an object as the event name": ('[{"a":1},{}]', "6"),
    "an empty list": ("[]", "7"),
    "no data": ("", "8"),
    "nesting deeper than 1,024": ('["x",' + "[" * 1100 + "]" * 1100 + "]", "9"),
    "nesting deeper than 1,024, truncated": ('["x",' + "{" * 1100, "10"),
    "a 101-digit ack id": ('["join",{"call_id":1}]', "1" * 101),
    "a 101-digit ack id and truncated JSON": ('["join",', "9" * 101),
    "a 5,000-digit ack id": ('["x"]', "3" * 5000),
}


@pytest.mark.parametrize("name", list(MALFORMED_WITH_ACK_ID))
async def test_a_malformed_event_with_an_ack_id_gets_the_error_ack(
    server: RunningServer, stack: contextlib.AsyncExitStack, name: str
) -> None:
    body, ack_id = MALFORMED_WITH_ACK_ID[name]
    raw = await RawSocket.open(stack, server)
    await raw.connect("/call", {"token": server.token("al")})
    await raw.send(f"42/call,{ack_id}{body}")
    assert_error(ack_of(await raw.next(), "/call", ack_id), "invalid")
    await raw.still_open()


@pytest.mark.parametrize(
    ("header", "attachments"),
    [
        ('452-/call,11["signal",{"_placeholder":true,"num":5}]', 1),  # num out of range
        ('451-/call,12["signal",{"call_id":1}]', 3),  # no placeholder, extra frames
        ('453-/call,13["signal",{"_placeholder":true,"num":0}]', 0),  # frames never sent
        ('450-/call,14["signal",{"_placeholder":true,"num":0}]', 2),  # count of zero
    ],
)
async def test_a_binary_event_whose_attachments_do_not_match_leaves_no_stuck_connection(
    server: RunningServer, stack: contextlib.AsyncExitStack, header: str, attachments: int
) -> None:
    """F9: binary is refused at the door with an error ack, its attachments
    (however many) are dropped, and the connection goes on answering."""
    raw = await RawSocket.open(stack, server)
    await raw.connect("/call", {"token": server.token("al")})
    await raw.send(header)
    ack_id = int(header.split(",", 1)[1].split("[", 1)[0])
    assert_error(ack_of(await raw.next(), "/call", ack_id), "invalid")
    for n in range(attachments):
        await raw.send(bytes([n]) * 100)
    await raw.still_open()
    assert (await raw.call("/call", 15, "join", {"call_id": 10**9}))["error"]["code"] == "not_found"


async def test_a_connection_lives_no_longer_than_its_token(server: RunningServer) -> None:
    """F15: at the token's ``exp`` the server disconnects the connection from
    its namespace (its call sees it leave); a fresh token connects again."""
    call = await server.schedule("alice", "bob", 1)
    short = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 2}, server.settings.jwt_secret, "HS256"
    )
    alice = await Client(server, "alice").connect(short)
    bob = await Client(server, "bob").connect()
    try:
        assert (await alice.emit("join", {"call_id": call["id"]}))["ok"] is True
        assert (await bob.emit("join", {"call_id": call["id"]}))["ok"] is True
        left = await bob.wait_for("partner_left", timeout=5)
        assert left[0]["call_id"] == call["id"], left
        for _ in range(50):
            if not alice.sio.namespaces:
                break
            await asyncio.sleep(0.05)
        assert not alice.sio.namespaces, "the expired connection is still in /call"
        again = await Client(server, "alice").connect()
        assert (await again.emit("join", {"call_id": call["id"]}))["ok"] is True
        await again.close()
    finally:
        await alice.close()
        await bob.close()
