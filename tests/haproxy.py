"""A real HAProxy (Debian's ``/usr/sbin/haproxy``) in front of test servers.

``run_haproxy({"one": port1, "two": port2}, folder)`` writes a configuration
into ``folder``, starts the binary in the foreground as the current user on a
free 127.0.0.1 port and stops it at the end. The rules are the ones
``docker/haproxy.cfg`` uses in the compose stack (and how Jitsi shards its
rooms): every request is sent by a hash of its ``call_id`` query parameter on a
consistent-hash ring, so both users of a call (whose ``/call`` connections
carry ``?call_id=<id>``) reach the same server process; requests without it
are spread round-robin. Health checks (``GET /api/health``) every 200 ms take
a dead server out within about half a second, and a connection that fails is
retried on another server (``option redispatch``).

HAProxy's own stats page (``/stats;csv`` on ``stats_port``) tells which
servers it believes are up. Without the binary the caller's test fails and
says how to install it: it is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.support import free_port, stop_process

HAPROXY = Path("/usr/sbin/haproxy")
#: How often HAProxy asks each server's health route, and how many failures
#: in a row mark it down (so a killed server is out within about 0.5 s).
CHECK_INTER_MS = 200
CHECK_FALL = 2
CHECK_RISE = 2
#: The backend's name in the configuration (and on the stats page).
BACKEND = "signaling"


def haproxy_config(servers: Mapping[str, int], port: int, stats_port: int) -> str:
    """The configuration: a frontend on ``127.0.0.1:port``, one backend with
    ``servers`` (name -> port on 127.0.0.1), a stats page on ``stats_port``."""
    lines = "\n".join(
        f"    server {name} 127.0.0.1:{server_port} check" for name, server_port in servers.items()
    )
    return f"""\
global
    maxconn 2048
    # one line per request or tunnel on stderr, which run_haproxy keeps in a file
    log stderr format raw local0 info
    hard-stop-after 5s

defaults
    mode http
    log global
    option httplog
    option dontlognull
    # the client's address for the servers, as docker/haproxy.cfg
    option forwardfor
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # an upgraded (websocket) connection stays open for as long as the call
    timeout tunnel 1h
    timeout client-fin 5s
    timeout http-request 10s
    # a connection refused by a dead server is retried, each retry on another one
    retries 3
    option redispatch 1
    default-server inter {CHECK_INTER_MS}ms fastinter 100ms downinter {CHECK_INTER_MS}ms \
fall {CHECK_FALL} rise {CHECK_RISE}

frontend calls
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    # both users of a call on one process: a hash of ?call_id= on a ring;
    # round-robin for requests without it
    balance url_param call_id
    hash-type consistent
    option httpchk
    http-check send meth GET uri /api/health
    http-check expect status 200
{lines}

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


def require_haproxy() -> None:
    """Fail (never skip) without Debian's HAProxy."""
    if not HAPROXY.exists():
        pytest.fail(
            f"{HAPROXY} is missing: the load-balancer tests need Debian's haproxy package "
            "(run .ci/ensure-haproxy, or apt-get install -y haproxy)",
            pytrace=False,
        )


@dataclass
class RunningHAProxy:
    """A started HAProxy: its frontend port, stats page and log."""

    port: int
    stats_port: int
    servers: dict[str, int]
    process: subprocess.Popen[bytes]
    config: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    async def states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it: ``UP``, ``DOWN``, ``UP 1/2``…"""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.stats_port}/stats;csv") as response,
        ):
            assert response.status == 200, response.status
            text = await response.text()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] in self.servers
        }

    async def wait_for(self, wanted: Mapping[str, str], timeout: float = 10) -> None:
        """Until every server named in ``wanted`` has that status (``UP``/``DOWN``)."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"haproxy exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            seen = await self.states()
            if all(seen.get(name) == status for name, status in wanted.items()):
                return
            await asyncio.sleep(CHECK_INTER_MS / 4000)
        raise AssertionError(f"haproxy sees {seen}, not {dict(wanted)}:\n{self.log_tail()}")

    async def all_up(self, timeout: float = 10) -> None:
        await self.wait_for(dict.fromkeys(self.servers, "UP"), timeout)


def _wait_for_listener(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            raise AssertionError(f"haproxy exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"haproxy does not listen on 127.0.0.1:{port}")


@contextlib.contextmanager
def run_haproxy(servers: Mapping[str, int], folder: Path) -> Iterator[RunningHAProxy]:
    """Start HAProxy in front of ``servers`` (name -> port on 127.0.0.1), with
    its configuration and log in ``folder``; stop it at the end."""
    require_haproxy()
    folder.mkdir(parents=True, exist_ok=True)
    port, stats_port = free_port(), free_port()
    while stats_port == port:
        stats_port = free_port()
    config = folder / "haproxy.cfg"
    config.write_text(haproxy_config(servers, port, stats_port))
    check = subprocess.run(
        [str(HAPROXY), "-c", "-q", "-f", str(config)],
        check=False,
        capture_output=True,
        timeout=30,
    )
    assert check.returncode == 0, (check.stdout + check.stderr).decode(errors="replace")
    log = folder / "haproxy.log"
    with log.open("wb") as sink:
        # -db: stay in the foreground, no daemon; no user/chroot: the current user.
        proc = subprocess.Popen(
            [str(HAPROXY), "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_listener(port, proc, log)
        yield RunningHAProxy(port, stats_port, dict(servers), proc, config, log)
    finally:
        stop_process(proc, grace_s=5)
