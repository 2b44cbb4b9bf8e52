"""The database engine with each dialect's settings, and the retry policy of
transactions the database rolled back."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from persistence.sql.aiosqlite_fence import use_one_trip_cursors

logger = logging.getLogger(__name__)


def is_mysql(engine: AsyncEngine | AsyncConnection) -> bool:
    """MySQL or MariaDB (``mysql+aiomysql://`` names both)."""
    return engine.dialect.name in ("mysql", "mariadb")


def create_engine(url: str) -> AsyncEngine:
    """An async engine with the settings each dialect needs to be safe."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # One connection: SQLite has a single writer anyway, and a second
        # pooled connection would wait for the write lock in SQLite's busy
        # handler (sleeps of up to 100 ms) instead of in an asyncio queue.
        # pool_reset_on_return=None: pysqlite opens a transaction only before
        # a write, and every write here commits, so the ROLLBACK on return
        # would be a thread round trip that does nothing.
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            pool_reset_on_return=None,
        )

        # One trip to aiosqlite's thread per statement, not one per DB-API call.
        use_one_trip_cursors(engine)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the single writer; busy_timeout
            # makes a second writer wait instead of failing.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        from pymysql.constants.CLIENT import FOUND_ROWS  # type: ignore[import-untyped]

        # FOUND_ROWS: an UPDATE reports the rows it matched, not only the rows
        # whose values changed, so a compare-and-set that rewrites identical
        # values still counts as a win. (SQLAlchemy's MySQL dialects add it
        # too; stated here because the stores depend on it.) utf8mb4: 4-byte
        # characters (emoji) in ids and messages, whatever the server default.
        connect_args["client_flag"] = FOUND_ROWS
        if "charset" not in parsed.query:
            connect_args["charset"] = "utf8mb4"
    # pre_ping + recycle: MySQL closes idle connections after wait_timeout
    # (8 hours by default) and proxies often sooner; a pooled connection is
    # tested before use and never kept for more than an hour.
    return create_async_engine(
        url, pool_pre_ping=True, pool_recycle=3600, connect_args=connect_args
    )


#: MySQL error codes after which InnoDB has rolled the transaction back and a
#: retry of the whole transaction is the documented remedy: a deadlock, a
#: lock wait timeout.
_MYSQL_RETRYABLE = frozenset({1213, 1205})


def is_retryable(exc: sa.exc.DBAPIError) -> bool:
    """Whether a failed transaction may simply be run again."""
    args: tuple[Any, ...] = getattr(exc.orig, "args", ())
    return bool(args) and args[0] in _MYSQL_RETRYABLE


class LostRaceError(Exception):
    """A concurrent writer took a unique key this transaction needed first:
    running the transaction again will find the winner's row."""


def _worth_another_attempt(exc: BaseException) -> bool:
    if isinstance(exc, LostRaceError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and is_retryable(exc)


def transaction_attempts(operation: str, attempts: int = 8, **ids: Any) -> AsyncRetrying:
    """The attempts of one write transaction: ``await
    transaction_attempts(...)(transaction, *args)`` runs it again, at once,
    after a :class:`LostRaceError` or a MySQL error after which InnoDB rolled
    it back (each logged as ``db.retry``); after ``attempts`` the last error
    is raised."""

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        code = getattr(getattr(exc, "orig", None), "args", (None,))[0]
        logger.info(
            "%s retried after %s",
            operation,
            f"MySQL error {code}" if code is not None else "a lost race",
            extra={"event": "db.retry", "operation": operation, "code": code, **ids},
        )

    return AsyncRetrying(
        retry=retry_if_exception(_worth_another_attempt),
        stop=stop_after_attempt(attempts),
        before_sleep=log_retry,
        reraise=True,
    )
