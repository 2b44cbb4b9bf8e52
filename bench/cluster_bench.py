"""One server process against two behind Redis, in one run.

Both set-ups run on a throwaway MariaDB server (and the two processes share a
throwaway Redis: ``bench/throwaway.py``, or ``$BENCH_MARIADB_URL`` and
``$BENCH_REDIS_URL``), made fresh for each, and are driven by the same ``bench/loadgen.py`` runs:
saturation (signals relayed per second) and steady load (relay latency and
join-to-countdown). With two processes each call's first user connects to
process one and the second user to process two, so every signal, timer and
presence look-up crosses Redis.

Usage: .venv/bin/python bench/cluster_bench.py [--calls 300] [--steady-calls 600] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from call_bench import ONE_ADDRESS_ENV, SECRET, child, free_port, loadgen, pick
from throwaway import mariadb_database, redis_server


@contextlib.contextmanager
def servers(
    count: int, folder: Path, limit_s: float, countdown_s: float
) -> Iterator[tuple[list[int], str]]:
    """``count`` server processes on one fresh database; Redis when more than one.
    Yields their ports and the comma-separated pids."""
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(mariadb_database(folder / "mariadb", "giftcall_bench"))
        env = {
            "SIGNALING_JWT_SECRET": SECRET,
            "SIGNALING_DATABASE_URL": database,
            "SIGNALING_COUNTDOWN_S": str(countdown_s),
            "SIGNALING_CALL_LIMIT_S": str(limit_s),
            "SIGNALING_LOG_LEVEL": "WARNING",
            **ONE_ADDRESS_ENV,
        }
        if count > 1:
            env["SIGNALING_REDIS_URL"] = stack.enter_context(redis_server(folder / "redis"))
            env["SIGNALING_REDIS_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
        ports, pids = [], []
        for _ in range(count):  # one after the other: the first one migrates
            port = free_port()
            command = [sys.executable, "-m", "signaling", "serve"]
            pids.append(
                stack.enter_context(child(command, port, {**env, "SIGNALING_PORT": str(port)}))
            )
            ports.append(port)
        yield ports, ",".join(str(p) for p in pids)


def drive(
    count: int, folder: Path, args: argparse.Namespace, *mode: str, steady: bool
) -> dict[str, Any]:
    limit_s, countdown_s = (args.steady_limit_s, 1.0) if steady else (1.0, 0.0)
    with servers(count, folder / f"servers-{count}", limit_s, countdown_s) as (ports, pids):
        urls = ["--url-b", f"http://127.0.0.1:{ports[-1]}"] if count > 1 else []
        return loadgen(ports[0], pids, folder, *urls, *mode)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per saturation run")
    parser.add_argument("--procs", type=int, default=2, help="generator processes")
    parser.add_argument("--rate", type=float, default=50.0, help="steady: new calls/s")
    parser.add_argument("--max-concurrent", type=int, default=500)
    parser.add_argument("--steady-calls", type=int, default=600)
    parser.add_argument("--steady-limit-s", type=float, default=9.0)
    parser.add_argument("--json", type=Path, help="write every summary here")
    args = parser.parse_args()
    procs = ["--procs", str(args.procs)]
    saturate = ["--mode", "saturate", "--calls", str(args.calls), *procs]
    steady = [
        "--mode", "steady", "--rate", str(args.rate), "--max-concurrent",
        str(args.max_concurrent), "--calls", str(args.steady_calls), *procs,
    ]  # fmt: skip
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        folder = Path(tmp)
        for count in (1, 2):
            print(f"== {count} process(es)", file=sys.stderr)
            results[f"{count}_saturate"] = drive(count, folder, args, *saturate, steady=False)
            results[f"{count}_steady"] = drive(count, folder, args, *steady, steady=True)
    summary = {
        name: {
            "signals_per_s": pick(result, "signals_per_s"),
            "relay_ms": pick(result, "relay_latency_ms"),
            "join_to_countdown_ms": pick(result, "join_to_countdown_ms"),
            "calls_ok": pick(result, "calls_ok"),
            "server_cpu_pct": pick(result, "server_cpu_pct"),
        }
        for name, result in results.items()
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
