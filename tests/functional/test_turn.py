"""TURN through the real coturn (Debian's ``turnserver``), started with
``use-auth-secret`` and the server's ``SIGNALING_TURN_SECRET``: peers that may
use only relayed candidates connect with nothing but the join ack's
credentials, and coturn refuses expired ones."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint

from signaling.ice import IceServerProvider
from tests.functional.conftest import Lab, TimedClient
from tests.functional.peers import RtcPeer
from tests.media_servers import RunningTurn, run_turnserver
from tests.support import RunningServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

TURN_SECRET = "turn-secret-shared-with-coturn"


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[RunningTurn]:
    with run_turnserver(tmp_path / "coturn", TURN_SECRET) as running:
        yield running


async def start(lab: Lab, turn: RunningTurn) -> RunningServer:
    return await lab.start(
        ice_servers=({"urls": [turn.url]},), turn_secret=TURN_SECRET, countdown_s=0.3, limit_s=1.0
    )


async def allocate(turn: RunningTurn, server: dict[str, Any]) -> tuple[str, int]:
    """A TURN allocation with an ICE server entry's credentials; the relayed address."""
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol,
        server_addr=("127.0.0.1", turn.port),
        username=server["username"],
        password=server["credential"],
        lifetime=60,
    )
    try:
        address: tuple[str, int] = transport.get_extra_info("sockname")
        return address
    finally:
        transport.close()


def relayed_only(client: TimedClient) -> set[str]:
    """The candidate kinds ``client`` received from its partner."""
    kinds = set()
    for signal in client.events["signal"]:
        if signal["type"] == "candidate":
            kinds.add(signal["candidate"]["candidate"].split(" typ ")[1].split()[0])
    return kinds


async def test_aiortc_peers_connect_relay_only_with_the_join_ack_credentials(
    lab: Lab, turn: RunningTurn
) -> None:
    server = await start(lab, turn)
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    first = await alice.join(call_id)
    second = await bob.join(call_id)
    for user_id, ack in (("alice", first), ("bob", second)):
        (entry,) = ack["ice_servers"]
        assert entry["urls"] == [turn.url]
        assert entry["username"].endswith(f":{user_id}"), entry
    peers = [
        RtcPeer(alice, call_id, "bob", first["ice_servers"], relay_only=True),
        RtcPeer(bob, call_id, "alice", second["ice_servers"], relay_only=True),
    ]
    try:
        for peer in peers:
            peer.start()
        await peers[1].make_offer()
        await asyncio.gather(*(peer.wait_connected() for peer in peers))
        # Only relayed candidates went either way: the media went through coturn.
        assert relayed_only(alice) == {"relay"} and relayed_only(bob) == {"relay"}
        for peer in peers:
            await peer.channel_open.wait()
        assert peers[0].channel is not None
        peers[0].channel.send("through coturn")
        assert await asyncio.wait_for(peers[1].messages.get(), 5) == "through coturn"
        log = turn.log_tail(200_000)
        for ack in (first, second):
            assert ack["ice_servers"][0]["username"] in log  # coturn saw these credentials
        for client in (alice, bob):
            await client.ok("connected", call_id)
        await alice.take("live")
        assert await alice.take("ended") == {"call_id": call_id, "reason": "time_limit"}
    finally:
        for peer in peers:
            with contextlib.suppress(Exception):
                await peer.close()


async def test_coturn_refuses_expired_credentials(lab: Lab, turn: RunningTurn) -> None:
    server = await start(lab, turn)
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice = await lab.connect(server, "alice")
    (fresh,) = (await alice.join(call_id))["ice_servers"]
    host, _port = await allocate(turn, fresh)
    assert host == "127.0.0.1"

    # The same scheme, minted as if long ago: the expiry has passed.
    provider = IceServerProvider.from_settings(server.settings, clock=lambda: 1_000_000.0)
    (expired,) = provider.for_user("alice")
    assert int(expired["username"].split(":")[0]) < time.time()
    with pytest.raises(TransactionFailed) as refused:
        await allocate(turn, expired)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401, refused.value
    # A credential that does not match its username is refused too.
    with pytest.raises(TransactionFailed):
        await allocate(turn, {**fresh, "credential": "bm90IHRoZSBvbmU="})
