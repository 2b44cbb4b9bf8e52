"""The SQL store of the icebreaker question bank."""

from __future__ import annotations

import random

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.models import Question
from persistence.questions import QuestionStore
from persistence.sql.tables import questions_table


class SqlQuestionStore(QuestionStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, text: str) -> Question:
        async with self._engine.begin() as conn:
            result = await conn.execute(questions_table.insert().values(text=text))
        return Question(result.inserted_primary_key[0], text)  # type: ignore[index]

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count(questions_table.c.id)))).scalar_one()
            )

    async def random(self) -> Question | None:
        # A uniform offset into the count, then that row in primary-key order:
        # every question equally likely whatever the gaps deletions left in
        # the ids, and the database walks the id index, never sorts or scans
        # the rows (no ORDER BY RAND()).
        q = questions_table.c
        async with self._engine.connect() as conn:
            total = int((await conn.execute(sa.select(sa.func.count(q.id)))).scalar_one())
            if total == 0:
                return None
            offset = random.randrange(total)
            row = (
                await conn.execute(sa.select(q.id, q.text).order_by(q.id).limit(1).offset(offset))
            ).one_or_none()
            if row is None:  # a delete between the two statements: take the last one
                row = (
                    await conn.execute(sa.select(q.id, q.text).order_by(q.id.desc()).limit(1))
                ).one_or_none()
        return Question(row.id, row.text) if row is not None else None

    async def all(self) -> list[Question]:
        q = questions_table.c
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(q.id, q.text).order_by(q.id))).all()
        return [Question(row.id, row.text) for row in rows]
