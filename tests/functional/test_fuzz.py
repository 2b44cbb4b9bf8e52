"""Hypothesis-generated input against a live server: Socket.IO events (with
and without an ack id, on /call and /chat), raw Engine.IO / Socket.IO frames
over a hand-spoken websocket, and REST requests; over 10,000 inputs a run.

Asserted for all of them:

- every packet with an ack id gets its ack, in the contract's shape (an error
  ack for anything malformed), and the connection it came on stays open;
- any other frame is answered, ignored or closes its own connection, and never
  leaves a connection stuck (an Engine.IO probe behind it is answered);
- no REST answer is a 5xx, every one is in the contract's shape;
- nothing makes the server log an ERROR line;
- the server is healthy afterwards: a normal call relays a signal and a chat
  delivers a message.

One server (on a loop of its own, in a thread) serves the whole file. The
inputs come in batches (one Hypothesis example is a list of 25 to 40 inputs,
sent together), which keeps the run near a minute on two cores; Hypothesis is
derandomized, so every CI run sends the same inputs and a failure is
reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from signaling.errors import STATUS_BY_CODE
from tests.functional.chat_support import ChatClient, open_room
from tests.functional.conftest import StdJsonPacket, both_in, open_client
from tests.functional.raw_socket import RawSocket
from tests.support import ErrorLines, RunningServer, in_seconds, server_in_thread

T = TypeVar("T")

#: Hypothesis for CI: the same inputs every run, nothing stored between runs,
#: no deadline (the machine is shared), no shrinking budget spent on health checks.
CI = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
#: Inputs per Hypothesis example: many per round trip keep the run short.
BATCH = {"min_size": 25, "max_size": 32}
#: Examples per kind; times BATCH["min_size"], the fewest inputs of the kind.
EXAMPLES = {"events": 120, "acked": 120, "garbage": 80, "rest": 80}
#: The fewest inputs a run of the whole file sends.
MIN_INPUTS = 10_000
NAMESPACES = ("/call", "/chat")
USER = "alice"
#: How long a batch may take before the test says what is missing (a guard
#: against a hang, not a timing assertion).
BATCH_LIMIT_S = 20.0

# ---------------------------------------------------------------- strategies

no_surrogates = st.characters(exclude_categories=("Cs",))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
odd_ids = st.sampled_from(["\u00b2", "\u0663", "\uff11", "-1", "0x1", "1e3", "9" * 30, " 1"])
ids = st.integers(min_value=-3, max_value=2**54) | odd_ids | st.text(max_size=20) | json_values
call_fields = st.fixed_dictionaries(
    {},
    optional={
        "partner_id": st.sampled_from(["bob", "", "x" * 65]) | json_values,
        "scheduled_at": st.sampled_from([in_seconds(600), "1796109290", "2030-01-01"])
        | json_values,
        "call_id": ids,
        "type": st.sampled_from(["offer", "answer", "candidate", "end-of-candidates"]),
        "sdp": st.text(max_size=60) | json_values,
        "candidate": st.fixed_dictionaries({"candidate": st.text(max_size=30)}) | json_values,
        "receiver_id": st.sampled_from(["bob", "alice"]) | json_values,
        "kind": st.sampled_from(["general", "special", "other"]) | json_values,
        "message": st.text(max_size=40) | json_values,
        "room_id": ids,
        "content": st.text(max_size=40) | json_values,
        "client_msg_id": st.text(max_size=40) | json_values,
        "after_seq": ids,
        "seq": ids,
    },
)
payloads = call_fields | json_values
events = st.sampled_from(
    ["join", "signal", "connected", "leave", "send", "sync", "read", "JOIN", "__init__", "message"]
) | st.text(max_size=20)


def _truncated(text: str, fraction: float) -> str:
    return text[: int(len(text) * fraction)]


def _nested(depth: int, opener: str, closed: bool) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return '["x",' + opener * depth + ("1" + closer * depth + "]" if closed else "")


event_json = st.builds(lambda e, p: json.dumps([e, p]), events, payloads)
#: What follows the ack id of an event packet. Never a leading digit: it would
#: be read as more of the ack id.
bodies = st.one_of(
    event_json,
    st.builds(_truncated, event_json, st.floats(0, 1)),  # truncated JSON, "" included
    st.builds(
        lambda n, p: json.dumps([n, p]),
        json_values.filter(lambda v: not isinstance(v, str)),
        payloads,
    ),
    st.sampled_from(["[]", "{}", "", "null", '"join"', "[null]", "true", "-1", '[""]', "[[]]"]),
    st.builds(_nested, st.integers(1025, 3000), st.sampled_from(["[", '{"a":']), st.booleans()),
    st.builds(
        lambda n: json.dumps(["signal", {"_placeholder": True, "num": n}]), st.integers(-1, 9)
    ),
    st.text(alphabet=no_surrogates, max_size=40).filter(lambda t: not t[:1].isdigit()),
)
#: Ack ids: ordinary, long (the library's limit is 100 digits), beyond it.
ack_ids = (
    st.integers(min_value=0, max_value=2**53)
    | st.integers(min_value=10**15, max_value=10**100 - 1)
    | st.integers(min_value=10**100, max_value=10**200)
)
#: Binary-event headers: the protocol is JSON only, so each is refused at the door.
event_types = st.sampled_from(["2"]) | st.builds("5{}-".format, st.integers(0, 10**14))


@dataclass(frozen=True)
class AckedFrame:
    """An event packet with an ack id, and binary frames sent after it."""

    namespace: str
    ack_id: int
    text: str
    attachments: tuple[bytes, ...]


@st.composite
def acked_frames(draw: st.DrawFn) -> AckedFrame:
    namespace = draw(st.sampled_from(NAMESPACES))
    ack_id = draw(ack_ids)
    kind = draw(event_types)
    query = draw(st.sampled_from(["", "", "?x=1"]))
    text = f"4{kind}{namespace}{query},{ack_id}{draw(bodies)}"
    attachments = draw(st.lists(st.binary(max_size=32), max_size=3)) if kind != "2" else []
    return AckedFrame(namespace, ack_id, text, tuple(attachments))


#: Anything at all: bytes, text, Engine.IO and Socket.IO packets of every type,
#: for joined namespaces, others and none, with and without ack ids.
garbage = st.one_of(
    st.binary(max_size=48),
    st.text(alphabet=no_surrogates, max_size=48),
    st.builds(
        str.__add__, st.sampled_from("0123456789b"), st.text(alphabet=no_surrogates, max_size=24)
    ),
    st.builds(
        lambda kind, count, namespace, ack_id, body: f"4{kind}{count}{namespace}{ack_id}{body}",
        st.sampled_from("0123456789"),
        st.sampled_from(["", "", "1-", "0-", "99999999999-"]),
        st.sampled_from(["", "/call,", "/chat,", "/nope,", "/call?q,", "/", "/chat"]),
        st.sampled_from(["", "", "5"]) | ack_ids.map(str),
        bodies,
    ),
    st.sampled_from(
        ["1", "2", "3", "4", "5", "6", "2probe", "b4AAAA", "40", "41", '40/call,{"token":1}']
    ),
)

rest_ids = odd_ids | st.integers(min_value=-2, max_value=2**70).map(str) | st.text(max_size=12)
query_values = odd_ids | st.integers(-5, 10**20).map(str) | st.text(max_size=12)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # already percent-encoded
    body: bytes | None = None
    content_type: str = "application/json"


def _q(value: str) -> str:
    return quote(value, safe="")


json_bodies = payloads.map(lambda v: json.dumps(v).encode())
raw_bodies = st.binary(max_size=64) | st.sampled_from([b"", b"{", b"[]" * 3, b"\xff\xfe", b"null"])
requests_ = st.one_of(
    st.builds(
        Request,
        st.just("POST"),
        st.sampled_from(
            [
                "/api/calls",
                "/api/gifts",
                "/api/chat/rooms/1/read",
                "/api/questions",
                "/api/dev/login",
            ]
        ),
        json_bodies | raw_bodies,
        st.sampled_from(["application/json", "application/json", "text/plain"]),
    ),
    st.builds(
        lambda method, template, id_: Request(method, template.format(_q(id_))),
        st.sampled_from(["GET", "DELETE"]),
        st.just("/api/calls/{}"),
        rest_ids,
    ),
    st.builds(
        lambda template, id_: Request("GET", template.format(_q(id_))),
        st.sampled_from(["/api/gifts/{}", "/api/chat/rooms/{}/messages", "/api/gifts?box={}"]),
        rest_ids,
    ),
    st.builds(
        lambda id_, body: Request("POST", f"/api/gifts/{_q(id_)}/open", body),
        rest_ids,
        st.none() | json_bodies,
    ),
    st.builds(
        lambda path, key, value: Request("GET", f"{path}?{key}={_q(value)}"),
        st.sampled_from(["/api/calls", "/api/notifications", "/api/chat/rooms/1/messages"]),
        st.sampled_from(["limit", "before", "before_id", "before_seq"]),
        query_values,
    ),
)


# ------------------------------------------------------------------ checking


def assert_answer(body: Any) -> None:
    """``{ok: true, ...}`` or the contract's error with a known code."""
    assert isinstance(body, dict), body
    if body.get("ok") is True:
        return
    assert set(body) == {"ok", "error"} and body["ok"] is False, body
    error = body["error"]
    assert set(error) <= {"code", "message", "retry_after"}, body
    assert error["code"] in STATUS_BY_CODE and error["code"] != "unavailable", body
    assert isinstance(error["message"], str) and error["message"], body


#: An ack from the server: namespace, ack id, its arguments.
ACK = re.compile(r"43(/[^,]*),(\d+)(.*)", re.DOTALL)
#: The Engine.IO probe sent behind each garbage frame, and its answer: an
#: upgrade packet, answered by a noop whatever namespaces the connection is in.
PROBE, PROBE_ANSWER = "5", "6"


@dataclass
class Fuzzer:
    """The client side of the run: a loop in the test's thread, Hypothesis in
    a worker thread that hands it coroutines, and what the run sent."""

    server: RunningServer
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    sent: Counter[str] = field(default_factory=Counter)
    _users: int = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """From Hypothesis' thread: run ``coro`` on the client loop, to its end."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(BATCH_LIMIT_S * 3)

    async def given(self, test: Callable[[], None]) -> None:
        """Run a ``@given`` test in a worker thread while this loop serves it."""
        await self.loop.run_in_executor(None, test)

    def fresh_user(self) -> str:
        """A user of its own per garbage connection: no connection quota is reached."""
        self._users += 1
        return f"fuzz{self._users}"

    async def joined(self, raw: RawSocket, user: str) -> None:
        for namespace in NAMESPACES:
            answer = await raw.connect(namespace, {"token": self.server.token(user)})
            assert answer is not None and answer.startswith(f"40{namespace},"), answer

    async def acked_batch(self, raw: RawSocket, frames: list[AckedFrame]) -> None:
        """Send every frame, then wait for each ack id's answer."""
        waiting: Counter[tuple[str, int]] = Counter()
        for frame in frames:
            await raw.send(frame.text)
            for attachment in frame.attachments:
                await raw.send(attachment)
            waiting[frame.namespace, frame.ack_id] += 1
            self.sent["raw frames with an ack id"] += 1
            self.sent["raw binary attachments"] += len(frame.attachments)
        while waiting:
            text = await raw.next(BATCH_LIMIT_S)
            assert text is not None, f"the server closed the connection; no ack for {waiting}"
            found = ACK.fullmatch(text)
            if found is None:
                continue  # an event, e.g. a partner's signal
            key = (found[1], int(found[2]))
            assert waiting[key] > 0, f"an ack nobody waits for: {text[:200]}"
            waiting[key] -= 1
            if not waiting[key]:
                del waiting[key]
            args = json.loads(found[3])
            assert isinstance(args, list) and len(args) == 1, text[:200]
            assert_answer(args[0])

    async def garbage_batch(self, frames: list[str | bytes]) -> None:
        """Each frame with a probe behind it, on as many connections as the
        frames close; every probe is answered unless its connection closed."""
        start = 0
        while start < len(frames):
            async with RawSocket.opened(self.session, self.server) as raw:
                await self.joined(raw, self.fresh_user())
                answered, closed = await self._probe(raw, frames[start:])
            # On a close, the frame after the last answered probe closed it.
            self.sent["raw frames of any kind"] += answered + closed
            start += answered + closed

    async def _probe(self, raw: RawSocket, frames: list[str | bytes]) -> tuple[int, int]:
        """(probes answered, 1 if the connection then closed else 0)."""
        try:
            for frame in frames:
                await raw.send(frame)
                await raw.send(PROBE)
        except ConnectionError:
            pass  # closed under the sender: the reads below tell where
        answered = 0
        while answered < len(frames):
            text = await raw.next(BATCH_LIMIT_S)
            if text is None:
                return answered, 1
            if text == PROBE_ANSWER:
                answered += 1
            elif (found := ACK.fullmatch(text)) is not None:
                assert_answer(json.loads(found[3])[0])
        return answered, 0

    async def events_batch(
        self, clients: dict[str, socketio.AsyncClient], batch: list[tuple[str, str, Any, bool]]
    ) -> None:
        """Emit everything at once; each ack in shape. A last call on each
        namespace shows that the events without an ack left it working."""

        async def one(namespace: str, event: str, payload: Any, with_ack: bool) -> None:
            client = clients[namespace]
            if with_ack:
                assert_answer(await client.call(event, payload, namespace=namespace, timeout=20))
            else:
                await client.emit(event, payload, namespace=namespace)

        await asyncio.gather(*(one(*item) for item in batch))
        for namespace, client in clients.items():
            ack = await client.call("nothing", {}, namespace=namespace, timeout=BATCH_LIMIT_S)
            assert ack["ok"] is False and ack["error"]["code"] == "invalid", ack
        self.sent["Socket.IO events with an ack"] += sum(1 for item in batch if item[3])
        self.sent["Socket.IO events without an ack"] += sum(1 for item in batch if not item[3])

    async def rest_batch(self, batch: list[Request]) -> None:
        async def one(request: Request) -> None:
            headers = {**self.server.headers(USER), "Content-Type": request.content_type}
            async with self.session.request(
                request.method,
                URL(self.server.url + request.path, encoded=True),
                headers=headers,
                data=request.body,
            ) as response:
                text = await response.text()
            where = (request, response.status, text[:300])
            assert response.status < 500, where
            assert response.content_type == "application/json", where
            answer = json.loads(text)
            assert_answer(answer)
            assert (answer["ok"] is True) == (response.status < 400), where

        await asyncio.gather(*(one(request) for request in batch))
        self.sent["REST requests"] += len(batch)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for every test of the file (the inputs of each batch share it anyway)."""
    with server_in_thread(tmp_path_factory.mktemp("fuzz")) as server:
        yield server


@pytest.fixture(scope="module")
def totals() -> Iterator[Counter[str]]:
    """What every test of the file sent (printed at the end, with ``-s``)."""
    sent: Counter[str] = Counter()
    yield sent
    print("fuzz inputs:", dict(sent), "total", sum(sent.values()))


@pytest.fixture
async def fuzzer(live: RunningServer, totals: Counter[str]) -> AsyncIterator[Fuzzer]:
    """A client of ``live``; the test fails if the server logged an ERROR
    while it ran, or is not healthy at its end."""
    errors = ErrorLines()
    logging.getLogger().addHandler(errors)
    try:
        async with aiohttp.ClientSession() as session:
            fuzz = Fuzzer(live, asyncio.get_running_loop(), session)
            yield fuzz
            totals.update(fuzz.sent)
        await assert_healthy(live)
    finally:
        logging.getLogger().removeHandler(errors)
    assert not errors.records, [r.getMessage()[:300] for r in errors.records][:5]


async def assert_healthy(server: RunningServer) -> None:
    """A normal call relays a signal and a normal chat delivers a message."""
    assert await server.request("GET", "/api/health") == (200, {"ok": True})
    call_id = int((await server.schedule("carol", "dave", 1))["id"])
    room_id = await open_room(server, "carol", "dave")
    async with contextlib.AsyncExitStack() as stack:
        carol = await open_client(stack, server, "carol", None)
        dave = await open_client(stack, server, "dave", None)
        await both_in(carol, dave, call_id)
        offer = {"call_id": call_id, "type": "offer", "sdp": "v=0"}
        assert await dave.emit("signal", offer) == {"ok": True}
        assert await carol.take("signal") == {**offer, "from": "dave"}
        await carol.ok("leave", call_id)
        chatters = [await ChatClient(server, user).connect() for user in ("carol", "dave")]
        for chatter in chatters:
            stack.push_async_callback(chatter.close)
        sent = await chatters[0].send(room_id, "still here", f"health-{call_id}")
        assert (await chatters[1].wait_for("message"))[-1] == sent


# --------------------------------------------------------------------- tests


async def test_socketio_events_with_and_without_acks(fuzzer: Fuzzer) -> None:
    clients: dict[str, socketio.AsyncClient] = {}
    for namespace in NAMESPACES:
        sio = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
        await sio.connect(
            fuzzer.server.url,
            namespaces=[namespace],
            auth={"token": fuzzer.server.token(USER)},
            transports=["websocket"],
            wait_timeout=5,
        )
        clients[namespace] = sio
    item = st.tuples(st.sampled_from(NAMESPACES), events, payloads, st.booleans())

    @settings(CI, max_examples=EXAMPLES["events"])
    @given(st.lists(item, **BATCH))
    def batches(batch: list[tuple[str, str, Any, bool]]) -> None:
        fuzzer.run(fuzzer.events_batch(clients, batch))

    try:
        await fuzzer.given(batches)
        assert all(sio.connected for sio in clients.values())
    finally:
        for sio in clients.values():
            await sio.disconnect()
    assert fuzzer.sent.total() >= EXAMPLES["events"] * BATCH["min_size"], fuzzer.sent


async def test_raw_packets_with_an_ack_id_get_their_ack(fuzzer: Fuzzer) -> None:
    """Malformed or not, each packet's ack id is answered on a connection that stays open."""
    async with RawSocket.opened(fuzzer.session, fuzzer.server) as raw:
        await fuzzer.joined(raw, USER)

        @settings(CI, max_examples=EXAMPLES["acked"])
        @given(st.lists(acked_frames(), **BATCH))
        def batches(frames: list[AckedFrame]) -> None:
            fuzzer.run(fuzzer.acked_batch(raw, frames))

        await fuzzer.given(batches)
        await raw.still_open("/call")
        await raw.still_open("/chat")
    assert fuzzer.sent["raw frames with an ack id"] >= EXAMPLES["acked"] * BATCH["min_size"]


async def test_raw_garbage_never_leaves_a_connection_stuck(fuzzer: Fuzzer) -> None:
    @settings(CI, max_examples=EXAMPLES["garbage"])
    @given(st.lists(garbage, **BATCH))
    def batches(frames: list[str | bytes]) -> None:
        fuzzer.run(fuzzer.garbage_batch(frames))

    await fuzzer.given(batches)
    assert fuzzer.sent["raw frames of any kind"] >= EXAMPLES["garbage"] * BATCH["min_size"]


async def test_rest_requests_get_answers_in_shape_and_no_5xx(fuzzer: Fuzzer) -> None:
    status, _ = await fuzzer.server.request(
        "POST",
        "/api/calls",
        USER,
        json={"partner_id": "bob", "scheduled_at": in_seconds(600)},
    )
    assert status == 201

    @settings(CI, max_examples=EXAMPLES["rest"])
    @given(st.lists(requests_, **BATCH))
    def batches(batch: list[Request]) -> None:
        fuzzer.run(fuzzer.rest_batch(batch))

    await fuzzer.given(batches)
    assert fuzzer.sent["REST requests"] >= EXAMPLES["rest"] * BATCH["min_size"]


def test_the_file_sends_at_least_ten_thousand_inputs() -> None:
    """Each test above asserts its own share; together they make MIN_INPUTS."""
    assert sum(EXAMPLES.values()) * BATCH["min_size"] >= MIN_INPUTS
