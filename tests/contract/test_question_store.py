"""The QuestionStore contract, run against every backend."""

from __future__ import annotations

from collections import Counter

from persistence.questions import QuestionStore

TEXTS = [f"Question number {i}?" for i in range(1, 6)]


async def test_an_empty_bank_has_no_question(questions: QuestionStore) -> None:
    assert await questions.count() == 0
    assert await questions.random() is None


async def test_seed_fills_only_an_empty_bank(questions: QuestionStore) -> None:
    assert await questions.seed(TEXTS) == len(TEXTS)
    assert await questions.count() == len(TEXTS)
    assert await questions.seed(["Another?", "And another?"]) == 0
    assert await questions.count() == len(TEXTS)


async def test_add_returns_the_stored_question(questions: QuestionStore) -> None:
    first, second = await questions.add("First?"), await questions.add("Second?")
    assert first.id != second.id
    assert (first.text, second.text) == ("First?", "Second?")
    assert await questions.count() == 2


async def test_random_spreads_over_every_question(questions: QuestionStore) -> None:
    await questions.seed(TEXTS)
    draws: Counter[tuple[int, str]] = Counter()
    for _ in range(500):
        question = await questions.random()
        assert question is not None
        draws[(question.id, question.text)] += 1
    assert sorted(text for _, text in draws) == sorted(TEXTS)
    # 100 expected per question; below 40 is not bad luck (p < 1e-12).
    assert min(draws.values()) >= 40, draws


async def test_all_lists_every_question_in_id_order(questions: QuestionStore) -> None:
    await questions.seed(TEXTS)
    listed = await questions.all()
    assert [q.text for q in listed] == list(TEXTS)
    assert [q.id for q in listed] == sorted(q.id for q in listed)
