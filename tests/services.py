"""Throwaway MariaDB and Redis servers for the tests (and the benches).

``run_mariadb(folder)`` and ``run_redis(folder)`` start Debian's installed
binaries (``/usr/sbin/mariadbd``, ``redis-server``) as the current user, root or
not, on a free 127.0.0.1 port with everything they write inside ``folder``, wait
until they answer, yield their URL and stop them at the end (mirakuru runs and
stops the processes). The host's own MariaDB and Redis, their configuration
files, sockets and logins are never read or touched: both servers start with no
configuration file at all (``--no-defaults``; ``redis-server`` without one).

A missing binary raises :class:`MissingBinaryError`, naming the Debian package
to install; nothing is ever skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
from mirakuru import TCPExecutor
from mirakuru.exceptions import ExecutorError

HOST = "127.0.0.1"
MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = "mariadb-install-db"
REDIS_SERVER = "redis-server"
#: How long a server may take to answer after it was started.
START_TIMEOUT_S = 60
#: mariadbd's TCP login for root: the data folder's own account table, made
#: by mariadb-install-db, gets root@127.0.0.1 without a password.
MARIADB_INIT_SQL = """\
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
"""


class MissingBinaryError(RuntimeError):
    """A server binary the tests start is not installed."""


class ServerStartError(RuntimeError):
    """A throwaway server did not start or did not answer in time."""


def require_binary(name: str, package: str) -> str:
    """The path of ``name`` (a path or a command on PATH), or a loud error
    that names the Debian package which installs it."""
    found = shutil.which(name)
    if found is None:
        raise MissingBinaryError(
            f"{name} is not installed: the tests start their own server from it. "
            f"Install Debian's {package} package (apt-get install {package}; "
            "bash .ci/ensure-services does it)."
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class _Server(TCPExecutor):
    """A TCP server that counts as started once ``ready()`` answers too: a
    listening socket alone can come before the server accepts logins."""

    def __init__(self, command: list[str], port: int, ready: Callable[[], bool]) -> None:
        # Every stream goes to a file or nowhere: a pipe nobody reads would
        # block the server once it fills.
        super().__init__(
            command,
            host=HOST,
            port=port,
            timeout=START_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ready = ready

    def after_start_check(self) -> bool:
        return bool(super().after_start_check()) and self._ready()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


@contextlib.contextmanager
def _running(server: _Server, what: str, log: Path) -> Iterator[None]:
    try:
        server.start()
    except ExecutorError as exc:
        server.kill()
        detail = f"{exc}\n--- {log} ---\n{_tail(log)}"
        raise ServerStartError(f"{what} did not start: {detail}") from None
    try:
        yield
    finally:
        server.stop()


def _mariadb_answers(port: int) -> bool:
    try:
        conn = pymysql.connect(host=HOST, port=port, user="root", password="", connect_timeout=2)
    except pymysql.err.MySQLError:
        return False
    with contextlib.closing(conn), conn.cursor() as cur:
        cur.execute("SELECT 1")
    return True


@contextlib.contextmanager
def run_mariadb(folder: Path) -> Iterator[str]:
    """A fresh MariaDB server, data in ``folder``; yields its SQLAlchemy URL
    without a database: ``mysql+aiomysql://root@127.0.0.1:<port>``."""
    mariadbd = require_binary(MARIADBD, "mariadb-server")
    install_db = require_binary(MARIADB_INSTALL_DB, "mariadb-server")
    folder.mkdir(parents=True, exist_ok=True)
    datadir, log = folder / "data", folder / "error.log"
    # mariadbd refuses to run as root unless told to; any other user runs it
    # as itself.
    as_user = ["--user=root"] if os.geteuid() == 0 else []
    installed = subprocess.run(
        [
            install_db,
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *as_user,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    if installed.returncode != 0:
        raise ServerStartError(
            f"{install_db} failed ({installed.returncode}) for {datadir}:\n"
            f"{(installed.stdout + installed.stderr)[-3000:]}"
        )
    init_sql = folder / "init.sql"
    init_sql.write_text(MARIADB_INIT_SQL)
    port = free_port()
    command = [
        mariadbd,
        "--no-defaults",  # first: no /etc/mysql, so nothing of the host's server
        f"--datadir={datadir}",
        f"--socket={folder / 'mysqld.sock'}",
        f"--pid-file={folder / 'mysqld.pid'}",
        f"--tmpdir={folder}",
        f"--log-error={log}",
        f"--bind-address={HOST}",
        f"--port={port}",
        f"--init-file={init_sql}",
        "--skip-name-resolve",
        # What Debian's packaged server sets, so the tests see the same.
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        # Throwaway data: no flush to disk at each commit.
        "--innodb-flush-log-at-trx-commit=2",
        "--innodb-doublewrite=0",
        *as_user,
    ]
    try:
        with _running(_Server(command, port, lambda: _mariadb_answers(port)), "mariadbd", log):
            yield f"mysql+aiomysql://root@{HOST}:{port}"
    finally:
        # Over 100 MB of InnoDB files per run; the log stays for a post-mortem.
        shutil.rmtree(datadir, ignore_errors=True)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def run_redis(folder: Path) -> Iterator[str]:
    """A fresh Redis server that keeps nothing on disk, its working folder
    ``folder``; yields its URL: ``redis://127.0.0.1:<port>/0``."""
    redis_server = require_binary(REDIS_SERVER, "redis-server")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    port = free_port()
    command = [
        redis_server,  # no configuration file: none of the host's settings
        "--port", str(port),
        "--bind", HOST,
        "--unixsocket", "",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(folder),
        "--logfile", str(log),
        "--daemonize", "no",
    ]  # fmt: skip
    with _running(_Server(command, port, lambda: _redis_answers(port)), "redis-server", log):
        yield f"redis://{HOST}:{port}/0"
