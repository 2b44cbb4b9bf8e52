"""MariaDB and Redis for the benches: the tests' throwaway servers
(``tests/services.py``: ``mariadbd`` and ``redis-server`` on free 127.0.0.1
ports, data in a folder of the bench's), or servers of your own:
``BENCH_MARIADB_URL`` (a full SQLAlchemy URL, its database included, used as
is) and ``BENCH_REDIS_URL``. The host's own MariaDB and Redis are never used.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pymysql  # type: ignore[import-untyped]

# The benches run as scripts from bench/: the repository root makes
# tests.services importable, one implementation for tests and benches.
sys.path.append(str(Path(__file__).resolve().parent.parent))
from tests.services import HOST, run_mariadb, run_redis


@contextlib.contextmanager
def mariadb_database(folder: Path, name: str) -> Iterator[str]:
    """``$BENCH_MARIADB_URL``, or database ``name`` on a throwaway MariaDB
    whose data lives in ``folder`` (gone with the server afterwards)."""
    given = os.environ.get("BENCH_MARIADB_URL")
    if given:
        yield given
        return
    with run_mariadb(folder) as server:
        port = int(server.rsplit(":", 1)[1])
        conn = pymysql.connect(host=HOST, port=port, user="root", password="", autocommit=True)
        with contextlib.closing(conn), conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield f"{server}/{name}"


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """``$BENCH_REDIS_URL``, or the URL of a throwaway Redis working in ``folder``."""
    given = os.environ.get("BENCH_REDIS_URL")
    if given:
        yield given
        return
    with run_redis(folder) as url:
        yield url
