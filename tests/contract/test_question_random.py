"""``QuestionStore.random`` on SQL stays uniform when deletions left gaps in the ids."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from persistence.migrate import upgrade
from persistence.sql import SqlQuestionStore, create_engine, questions_table


async def test_random_is_uniform_over_questions_despite_id_gaps(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'q.sqlite3'}")
    await upgrade(engine)
    try:
        store = SqlQuestionStore(engine)
        for i in range(1, 11):
            await store.add(f"q{i}")
        # Ids 1, 9 and 10 remain: a random point in the id range would pick 9
        # eight times out of ten.
        async with engine.begin() as conn:
            await conn.execute(questions_table.delete().where(questions_table.c.id.between(2, 8)))
        draws = Counter()
        for _ in range(900):
            question = await store.random()
            assert question is not None
            draws[question.id] += 1
        assert set(draws) == {1, 9, 10}
        assert all(220 <= n <= 380 for n in draws.values()), draws
    finally:
        await engine.dispose()
