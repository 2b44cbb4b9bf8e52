"""The icebreaker question bank: built-in questions, the random route and
the admins' route that adds questions."""

from __future__ import annotations

import logging
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from signaling.calls.schemas import Trimmed
from signaling.errors import ApiError, forbidden
from signaling.http import ok, read_body, require_user
from signaling.keys import SETTINGS, STORES
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

routes = web.RouteTableDef()


@routes.get("/api/questions/random")
async def random_question(request: web.Request) -> web.Response:
    require_user(request)
    question = await request.app[STORES].questions.random()
    if question is None:
        raise ApiError("not_found", "the question bank is empty")
    return ok(question=question_wire(question))


class NewQuestion(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUESTION), Trimmed]


@routes.post("/api/questions")
async def add_question(request: web.Request) -> web.Response:
    user_id = require_user(request)
    if user_id not in request.app[SETTINGS].admin_ids:
        raise forbidden("only admins add questions")
    body = await read_body(request, NewQuestion)
    question = await request.app[STORES].questions.add(body.text)
    logger.info(
        "question %s added",
        question.id,
        extra={"event": "question.added", "question_id": question.id, "admin_id": user_id},
    )
    return ok(201, question=question_wire(question))
