"""The icebreaker question bank: built-in questions, ``QuestionBank`` (a
random question, the admins' additions), the random route and the admins'
route that adds questions."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from persistence.models import Question
from persistence.questions import QuestionStore
from signaling.calls.schemas import Trimmed
from signaling.errors import ApiError, forbidden
from signaling.http import ok, read_body, require_user
from signaling.wire import question_wire

logger = logging.getLogger(__name__)

#: The ``questions.text`` column holds at most this many characters.
MAX_QUESTION = 500

#: Seeded into an empty bank at start-up.
BUILT_IN_QUESTIONS = (
    "What was the best part of your week?",
    "If you could have dinner with anyone, alive or not, who would it be?",
    "What is a small thing that always makes you happy?",
    "Which place would you love to visit next, and why?",
    "What is the last song you had stuck in your head?",
    "Are you a morning person or a night owl?",
    "What is your favourite chocolate, honestly?",
    "What hobby would you pick up if you had more time?",
    "What is the best gift you have ever received?",
    "What is a film you could watch again and again?",
    "Coffee or tea, and how do you take it?",
    "What is something you are proud of that few people know?",
    "What would your perfect weekend look like?",
    "What is the most spontaneous thing you have ever done?",
    "Which food could you eat every day?",
    "What did you want to be when you were a child?",
    "What is a skill you would like to learn this year?",
    "Beach holiday or mountain holiday?",
    "What is the kindest thing a stranger has done for you?",
    "What is one thing that is always in your bag?",
)


class QuestionBank:
    """The bank's use cases: a question drawn at random for anyone, new
    questions from admins only."""

    def __init__(self, *, questions: QuestionStore, admin_ids: Iterable[str]) -> None:
        self._questions = questions
        self._admin_ids = frozenset(admin_ids)

    async def random(self) -> Question:
        question = await self._questions.random()
        if question is None:
            raise ApiError("not_found", "the question bank is empty")
        return question

    def check_admin(self, user_id: str) -> None:
        if user_id not in self._admin_ids:
            raise forbidden("only admins add questions")

    async def add(self, user_id: str, text: str) -> Question:
        self.check_admin(user_id)
        question = await self._questions.add(text)
        logger.info(
            "question %s added",
            question.id,
            extra={"event": "question.added", "question_id": question.id, "admin_id": user_id},
        )
        return question


#: The question bank (while the app runs).
QUESTION_BANK = web.AppKey("question_bank", QuestionBank)

routes = web.RouteTableDef()


@routes.get("/api/questions/random")
async def random_question(request: web.Request) -> web.Response:
    require_user(request)
    question = await request.app[QUESTION_BANK].random()
    return ok(question=question_wire(question))


class NewQuestion(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUESTION), Trimmed]


@routes.post("/api/questions")
async def add_question(request: web.Request) -> web.Response:
    user_id = require_user(request)
    bank = request.app[QUESTION_BANK]
    bank.check_admin(user_id)  # before the body: a non-admin gets 403 whatever they sent
    body = await read_body(request, NewQuestion)
    question = await bank.add(user_id, body.text)
    return ok(201, question=question_wire(question))
