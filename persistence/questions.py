"""Store contract for the icebreaker question bank."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable

from persistence.models import Question

logger = logging.getLogger(__name__)


class QuestionStore(abc.ABC):
    @abc.abstractmethod
    async def add(self, text: str) -> Question: ...

    @abc.abstractmethod
    async def count(self) -> int: ...

    @abc.abstractmethod
    async def random(self) -> Question | None:
        """A question drawn at random, without scanning the whole table."""

    @abc.abstractmethod
    async def all(self) -> list[Question]:
        """Every question, in id order."""

    async def seed(self, texts: Iterable[str]) -> int:
        """Add ``texts`` when the bank is empty; returns how many were added."""
        if await self.count():
            return 0
        added = 0
        for text in texts:
            await self.add(text)
            added += 1
        return added


class CachedQuestionStore(QuestionStore):
    """The bank in memory: ``random`` never waits on the database, which
    matters at the instant a call goes live. Additions through this store are
    seen at once; additions made by another process after ``max_age_s``.
    """

    def __init__(self, store: QuestionStore, max_age_s: float = 60.0) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._questions: list[Question] = []
        self._loaded_at = float("-inf")
        self._reload: asyncio.Task[None] | None = None

    @property
    def store(self) -> QuestionStore:
        """The store behind the cache."""
        return self._store

    async def load(self) -> int:
        self._questions = await self._store.all()
        self._loaded_at = time.monotonic()
        return len(self._questions)

    async def add(self, text: str) -> Question:
        question = await self._store.add(text)
        self._questions.append(question)
        return question

    async def count(self) -> int:
        return await self._store.count()

    async def all(self) -> list[Question]:
        return list(self._questions)

    async def random(self) -> Question | None:
        if not self._questions and self._loaded_at == float("-inf"):
            await self.load()  # never loaded: the first caller waits once
        elif time.monotonic() - self._loaded_at > self._max_age_s and self._reload is None:
            # Reload behind: this caller gets a question from the bank as it is.
            self._reload = asyncio.get_running_loop().create_task(self._reload_behind())
        return random.choice(self._questions) if self._questions else None

    async def _reload_behind(self) -> None:
        try:
            await self.load()
        except Exception as exc:  # a stale bank beats no question
            logger.warning("question bank reload failed: %s", exc)
            self._loaded_at = time.monotonic()
        finally:
            self._reload = None

    async def close(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload
