"""``signaling.ticks.Ticks``: many deadlines on one loop timer per tick."""

from __future__ import annotations

import asyncio

from signaling.ticks import Ticks


async def test_items_run_once_at_most_one_tick_late_and_discarded_ones_never() -> None:
    ran: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    ticks: Ticks[str] = Ticks(lambda item: ran.append((item, loop.time())), resolution=0.02)
    start = loop.time()
    ticks.add("a", 0.03)
    ticks.add("b", 0.031)  # the same tick: one timer for both
    gone = ticks.add("c", 0.03)
    ticks.add("late", -5)  # overdue: the next tick
    ticks.discard("c", gone)
    ticks.discard("never-added", gone)
    await asyncio.sleep(0.12)
    assert sorted(item for item, _ in ran) == ["a", "b", "late"]
    for item, when in ran:
        if item != "late":
            assert 0.03 - 0.002 <= when - start <= 0.03 + 0.02 + 0.03


async def test_a_failing_item_does_not_stop_the_others_of_its_tick() -> None:
    ran: list[str] = []

    def due(item: str) -> None:
        if item == "bad":
            raise RuntimeError("boom")
        ran.append(item)

    ticks: Ticks[str] = Ticks(due, resolution=0.01)
    for item in ("one", "bad", "two"):
        ticks.add(item, 0)
    await asyncio.sleep(0.05)
    assert ran == ["one", "two"]
