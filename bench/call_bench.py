"""The call signaling benchmark of docs/performance.md, in one run.

Starts each server as a child process on a free 127.0.0.1 port and drives it
with ``bench/loadgen.py``:

(a) saturation: the bare python-socketio relay (``bench/bare_relay.py``) and
    the real server, alternately ``--repeat`` times each, same generator and
    calls; reports signals relayed per second (median) and their ratio;
(b) steady load on the real server: ``--rate`` new calls per second up to
    ``--max-concurrent`` calls in flight; reports relay latency p50/p99 and
    join-to-countdown p50/p99.

Usage: .venv/bin/python bench/call_bench.py [--calls 300] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SECRET = "bench-secret-0123456789abcdef0123456789"
#: A load generator's thousands of simulated users all come from 127.0.0.1;
#: the bound on connections per address outside a namespace is for real
#: clients, each at an address of its own (docs/configuration.md).
ONE_ADDRESS_ENV = {"SIGNALING_PENDING_PER_ADDRESS": "0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@contextlib.contextmanager
def child(
    command: list[str], port: int, env: dict[str, str], log: Path | None = None
) -> Iterator[int]:
    """Run ``command`` until the block ends, once something listens on ``port``;
    its output goes to ``log`` (else nowhere). Yields its pid."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL
        proc = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(port, proc)
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def bare_relay(port: int) -> contextlib.AbstractContextManager[int]:
    command = [sys.executable, str(BENCH / "bare_relay.py"), "--port", str(port)]
    return child(command, port, {})


def real_server(port: int, folder: Path, countdown_s: float, limit_s: float) -> Any:
    database = folder / f"bench-{port}.sqlite3"
    env = {
        "SIGNALING_JWT_SECRET": SECRET,
        "SIGNALING_PORT": str(port),
        "SIGNALING_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "SIGNALING_COUNTDOWN_S": str(countdown_s),
        "SIGNALING_CALL_LIMIT_S": str(limit_s),
        "SIGNALING_LOG_LEVEL": "WARNING",
        **ONE_ADDRESS_ENV,
    }
    return child([sys.executable, "-m", "signaling", "serve"], port, env)


def loadgen(port: int, pid: int | str, folder: Path, *args: str) -> dict[str, Any]:
    out = folder / f"loadgen-{time.monotonic_ns()}.json"
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--url",
        f"http://127.0.0.1:{port}",
        "--jwt-secret",
        SECRET,
        "--server-pid",
        str(pid),
        "--json",
        str(out),
        *args,
    ]
    print("$", " ".join(command[1:]), file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=REPO, check=False, timeout=900)
    summary = dict(json.loads(out.read_text()))
    summary["exit_code"] = done.returncode  # non-zero: some calls failed
    return summary


def pick(summary: dict[str, Any], *path: str) -> Any:
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per saturation run")
    parser.add_argument("--repeat", type=int, default=3, help="saturation runs per server")
    parser.add_argument("--procs", type=int, default=2, help="generator processes")
    parser.add_argument("--rate", type=float, default=50.0, help="steady: new calls/s")
    parser.add_argument("--max-concurrent", type=int, default=500)
    parser.add_argument("--steady-calls", type=int, default=1000)
    parser.add_argument("--steady-limit-s", type=float, default=9.0, help="call length (steady)")
    parser.add_argument("--json", type=Path, help="write every summary here")
    args = parser.parse_args()

    results: dict[str, Any] = {"bare": [], "server": [], "steady": None}
    saturate = ["--mode", "saturate", "--calls", str(args.calls), "--procs", str(args.procs)]
    with tempfile.TemporaryDirectory(prefix="call-bench-") as tmp:
        folder = Path(tmp)
        for round_ in range(args.repeat):
            print(f"== saturation round {round_ + 1}/{args.repeat}", file=sys.stderr)
            port = free_port()
            with bare_relay(port) as pid:
                results["bare"].append(loadgen(port, pid, folder, "--no-rest", *saturate))
            port = free_port()
            with real_server(port, folder, 0.0, 1.0) as pid:
                results["server"].append(loadgen(port, pid, folder, *saturate))
        print("== steady load on the real server", file=sys.stderr)
        port = free_port()
        with real_server(port, folder, 1.0, args.steady_limit_s) as pid:
            results["steady"] = loadgen(
                port,
                pid,
                folder,
                "--mode",
                "steady",
                "--rate",
                str(args.rate),
                "--max-concurrent",
                str(args.max_concurrent),
                "--calls",
                str(args.steady_calls),
                "--procs",
                str(args.procs),
            )

    def rates(runs: list[dict[str, Any]]) -> list[float]:
        return [float(pick(r, "signals_per_s") or 0.0) for r in runs]

    bare, server = rates(results["bare"]), rates(results["server"])
    steady = results["steady"]
    summary = {
        "bare_signals_per_s": bare,
        "server_signals_per_s": server,
        "ratio_of_medians": statistics.median(server) / statistics.median(bare),
        "steady_relay_ms": pick(steady, "relay_latency_ms"),
        "steady_join_to_countdown_ms": pick(steady, "join_to_countdown_ms"),
        "steady_calls_ok": pick(steady, "calls_ok"),
    }
    results["summary"] = summary
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
