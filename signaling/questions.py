"""The icebreaker question bank: built-in questions and the random route."""

from __future__ import annotations

from aiohttp import web

from signaling.errors import ApiError
from signaling.http import ok, require_user
from signaling.keys import STORES

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
    return ok(question=question.to_wire())
