"""Every use of the ``limits`` library's private names, guarded by
``tests/unit/test_limits_fence.py``.

``limits``' in-memory storage drops expired keys with a walk over every key,
started again after each increment that finds the previous walk finished
(``MemoryStorage.__schedule_expiry``). A rate limit per user keeps a key or two
per user for up to a day, so that walk is O(users) of event-loop time on every
booking, gift and chat message: 0.9 ms per hit at 10,000 users' keys and 5 ms
at 50,000 on the 2-core machine (docs/performance.md). ``SweptMemoryStorage``
starts it at most once per ``sweep_s`` instead. Nothing is counted wrong
meanwhile: ``get``, which every check reads through, drops an expired key
itself; the walk only frees the memory of keys nobody reads again.
"""

from __future__ import annotations

from time import monotonic

from limits.aio.storage import MemoryStorage

#: How often expired keys of users who went quiet are freed.
SWEEP_S = 60.0


class SweptMemoryStorage(MemoryStorage):
    """``limits``' memory storage with its expiry walk at most every ``sweep_s``."""

    def __init__(self, sweep_s: float = SWEEP_S) -> None:
        self.sweep_s = sweep_s
        self._next_sweep = 0.0  # the first increment starts one, as the library does
        super().__init__()

    # The library's own name for it, mangled: what ``incr``, ``decr``,
    # ``acquire_entry`` and ``__setstate__`` call (the sliding window's entry
    # goes through ``incr``).
    async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 (the library's name)
        now = monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_s
        # mypy does not see a mangled name from outside its class.
        await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]
