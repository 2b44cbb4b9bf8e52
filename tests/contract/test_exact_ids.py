"""Ids are compared exactly on every backend: "bob", "Bob", "bob " and "böb"
are four users, and "c1" / "C1" two client message ids. (MySQL's default
collations would fold case, accents and trailing spaces: the user "Bob" would
read "bob"'s calls, gifts and chat room.)"""

from __future__ import annotations

from persistence.factory import Stores
from persistence.gifts import GiftBox
from tests.contract.states import T0, create_call

#: Equal to "bob" under utf8mb4_general_ci (case, accent, PAD SPACE) or
#: unicode_ci; all different for Python.
LOOKALIKES = ("bob", "Bob", "BOB", "bob ", "böb", "bøb")
#: 4-byte UTF-8 characters, 64 of them: the longest id there is.
EMOJI_ID = "🎁" * 64


async def test_calls_of_lookalike_users_stay_apart(stores: Stores) -> None:
    made = {user: await create_call(stores.calls, "alice", user) for user in LOOKALIKES}
    for user, call in made.items():
        assert [c.id for c in await stores.calls.list_for_user(user)] == [call.id], user
    assert len(await stores.calls.list_for_user("alice")) == len(LOOKALIKES)
    emoji = await create_call(stores.calls, EMOJI_ID, "alice", scheduled_at=T0)
    assert await stores.calls.get(emoji.id) == emoji
    assert [c.caller_id for c in await stores.calls.list_for_user(EMOJI_ID)] == [EMOJI_ID]


async def test_notifications_of_lookalike_users_stay_apart(stores: Stores) -> None:
    for user in LOOKALIKES:
        await stores.notifications.add(user, "call_soon", None, {"for": user})
    for user in LOOKALIKES:
        (only,) = await stores.notifications.list_for_user(user)
        assert only.payload == {"for": user}


async def test_each_lookalike_pair_has_a_room_of_its_own(stores: Stores) -> None:
    rooms = {}
    for user in LOOKALIKES:
        room, created = await stores.rooms.get_or_create("alice", user)
        assert created, f"{user!r} got another user's room"
        rooms[user] = room
    assert len({r.id for r in rooms.values()}) == len(LOOKALIKES)
    for user, room in rooms.items():
        assert await stores.rooms.find(user, "alice") == room
        assert [r.id for r in await stores.rooms.list_for_user(user)] == [room.id]
        assert room.partner_of("alice") == user
    emoji_room, created = await stores.rooms.get_or_create(EMOJI_ID, "alice")
    assert created and emoji_room.partner_of("alice") == EMOJI_ID


async def test_gifts_of_lookalike_users_stay_apart(stores: Stores) -> None:
    gift = await stores.gifts.create("alice", "bob", "for bob only")
    for user in LOOKALIKES[1:]:
        assert not await stores.gifts.has_sent("alice", user), user
        assert await stores.gifts.list_for_user(user, GiftBox.RECEIVED) == [], user
    assert await stores.gifts.list_for_user("bob", GiftBox.RECEIVED) == [gift]


async def test_client_message_ids_and_senders_compare_exactly(stores: Stores) -> None:
    messages = stores.messages
    room = 5
    first, _ = await messages.append(room, "bob", "one", "c1")
    for client_msg_id in ("C1", "c1 ", "ç1"):
        other, created = await messages.append(room, "bob", "another", client_msg_id)
        assert created and other.seq != first.seq, client_msg_id
    for sender in LOOKALIKES[1:]:
        theirs, created = await messages.append(room, sender, "theirs", "c1")
        assert created and theirs.sender_id == sender, sender
    again, created = await messages.append(room, "bob", "one", "c1")
    assert not created and again == first
    assert await messages.last_seq(room) == 3 + len(LOOKALIKES)

    assert await messages.mark_read(room, "bob", 2) == 2
    summaries = await messages.summaries("Bob", [room])
    assert summaries[room].last_read_seq == 0, "Bob got bob's read marker"
