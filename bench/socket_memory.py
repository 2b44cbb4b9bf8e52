"""Server memory per idle ``/call`` websocket, and where it goes.

Starts the real server (``python -m signaling serve``, a fresh SQLite file, on
a free 127.0.0.1 port), warms it with 100 sockets, then holds ``--sockets``
authenticated idle ``/call`` websockets open with ``bench/idle_sockets.py``
(``--procs`` client processes) and reports the server's RSS after - before /
sockets: the same measurement as the memory part of ``bench/clock_bench.py``
(``idle_memory``), without the preflight calls and the load::

    .venv/bin/python bench/socket_memory.py                  # RSS per socket
    .venv/bin/python bench/socket_memory.py --profile        # + where it goes

With ``--profile`` the server counts the objects its cyclic collector tracks
(what each full collection walks) by type, and traces its allocations with ``tracemalloc``
(``--frames`` deep) from the snapshot it takes (on SIGUSR1) before the sockets
open to the one after (slower, and its RSS is larger, so that run's RSS figure
is not the one to quote); the report
adds what Python allocated per socket, by allocating line and by the first
frame of a library or of this project that led to it (a Python object's
size, not libuv's or the C parsers' own memory: RSS - traced is that, plus
the allocator's overhead).

Prints one JSON object (``--json FILE`` writes it too).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from call_bench import child, free_port
from clock_bench import Target, idle_memory, our_env, setup_sqlite

#: Where the traced server writes its snapshots (set by the parent).
SNAPSHOT_DIR_ENV = "SOCKET_MEMORY_SNAPSHOT_DIR"
#: The parts of a traceback that say whose allocation it is, innermost first.
OWNERS = ("signaling", "engineio", "socketio", "aiohttp", "multidict", "yarl", "bidict")


# -- the traced server (a child process) ---------------------------------------


def serve_traced(frames: int) -> int:
    """``python -m signaling serve`` under tracemalloc, dumping a snapshot on
    SIGUSR1 into ``$SOCKET_MEMORY_SNAPSHOT_DIR/<n>.snap``."""
    folder = Path(os.environ[SNAPSHOT_DIR_ENV])
    dumped = 0

    def dump(signum: int, frame: Any) -> None:
        nonlocal dumped
        gc.collect()  # what is garbage is not per socket
        if not tracemalloc.is_tracing():
            # Traced from the first snapshot on: start-up under tracemalloc takes
            # minutes, and only what is allocated after it is compared.
            tracemalloc.start(frames)
        # What a full collection walks: every tracked object but the frozen.
        census = Counter(_type_name(o) for o in gc.get_objects())
        (folder / f"{dumped}.census.json").write_text(json.dumps(census))
        tracemalloc.take_snapshot().dump(str(folder / f"{dumped}.tmp"))
        (folder / f"{dumped}.tmp").rename(folder / f"{dumped}.snap")
        dumped += 1

    signal.signal(signal.SIGUSR1, dump)
    from signaling.__main__ import main as signaling_main

    return signaling_main(["serve"])


def _type_name(thing: object) -> str:
    kind = type(thing)
    return f"{kind.__module__}.{kind.__qualname__}"


def tracked_per_socket(folder: Path, sockets: int, top: int) -> dict[str, Any]:
    """The collector's tracked objects per socket between the two censuses:
    what makes each full (generation 2) collection longer."""
    before, after = (Counter(json.loads((folder / f"{n}.census.json").read_text())) for n in (0, 1))
    grown = after - before
    return {
        "tracked_objects_per_socket": round(grown.total() / sockets, 1),
        "tracked_by_type": [
            {"type": name, "per_socket": round(n / sockets, 2)}
            for name, n in grown.most_common(top)
        ],
    }


# -- the measurement -----------------------------------------------------------


@contextlib.contextmanager
def traced_server(folder: Path, args: argparse.Namespace) -> Iterator[Target]:
    """The server on SQLite, under tracemalloc (``serve_traced``)."""
    port = free_port()
    env = our_env(f"sqlite+aiosqlite:///{folder / f'memory-{port}.sqlite3'}", args)
    env.update({"SIGNALING_HOST": "127.0.0.1", "SIGNALING_PORT": str(port)})
    env[SNAPSHOT_DIR_ENV] = str(folder)
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-traced", str(args.frames)]
    log_file = folder / f"traced-{port}.log"
    with child(command, port, env, log_file) as pid:
        yield Target("sqlite", f"http://127.0.0.1:{port}", [pid], logs=[log_file])


def snapshot(pid: int, folder: Path, index: int) -> tracemalloc.Snapshot:
    os.kill(pid, signal.SIGUSR1)
    path = folder / f"{index}.snap"
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot {path} from the server")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(path))


def owner(trace: tracemalloc.Traceback) -> str:
    """The innermost frame in one of ``OWNERS`` (else the innermost frame)."""
    for frame in reversed(trace):  # tracemalloc lists the innermost frame last
        parts = Path(frame.filename).parts
        for name in OWNERS:
            if name in parts:
                where = "/".join(parts[parts.index(name) :])
                return f"{where}:{frame.lineno}"
    return _line(trace)


def profile(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, sockets: int, top: int
) -> dict[str, Any]:
    """Bytes and blocks allocated per socket between the snapshots."""
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    by_owner: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_line: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in stats:
        for table, key in ((by_owner, owner(stat.traceback)), (by_line, _line(stat.traceback))):
            table[key][0] += stat.size_diff
            table[key][1] += stat.count_diff

    def rows(table: dict[str, list[int]]) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda kv: -kv[1][0])[:top]
        return [
            {"site": k, "bytes": round(v[0] / sockets), "blocks": round(v[1] / sockets, 1)}
            for k, v in ranked
        ]

    return {
        "traced_bytes_per_socket": round(total / sockets),
        "by_owner": rows(by_owner),
        "by_line": rows(by_line),
    }


def _line(trace: tracemalloc.Traceback) -> str:
    frame = trace[-1]
    parts = Path(frame.filename).parts
    tail = "/".join(parts[-2:])
    return f"{tail}:{frame.lineno}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    args.idle_sockets = args.sockets
    args.idle_procs = args.procs
    with contextlib.ExitStack() as stack:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            folder = args.workdir
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="socket-memory-")))
        if not args.profile:
            with setup_sqlite(folder, args) as target:
                return {"rss": idle_memory(target, args)}
        with traced_server(folder, args) as target:
            pid = target.server_pids[0]
            snaps: list[tracemalloc.Snapshot] = []
            result = idle_memory(
                target, args, mark=lambda _: snaps.append(snapshot(pid, folder, len(snaps)))
            )
            opened = result["sockets_open"] or 1
            return {
                "rss_traced": result,
                **tracked_per_socket(folder, opened, args.top),
                **profile(snaps[0], snaps[1], opened, args.top),
            }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--sockets", type=int, default=2000, help="idle /call websockets")
    ap.add_argument("--procs", type=int, default=4, help="client processes holding them")
    ap.add_argument("--profile", action="store_true", help="run the server under tracemalloc")
    ap.add_argument("--frames", type=int, default=16, help="--profile: traceback depth")
    ap.add_argument("--top", type=int, default=25, help="--profile: rows per table")
    ap.add_argument("--json", type=Path, help="write the report here too")
    ap.add_argument("--workdir", type=Path, help="keep the server log and snapshots here")
    ap.add_argument("--serve-traced", type=int, metavar="FRAMES", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_traced:
        return serve_traced(args.serve_traced)
    if not 1 <= args.sockets <= 10000 or not 1 <= args.procs <= 16:
        ap.error("--sockets must be 1..10000 and --procs 1..16")
    args.countdown_s, args.limit_s = 1.0, 3.0  # our_env's; no call runs here
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0 if report.get("rss", report.get("rss_traced", {})).get("sockets_open") else 1


if __name__ == "__main__":
    sys.exit(main())
