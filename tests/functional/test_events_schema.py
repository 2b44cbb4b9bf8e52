"""docs/events.schema.json against a live server: for every client event,
payloads generated from its JSON Schema (:func:`from_schema`) get an ack of
the contract (success, or an error other than ``unavailable``), and payloads
that break the schema get the ``invalid`` error ack in the contract's shape.

Hypothesis runs synchronously in the test's thread; the server runs on a loop
of its own (``server_in_thread``) and the clients on a private loop here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import socketio
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from signaling.calls.namespace import CallNamespace
from signaling.chat.namespace import ChatNamespace
from signaling.openapi import EVENTS, ErrorBody, Event, event_payload_schema
from tests.functional.chat_support import open_room
from tests.functional.conftest import StdJsonPacket
from tests.support import ErrorLines, RunningServer, server_in_thread

#: Payloads per event and kind (valid, invalid): 7 events x 2 x 300 (about 15 s).
EXAMPLES = 300
USER = "alice"
PARTNER = "bob"
CLIENT_EVENTS = [e for e in EVENTS if e.direction == "client"]
ERROR = jsonschema.Draft202012Validator(ErrorBody.model_json_schema())

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> SearchStrategy[Any]:
    """Values valid for ``schema``, for the keywords pydantic writes into the
    events' schemas. (hypothesis-jsonschema would do, but reaches into
    Hypothesis internals that current releases no longer have.)"""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return st.one_of([from_schema(branch, defs) for branch in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**63) - 1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**63) - 1)
        return st.integers(min_value=low, max_value=high)
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength"))
    if kind == "object":
        fields = {k: from_schema(v, defs) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", ()))
        assert schema.get("additionalProperties") is False, schema  # all payloads are closed
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        )
    raise NotImplementedError(f"no strategy for {schema}")


def invalid_payloads(event: Event) -> SearchStrategy[Any]:
    """A valid payload broken one way (a key dropped, one added, a value of
    another type), or any JSON value at all; kept only if the schema says no."""
    schema = event_payload_schema(event.namespace, event.name)
    validator = jsonschema.Draft202012Validator(schema)

    @st.composite
    def broken(draw: st.DrawFn) -> Any:
        payload = dict(draw(from_schema(schema)))
        how = draw(st.sampled_from(["drop", "add", "retype", "anything"]))
        if how == "drop" and payload:
            del payload[draw(st.sampled_from(sorted(payload)))]
        elif how == "add":
            payload[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
        elif how == "retype" and payload:
            payload[draw(st.sampled_from(sorted(payload)))] = draw(json_values)
        elif how == "anything":
            return draw(json_values)
        return payload

    return broken().filter(lambda payload: not validator.is_valid(payload))


def assert_contract_ack(ack: Any) -> None:
    """``{ok: true, ...}``, or the error body with a code of the contract."""
    assert isinstance(ack, dict), ack
    if ack.get("ok") is True:
        return
    ERROR.validate(ack)
    assert ack["error"]["code"] != "unavailable", ack


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Rate limits high enough that payloads reach the handlers, not the limiter.
    with server_in_thread(
        tmp_path_factory.mktemp("events"), chat_per_s=100_000, signals_per_s=100_000
    ) as server:
        yield server


class Emitter:
    """Connected ``/call`` and ``/chat`` clients of ``USER``, on a loop of
    their own, called synchronously from Hypothesis' examples."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.clients: dict[str, socketio.AsyncClient] = {}
        self.real_ids: dict[str, int] = {}
        #: acks by outcome (``ok`` or the error code), printed at the end
        self.acks: Counter[str] = Counter()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    async def connect(self) -> None:
        # Something real to act on: a call whose window is open, a chat room.
        self.real_ids = {
            "call_id": int((await self.server.schedule(USER, PARTNER, 60))["id"]),
            "room_id": await open_room(self.server, USER, PARTNER),
        }
        for namespace in sorted({e.namespace for e in EVENTS}):
            sio = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
            await sio.connect(
                self.server.url,
                namespaces=[namespace],
                auth={"token": self.server.token(USER)},
                transports=["websocket"],
                wait_timeout=5,
            )
            self.clients[namespace] = sio

    def with_real_ids(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` about the call and room that exist, so that more of
        them get past the look-up (random ids find nothing)."""
        return {k: self.real_ids.get(k, v) for k, v in payload.items()}

    def emit(self, event: Event, payload: Any) -> Any:
        sio = self.clients[event.namespace]
        ack = self.run(sio.call(event.name, payload, namespace=event.namespace, timeout=10))
        outcome = "ok" if isinstance(ack, dict) and ack.get("ok") is True else None
        self.acks[
            outcome or str(ack.get("error", {}).get("code") if isinstance(ack, dict) else ack)
        ] += 1
        return ack

    def close(self) -> None:
        for sio in self.clients.values():
            assert sio.connected, "a payload cost the connection"
            self.run(sio.disconnect())
        self.loop.close()


@pytest.fixture(scope="module")
def emitter(live: RunningServer) -> Iterator[Emitter]:
    emitter = Emitter(live)
    emitter.run(emitter.connect())
    yield emitter
    emitter.close()
    print(f"events: {sum(emitter.acks.values())} payloads emitted, acks: {dict(emitter.acks)}")


@pytest.fixture(autouse=True)
def no_error_lines() -> Iterator[None]:
    errors = ErrorLines()
    logging.getLogger().addHandler(errors)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(errors)
    assert not errors.records, [r.getMessage()[:300] for r in errors.records][:5]


EXAMPLE_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("event", CLIENT_EVENTS, ids=lambda e: f"{e.namespace}:{e.name}")
def test_valid_payloads_get_an_ack_of_the_contract(event: Event, emitter: Emitter) -> None:
    schema = event_payload_schema(event.namespace, event.name)

    payloads = from_schema(schema)

    @EXAMPLE_SETTINGS
    @given(payloads | payloads.map(emitter.with_real_ids))
    def one(payload: Any) -> None:
        assert_contract_ack(emitter.emit(event, payload))

    one()


@pytest.mark.parametrize("event", CLIENT_EVENTS, ids=lambda e: f"{e.namespace}:{e.name}")
def test_invalid_payloads_get_the_invalid_ack(event: Event, emitter: Emitter) -> None:
    @EXAMPLE_SETTINGS
    @given(invalid_payloads(event))
    def one(payload: Any) -> None:
        ack = emitter.emit(event, payload)
        ERROR.validate(ack)
        assume(ack["error"]["code"] != "rate_limited")  # a limit may answer first
        assert ack["error"]["code"] == "invalid", (payload, ack)

    one()


def test_every_client_event_is_described() -> None:
    """The drift check of the events: every handler of a namespace has its
    payload in docs/events.schema.json, and nothing else does."""
    handlers = {
        (namespace, name.removeprefix("on_"))
        for namespace, cls in (("/call", CallNamespace), ("/chat", ChatNamespace))
        for name in vars(cls)
        if name.startswith("on_")
    }
    assert {(e.namespace, e.name) for e in CLIENT_EVENTS} == handlers
