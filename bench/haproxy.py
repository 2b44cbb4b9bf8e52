"""HAProxy in front of several server processes, for benches and tests.

``haproxy_config(frontend_port, backends)`` writes the configuration: HTTP mode,
``balance url_param call_id`` with ``hash-type consistent`` (PROTOCOL.md's
routing hint: both users of a call carry ``?call_id=<id>`` in the Socket.IO
handshake, so they land on the same process; requests without it are spread
round-robin), websocket-friendly timeouts (``timeout tunnel 1h``) and health
checks on ``GET /api/health``.

``run_haproxy(backends)`` starts the real binary (``/usr/sbin/haproxy``, Debian
package ``haproxy``) in the foreground with that configuration in a temporary
folder, on a free 127.0.0.1 port, waits until it answers ``/api/health`` through
a healthy backend, yields the port and stops it at the end::

    with run_haproxy([8081, 8082]) as port:
        ...  # http://127.0.0.1:{port}

Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

HAPROXY = "/usr/sbin/haproxy"
Backend = int | str | tuple[str, int]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _address(backend: Backend) -> str:
    """``127.0.0.1:<port>`` from a port, a ``host:port`` string or a (host, port) pair;
    only loopback hosts."""
    if isinstance(backend, int):
        host, port = "127.0.0.1", backend
    elif isinstance(backend, str):
        host, _, raw = backend.rpartition(":")
        host, port = host or "127.0.0.1", int(raw)
    else:
        host, port = backend[0], int(backend[1])
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"only 127.0.0.1 backends, not {host!r}")
    if not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    return f"127.0.0.1:{port}"


def haproxy_config(
    frontend_port: int,
    backends: Sequence[Backend],
    *,
    maxconn: int | None = None,
    check_interval_ms: int = 2000,
    check_timeout_s: float = 5.0,
) -> str:
    """An HAProxy configuration: 127.0.0.1:``frontend_port`` in front of ``backends``,
    one process per call by ``call_id`` (consistent hashing). A server is taken out
    after three health checks in a row that fail or take over ``check_timeout_s``
    (a busy event loop answers ``/api/health`` late; with HAProxy's default, the
    check interval, both processes of a loaded cluster were marked down in turns)."""
    if not backends:
        raise ValueError("no backends")
    if maxconn is None:
        maxconn = default_maxconn()
    servers = "\n".join(
        f"    server s{i} {_address(b)} check inter {check_interval_ms}ms fall 3 rise 2"
        for i, b in enumerate(backends, 1)
    )
    return f"""\
global
    maxconn {maxconn}
    # no chroot, user or daemon: it runs in the foreground as a child process

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # an upgraded websocket is a tunnel: an idle call socket may stay open long
    timeout tunnel 1h
    timeout client-fin 5s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 10s
    timeout check {check_timeout_s:g}s

frontend calls
    bind 127.0.0.1:{frontend_port}
    maxconn {maxconn}
    default_backend signaling

backend signaling
    # the routing hint: ?call_id=<id> in the Socket.IO handshake URL
    balance url_param call_id
    hash-type consistent
    option httpchk GET /api/health
    http-check expect status 200
    # a connection refused by a process on its way down goes to the other one
    option redispatch
    retries 2
    default-server maxconn {maxconn}
{servers}
"""


def default_maxconn() -> int:
    """As many connections as this process's file descriptor limit allows HAProxy
    (two descriptors per proxied connection, it refuses to start otherwise)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return 20000
    return max(256, min(20000, (hard - 200) // 2))


def _get_health(port: int, timeout: float = 1.0) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/api/health")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


@contextlib.contextmanager
def run_haproxy(
    backends: Sequence[Backend],
    *,
    port: int | None = None,
    startup_timeout: float = 15.0,
    log: Path | None = None,
    binary: str = HAPROXY,
    pid_out: list[int] | None = None,
) -> Iterator[int]:
    """Run HAProxy in front of ``backends`` until the block ends; yields its port.
    ``pid_out``, if given, receives HAProxy's pid (for CPU or memory figures)."""
    exe = binary if Path(binary).exists() else shutil.which("haproxy")
    if not exe:
        raise FileNotFoundError(f"haproxy not found ({binary}; apt-get install haproxy)")
    port = port or _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-haproxy-") as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        cfg.write_text(haproxy_config(port, backends))
        check = subprocess.run(
            [exe, "-c", "-q", "-f", str(cfg)], capture_output=True, timeout=30, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejected its config: {check.stderr.decode()[-2000:]}")
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL
            # -db: foreground, no daemon; -W would add a master process, not wanted here
            proc = subprocess.Popen(
                [exe, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT
            )
            try:
                deadline = time.monotonic() + startup_timeout
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"haproxy exited with {proc.returncode}")
                    if _get_health(port) == 200:
                        break
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"haproxy on port {port}: no healthy backend")
                    time.sleep(0.1)
                if pid_out is not None:
                    pid_out.append(proc.pid)
                yield port
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
