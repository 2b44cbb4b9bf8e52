"""Chat between two browsers over /chat: live messages, unread counts, receipts."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.conftest import ServerFactory, UserFactory, WebUser, screenshot
from tests.support import RunningServer

pytestmark = pytest.mark.timeout(45)


async def open_room_between(server: RunningServer, a: str, b: str) -> None:
    """Gifts both ways open the pair's chat room (PROTOCOL.md, Chat)."""
    for sender, receiver in ((a, b), (b, a)):
        status, body = await server.request(
            "POST",
            "/api/gifts",
            sender,
            json={"receiver_id": receiver, "kind": "general", "message": f"for {receiver}"},
        )
        assert status == 201, body


async def say(user: WebUser, text: str) -> None:
    await user.page.fill("#composer-text", text)
    await user.page.press("#composer-text", "Enter")
    await expect(user.page.locator("#composer-text")).to_have_value("")


async def test_a_message_goes_across_and_the_unread_count_follows(
    web_server: ServerFactory, web_user: UserFactory
) -> None:
    server = await web_server()
    await open_room_between(server, "alice", "bob")
    alice, bob = await web_user(server, "alice"), await web_user(server, "bob")

    await alice.page.click("nav a[data-nav=chat]")
    await alice.page.click("#rooms-list a[data-partner=bob]")
    await expect(alice.page.locator("#composer")).to_be_visible()
    await say(alice, "Hi Bob! Merci for the flowers — they are lovely")
    first = alice.page.locator("#message-list li.mine[data-seq='1']")
    await expect(first).to_contain_text("Merci for the flowers")
    await expect(first).to_have_attribute("data-read", "false")

    # Bob is on his calls page: the chat tab counts the message.
    await expect(bob.page.locator("#home-view")).to_be_visible()
    await expect(bob.page.locator("#chat-badge")).to_have_text("1")
    await expect(bob.page.locator("#gifts-list li")).to_have_count(1)
    await screenshot(bob.page, "home")
    await bob.page.click("nav a[data-nav=chat]")
    room = bob.page.locator("#rooms-list a[data-partner=alice]")
    await expect(room).to_have_attribute("data-unread", "1")
    await expect(room).to_contain_text("Merci for the flowers")
    await room.click()
    await expect(bob.page.locator("#message-list li.theirs[data-seq='1']")).to_contain_text(
        "Merci for the flowers"
    )
    # Opening the room reads it: counts drop, Alice gets the receipt.
    await expect(room).to_have_attribute("data-unread", "0")
    await expect(bob.page.locator("#chat-badge")).to_be_hidden()
    await expect(first).to_have_attribute("data-read", "true")
    await expect(first).to_contain_text("read")

    # Both look at the room: replies appear live and are read at once.
    await say(bob, "You're welcome! Are we still on for the call?")
    reply = alice.page.locator("#message-list li.theirs[data-seq='2']")
    await expect(reply).to_contain_text("still on for the call")
    await expect(bob.page.locator("#message-list li.mine[data-seq='2']")).to_have_attribute(
        "data-read", "true"
    )
    await say(alice, "Yes! See you at eight.")
    await expect(bob.page.locator("#message-list li.theirs[data-seq='3']")).to_be_visible()
    await expect(alice.page.locator("#message-list li.mine[data-seq='3']")).to_have_attribute(
        "data-read", "true"
    )
    await expect(alice.page.locator("#rooms-list a[data-partner=bob]")).to_have_attribute(
        "data-unread", "0"
    )
    for user_id in ("alice", "bob"):
        status, body = await server.request("GET", "/api/chat/rooms", user_id)
        assert status == 200, body
        (summary,) = body["rooms"]
        assert summary["unread_count"] == 0, summary
        assert summary["last_message"]["seq"] == 3, summary
    await screenshot(alice.page, "chat")

    # A reload keeps the history, in order.
    await alice.page.reload()
    await expect(alice.page.locator("#message-list li.msg")).to_have_count(3)
    seqs = await alice.page.eval_on_selector_all(
        "#message-list li.msg", "items => items.map(i => Number(i.dataset.seq))"
    )
    assert seqs == [1, 2, 3]
