"""rtc_bridge.openvidu.OpenViduClient against the OpenVidu 2 simulator:
documented statuses, timeouts, bounded retries with backoff, none on 4xx."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from rtc_bridge.errors import MediaUnavailableError
from rtc_bridge.openvidu import (
    OpenViduClient,
    OpenViduRejectedError,
    OpenViduUnavailableError,
    RetryPolicy,
    SessionNotFoundError,
)
from tests.openvidu_sim import API, OpenViduSim

FAST = RetryPolicy(attempts=3, timeout_s=0.3, backoff_s=0.05, backoff_max_s=0.1)


@pytest.fixture
async def sim() -> AsyncIterator[OpenViduSim]:
    simulator = OpenViduSim()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client(sim: OpenViduSim) -> AsyncIterator[OpenViduClient]:
    made = OpenViduClient(sim.url + "/", sim.secret, policy=FAST)
    yield made
    await made.close()


async def test_session_and_connection_lifecycle(sim: OpenViduSim, client: OpenViduClient) -> None:
    session = await client.create_session("call-1")
    assert session is not None and session.id == "call-1"
    assert session.unique_id == f"call-1_{sim.sessions['call-1'].created_at}"
    assert await client.create_session("call-1") is None  # 409: it exists
    fetched = await client.get_session("call-1")
    assert fetched == session
    assert await client.get_session("call-2") is None

    connection = await client.create_connection("call-1", '{"user_id":"alice"}')
    stored = sim.connection_for(connection.token)
    assert stored.id == connection.id and stored.server_data == '{"user_id":"alice"}'
    with pytest.raises(SessionNotFoundError):
        await client.create_connection("call-2", "{}")

    assert await client.disconnect("call-1", connection.id) is True
    assert await client.disconnect("call-1", connection.id) is False  # 404
    assert await client.disconnect("call-2", "con_x") is False  # 400: no session
    assert await client.close_session("call-1") is True
    assert await client.close_session("call-1") is False  # 404


async def test_a_bad_body_or_secret_is_rejected_without_retry(sim: OpenViduSim) -> None:
    wrong = OpenViduClient(sim.url, "not-the-secret", policy=FAST)
    try:
        with pytest.raises(OpenViduRejectedError) as caught:
            await wrong.create_session("call-1")
        assert caught.value.status == 401
        assert isinstance(caught.value, MediaUnavailableError)  # join says unavailable
        assert len(sim.log) == 1
    finally:
        await wrong.close()
    right = OpenViduClient(sim.url, sim.secret, policy=FAST)
    try:
        with pytest.raises(OpenViduRejectedError) as caught:
            await right.create_session("not allowed!")
        assert caught.value.status == 400
        assert len(sim.log) == 2
    finally:
        await right.close()


async def test_5xx_is_retried_with_backoff_then_gives_up(
    sim: OpenViduSim, client: OpenViduClient
) -> None:
    sim.fail_status = 503
    began = time.monotonic()
    with pytest.raises(OpenViduUnavailableError):
        await client.create_session("call-1")
    assert [r.status for r in sim.log] == [503, 503, 503]
    assert time.monotonic() - began >= FAST.delay(0) + FAST.delay(1)
    sim.fail_status = None
    assert await client.create_session("call-1") is not None


async def test_a_slow_server_times_out_each_attempt(
    sim: OpenViduSim, client: OpenViduClient
) -> None:
    sim.delay_s = 1.0
    began = time.monotonic()
    with pytest.raises(OpenViduUnavailableError, match="no answer within"):
        await client.close_session("call-1")
    elapsed = time.monotonic() - began
    assert 3 * FAST.timeout_s <= elapsed < 3 * FAST.timeout_s + 0.6


async def test_a_server_that_is_down_is_retried_then_recovers(
    sim: OpenViduSim, client: OpenViduClient
) -> None:
    await sim.go_down()
    with pytest.raises(OpenViduUnavailableError, match="attempts"):
        await client.create_session("call-1")
    await sim.come_back()
    assert await client.create_session("call-1") is not None
    assert [r.path for r in sim.log] == [f"{API}/sessions"]


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(backoff_s=0.1, backoff_max_s=0.35)
    assert [policy.delay(n) for n in range(4)] == [0.1, 0.2, 0.35, 0.35]
