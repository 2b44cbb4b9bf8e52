"""Fire-and-forget work of a media backend, kept, logged and stopped in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    """Strong references to background tasks (the loop keeps only weak ones),
    a log line for each that fails, and a bounded stop at shut-down."""

    def __init__(self, logger: logging.Logger, failure_event: str) -> None:
        self._logger = logger
        self._failure_event = failure_event
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._logger.error(
                "task %s failed",
                task.get_name(),
                exc_info=task.exception(),
                extra={"event": self._failure_event, "task": task.get_name()},
            )

    async def stop(self, grace_s: float = 0.0) -> None:
        """Let running tasks finish for up to ``grace_s``, then cancel the rest."""
        pending = set(self._tasks)
        if pending and grace_s > 0:
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
