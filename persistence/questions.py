"""Store contract for the icebreaker question bank."""

from __future__ import annotations

import abc
from collections.abc import Iterable

from persistence.models import Question


class QuestionStore(abc.ABC):
    @abc.abstractmethod
    async def add(self, text: str) -> Question: ...

    @abc.abstractmethod
    async def count(self) -> int: ...

    @abc.abstractmethod
    async def random(self) -> Question | None:
        """A question drawn at random, without scanning the whole table."""

    async def seed(self, texts: Iterable[str]) -> int:
        """Add ``texts`` when the bank is empty; returns how many were added."""
        if await self.count():
            return 0
        added = 0
        for text in texts:
            await self.add(text)
            added += 1
        return added
