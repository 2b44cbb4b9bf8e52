"""persistence.sql.transaction_attempts: which failures run a transaction
again, how often, and what is raised in the end."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from persistence.sql import LostRaceError, transaction_attempts


def mysql_error(code: int) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError("UPDATE ...", None, Exception(code, "from the server"))


class Transaction:
    """Fails with each of ``failures`` in turn, then answers its attempt number."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self, value: str) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return f"{value} on attempt {self.calls}"


async def test_a_lost_race_and_a_deadlock_run_it_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "persistence.sql")
    transaction = Transaction(LostRaceError("room 1"), mysql_error(1213))
    result = await transaction_attempts("chat_message.append", room_id=1)(transaction, "sent")
    assert result == "sent on attempt 3"
    retries = [r for r in caplog.records if getattr(r, "event", "") == "db.retry"]
    assert [(r.operation, r.code, r.room_id) for r in retries] == [  # type: ignore[attr-defined]
        ("chat_message.append", None, 1),
        ("chat_message.append", 1213, 1),
    ]


async def test_any_other_error_is_raised_at_once() -> None:
    duplicate = mysql_error(1062)
    transaction = Transaction(duplicate)
    with pytest.raises(sa.exc.DBAPIError) as raised:
        await transaction_attempts("chat_room.create")(transaction, "x")
    assert raised.value is duplicate and transaction.calls == 1
    with pytest.raises(ValueError, match="bug"):
        await transaction_attempts("chat_room.create")(Transaction(ValueError("bug")), "x")


async def test_the_last_error_is_raised_once_the_attempts_are_spent() -> None:
    transaction = Transaction(*(LostRaceError(f"race {n}") for n in range(5)))
    with pytest.raises(LostRaceError, match="race 2"):
        await transaction_attempts("push_subscription.add", attempts=3)(transaction, "x")
    assert transaction.calls == 3
