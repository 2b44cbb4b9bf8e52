"""Start-up's heap frozen out of the cyclic collector's walks (signaling/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.config import ConfigError, load_settings
from signaling.heap import freeze_startup_heap
from tests.support import SECRET, serve_in_process, server_settings

BASE = {"SIGNALING_JWT_SECRET": SECRET}


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    # Hand the test process its heap back: frozen objects are never collected.
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_freezing_moves_what_exists_out_of_the_walks() -> None:
    assert gc.get_freeze_count() == 0
    frozen = freeze_startup_heap()
    assert frozen == gc.get_freeze_count() > 10_000
    # A full collection now sees only what was made afterwards.
    made_after = [[index] for index in range(1000)]
    assert len(gc.get_objects(generation=2)) < frozen
    assert made_after


@pytest.mark.usefixtures("unfrozen")
async def test_the_server_freezes_once_started(tmp_path: Path) -> None:
    async with serve_in_process(server_settings(tmp_path, gc_freeze=True)):
        assert gc.get_freeze_count() > 10_000


@pytest.mark.usefixtures("unfrozen")
async def test_off_leaves_the_heap_alone(tmp_path: Path) -> None:
    async with serve_in_process(server_settings(tmp_path, gc_freeze=False)):
        assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, True), ("", True), ("1", True), ("0", False), ("off", False)]
)
def test_the_setting(raw: str | None, expected: bool) -> None:
    env = dict(BASE) if raw is None else {**BASE, "SIGNALING_GC_FREEZE": raw}
    assert load_settings(env).gc_freeze is expected


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SIGNALING_GC_FREEZE"):
        load_settings({**BASE, "SIGNALING_GC_FREEZE": "sometimes"})
