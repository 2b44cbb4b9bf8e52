"""The question bank's use cases over a memory store, without HTTP: a random
question, the empty bank, and the rule that only admins add questions."""

from __future__ import annotations

import logging

import pytest

from persistence.memory import MemoryQuestionStore
from signaling.errors import ApiError
from signaling.questions import QuestionBank


def bank_over(store: MemoryQuestionStore) -> QuestionBank:
    return QuestionBank(questions=store, admin_ids=frozenset({"admin"}))


async def test_a_random_question_comes_from_the_store() -> None:
    store = MemoryQuestionStore()
    await store.seed(["Tea or coffee?", "Beach or mountains?"])
    question = await bank_over(store).random()
    assert question in await store.all()


async def test_an_empty_bank_is_not_found() -> None:
    with pytest.raises(ApiError) as raised:
        await bank_over(MemoryQuestionStore()).random()
    assert (raised.value.code, raised.value.message) == ("not_found", "the question bank is empty")


async def test_an_admin_adds_a_question_and_it_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryQuestionStore()
    with caplog.at_level(logging.INFO, logger="signaling.questions"):
        question = await bank_over(store).add("admin", "What made you laugh today?")
    assert await store.all() == [question]
    assert question.text == "What made you laugh today?"
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "question.added"]
    assert record.getMessage() == f"question {question.id} added"
    assert (record.question_id, record.admin_id) == (question.id, "admin")


async def test_only_admins_add_questions() -> None:
    store = MemoryQuestionStore()
    bank = bank_over(store)
    bank.check_admin("admin")  # no error
    with pytest.raises(ApiError) as checked:
        bank.check_admin("alice")
    with pytest.raises(ApiError) as added:
        await bank.add("alice", "Sneaky?")
    for raised in (checked, added):
        assert (raised.value.code, raised.value.message) == (
            "forbidden",
            "only admins add questions",
        )
    assert await store.all() == []


async def test_no_admins_means_nobody_adds() -> None:
    bank = QuestionBank(questions=MemoryQuestionStore(), admin_ids=())
    with pytest.raises(ApiError, match="only admins"):
        await bank.add("admin", "Anyone?")
