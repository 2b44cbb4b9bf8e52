"""The clock under load: whole calls at several rates, four set-ups, one run.

For each set-up it starts the server(s) as child processes on free 127.0.0.1
ports, checks them with two calls, measures resident memory per idle socket
(``--idle-sockets`` authenticated ``/call`` websockets held open by a few
``bench/idle_sockets.py`` processes; RSS of the server pids from /proc, before
and after), then drives them with ``bench/loadgen.py --mode steady`` at each
rate of ``--rates`` for ``--duration`` seconds (or ``--calls`` calls) and
stops them. Set-ups (``--setups``):

- ``sqlite``: one process, SQLite in a fresh temporary file;
- ``mariadb``: one process on a throwaway MariaDB server of its own
  (``bench/throwaway.py``), or on ``$BENCH_MARIADB_URL`` when set;
- ``cluster``: two processes on a throwaway MariaDB and Redis (or
  ``$BENCH_MARIADB_URL`` and ``$BENCH_REDIS_URL``, a unique
  ``SIGNALING_REDIS_PREFIX``) behind HAProxy
  (``bench/haproxy.py``: ``balance url_param call_id``, so both users of a call
  reach the same process);
- ``cluster1``: the same stack with one process behind HAProxy (not in the
  default list): what two processes carry against one on the same stack;
- ``ref``: the Node reference server of ``bench/reference`` (``npm install`` in a
  temporary copy), in memory, numeric user ids.

Our server runs with ``SIGNALING_COUNTDOWN_S=1 SIGNALING_CALL_LIMIT_S=3``, the
reference with ``CD=1 LIM=3``. Per cell: relay p99, join->countdown p50/p99,
``live`` and ``ended`` lateness p50/p99/max (arrival minus the instant the
server announced in ``countdown.live_at`` / ``live.ends_at``), failures and the
server's CPU per completed call. Prints markdown tables on stdout (progress on
stderr) and, with ``--json FILE``, everything.

Usage: .venv/bin/python bench/clock_bench.py [--rates 25,50,100] [--duration 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from call_bench import ONE_ADDRESS_ENV, SECRET, child, free_port
from haproxy import run_haproxy
from loadgen_stats import cpu_seconds, percentile, rss_bytes
from throwaway import mariadb_database, redis_server

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ANCHORS = BENCH / "reference"  # the Node reference server, kept in the repository
SETUPS = ("sqlite", "mariadb", "cluster", "ref")
#: Set-ups run only when named.
EXTRA_SETUPS = ("cluster1",)
LABELS = {
    "sqlite": "one process, SQLite",
    "mariadb": "one process, MariaDB",
    "cluster": "two processes, MariaDB + Redis, HAProxy",
    "cluster1": "one process, MariaDB + Redis, HAProxy",
    "ref": "Node reference (in memory)",
}


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


@dataclass
class Target:
    """A running set-up: where to send the load and what to measure."""

    name: str
    url: str
    server_pids: list[int]
    proxy_pids: list[int] = field(default_factory=list)
    numeric_users: bool = False
    logs: list[Path] = field(default_factory=list)


# -- set-ups -------------------------------------------------------------------


def our_env(database: str, args: argparse.Namespace) -> dict[str, str]:
    return {
        "SIGNALING_JWT_SECRET": SECRET,
        "SIGNALING_DATABASE_URL": database,
        "SIGNALING_COUNTDOWN_S": str(args.countdown_s),
        "SIGNALING_CALL_LIMIT_S": str(args.limit_s),
        "SIGNALING_LOG_LEVEL": "WARNING",
        **ONE_ADDRESS_ENV,
        **dict(item.split("=", 1) for item in getattr(args, "server_env", None) or []),
    }


def gc_pauses_file(log_file: Path) -> Path:
    return log_file.with_suffix(".gc.jsonl")


def our_server(port: int, env: dict[str, str], log_file: Path) -> Any:
    """The server's CLI through bench/gc_serve.py, which writes its collector's
    pauses next to ``log_file`` when it stops."""
    command = [
        sys.executable, str(BENCH / "gc_serve.py"), str(gc_pauses_file(log_file)),
        "serve", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    return child(command, port, {**env, "SIGNALING_PORT": str(port)}, log_file)


def redis_cleanup(url: str, prefix: str) -> int:
    """Delete this run's keys (bounded; they matter on $BENCH_REDIS_URL); returns how many."""
    try:
        import redis
    except ImportError:
        return 0
    client = redis.Redis.from_url(url, socket_timeout=5)
    deleted = 0
    try:
        batch: list[bytes] = []
        for n, key in enumerate(client.scan_iter(match=f"{prefix}*", count=1000)):
            if n >= 500_000:
                break
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
    except redis.RedisError as exc:
        log(f"redis cleanup of {prefix}*: {exc}")
    finally:
        client.close()
    return deleted


@contextlib.contextmanager
def setup_sqlite(folder: Path, args: argparse.Namespace) -> Iterator[Target]:
    port = free_port()
    env = our_env(f"sqlite+aiosqlite:///{folder / f'clock-{port}.sqlite3'}", args)
    log_file = folder / f"sqlite-{port}.log"
    with our_server(port, env, log_file) as pid:
        yield Target("sqlite", f"http://127.0.0.1:{port}", [pid], logs=[log_file])


@contextlib.contextmanager
def setup_mariadb(folder: Path, args: argparse.Namespace) -> Iterator[Target]:
    with mariadb_database(folder / "mariadb-server", "giftcall_clock") as database:
        port = free_port()
        log_file = folder / f"mariadb-{port}.log"
        with our_server(port, our_env(database, args), log_file) as pid:
            yield Target("mariadb", f"http://127.0.0.1:{port}", [pid], logs=[log_file])


@contextlib.contextmanager
def setup_cluster(folder: Path, args: argparse.Namespace, processes: int = 2) -> Iterator[Target]:
    prefix = f"clockbench-{uuid.uuid4().hex[:10]}"
    with (
        mariadb_database(folder / "cluster-mariadb", "giftcall_clock") as database,
        redis_server(folder / "cluster-redis") as redis_url,
    ):
        try:
            with contextlib.ExitStack() as stack:
                env = {
                    **our_env(database, args),
                    "SIGNALING_REDIS_URL": redis_url,
                    "SIGNALING_REDIS_PREFIX": prefix,
                }
                ports, pids, logs = [], [], []
                for _ in range(processes):  # one after the other: the first one migrates
                    port = free_port()
                    logs.append(folder / f"cluster-{port}.log")
                    pids.append(stack.enter_context(our_server(port, env, logs[-1])))
                    ports.append(port)
                proxy_pid: list[int] = []
                logs.append(folder / "haproxy.log")
                front = stack.enter_context(run_haproxy(ports, log=logs[-1], pid_out=proxy_pid))
                name = "cluster" if processes == 2 else f"cluster{processes}"
                yield Target(name, f"http://127.0.0.1:{front}", pids, proxy_pid, logs=logs)
        finally:
            n = redis_cleanup(redis_url, prefix)
            log(f"redis: deleted {n} keys of {prefix}*")


def reference_dir(folder: Path, args: argparse.Namespace) -> Path:
    """The Node reference with its node_modules: --ref-dir if it has them, else a copy
    of bench/reference in ``folder`` with ``npm install`` run there."""
    if args.ref_dir and (args.ref_dir / "node_modules" / "socket.io").is_dir():
        return Path(args.ref_dir)
    target = Path(args.ref_dir) if args.ref_dir else folder / "anchors"
    if not (ANCHORS / "ref_server.js").is_file():
        raise RuntimeError(f"no reference server at {ANCHORS}")
    target.mkdir(parents=True, exist_ok=True)
    for item in ("ref_server.js", "package.json"):
        shutil.copy(ANCHORS / item, target / item)
    log(f"npm install in {target}")
    done = subprocess.run(
        ["npm", "install", "--silent", "--no-audit", "--no-fund"],
        cwd=target,
        capture_output=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm install failed: {done.stderr.decode(errors='replace')[-1000:]}")
    return target


@contextlib.contextmanager
def setup_ref(folder: Path, args: argparse.Namespace) -> Iterator[Target]:
    where = reference_dir(folder, args)
    port = free_port()
    env = {
        "PORT": str(port),
        "SECRET": SECRET,
        "CD": f"{args.countdown_s:g}",
        "LIM": f"{args.limit_s:g}",
    }
    log_file = folder / f"ref-{port}.log"
    with child(["node", str(where / "ref_server.js")], port, env, log_file) as pid:
        yield Target("ref", f"http://127.0.0.1:{port}", [pid], numeric_users=True, logs=[log_file])


SETUP_FACTORIES: dict[str, Callable[[Path, argparse.Namespace], Any]] = {
    "sqlite": setup_sqlite,
    "mariadb": setup_mariadb,
    "cluster": setup_cluster,
    "cluster1": functools.partial(setup_cluster, processes=1),
    "ref": setup_ref,
}


# -- measurements --------------------------------------------------------------


def run_loadgen(target: Target, folder: Path, tag: str, args: list[str], limit_s: float) -> Any:
    out = folder / f"loadgen-{target.name}-{tag}.json"
    command = [
        sys.executable, str(BENCH / "loadgen.py"), "--url", target.url, "--jwt-secret", SECRET,
        "--server-pid", ",".join(map(str, target.server_pids)), "--json", str(out), *args,
    ]  # fmt: skip
    log("$", " ".join(command[1:]))
    try:
        # its summary goes to our stderr: our stdout is the tables only
        done = subprocess.run(command, cwd=REPO, stdout=sys.stderr, check=False, timeout=limit_s)
        code: int | str = done.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    if not out.exists():
        return {"error": f"loadgen wrote no summary (exit {code})"}
    summary = dict(json.loads(out.read_text()))
    summary["exit_code"] = code
    return summary


def user_format(target: Target, cell: int) -> str:
    """Unique users per cell; digits only for the Node reference (numeric ids)."""
    if target.numeric_users:
        return f"{cell + 1}{{n:07d}}"
    return f"c{cell}u{{call}}{{side}}"


def preflight(target: Target, folder: Path, args: argparse.Namespace) -> Any:
    """Two whole calls, to find out whether the server works at all."""
    lg = [
        "--mode", "steady", "--rate", "5", "--calls", "2", "--procs", "1",
        "--user-format", user_format(target, 99), "--signal-timeout", "10",
        "--ended-timeout", "20", "--max-time", "40",
    ]  # fmt: skip
    return run_loadgen(target, folder, "preflight", lg, 120)


def settle(pids: list[int], limit_s: float = 20.0, idle_pct: float = 10.0) -> float:
    """Wait (at most ``limit_s``) until ``pids`` use less than ``idle_pct`` % of a core
    over one second; returns the last second's figure."""
    deadline = time.monotonic() + limit_s
    pct = 100.0
    while time.monotonic() < deadline:
        before = cpu_seconds(pids)
        time.sleep(1.0)
        after = cpu_seconds(pids)
        if before is None or after is None:
            return -1.0
        pct = 100 * (after - before)
        if pct < idle_pct:
            break
    return pct


def idle_holders(target: Target, count: int, procs: int, first: int) -> list[Any]:
    per, extra = divmod(count, procs)
    fmt = "8{n:07d}" if target.numeric_users else "idle{n}"
    holders = []
    start = first
    for j in range(procs):
        n = per + (1 if j < extra else 0)
        if n == 0:
            continue
        command = [
            sys.executable, str(BENCH / "idle_sockets.py"), "--url", target.url,
            "--count", str(n), "--first", str(start), "--jwt-secret", SECRET,
            "--user-format", fmt, "--hold-max", "300",
        ]  # fmt: skip
        holders.append(
            subprocess.Popen(
                command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        )
        start += n
    return holders


def read_reports(holders: list[Any], limit_s: float) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    pending = {h.stdout.fileno(): h for h in holders}
    deadline = time.monotonic() + limit_s
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending), [], [], 0.5)
        for fd in ready:
            holder = pending.pop(fd)
            line = holder.stdout.readline()
            try:
                reports.append(dict(json.loads(line)))
            except ValueError:
                reports.append({"open": 0, "failed": 0, "errors": {"no_report": 1}})
        for fd, holder in list(pending.items()):
            if holder.poll() is not None:
                pending.pop(fd)
                reports.append({"open": 0, "failed": 0, "errors": {"exited": 1}})
    for _ in pending:
        reports.append({"open": 0, "failed": 0, "errors": {"report_timeout": 1}})
    return reports


def release(holders: list[Any]) -> None:
    for h in holders:
        with contextlib.suppress(OSError):
            h.stdin.close()
    for h in holders:
        try:
            h.wait(timeout=30)
        except subprocess.TimeoutExpired:
            h.kill()
            h.wait(timeout=10)


def idle_memory(
    target: Target, args: argparse.Namespace, mark: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Server RSS per idle authenticated /call websocket; ``mark("before")`` and
    ``mark("after")`` run right after each RSS reading (bench/socket_memory.py
    takes its heap snapshots there)."""
    pids = target.server_pids
    warm = idle_holders(target, min(100, args.idle_sockets), 1, 10_000_000 - 1000)
    try:
        read_reports(warm, 60)
    finally:
        release(warm)
    settle(pids, 10)
    time.sleep(1.0)
    before = rss_bytes(pids)
    if mark is not None:
        mark("before")
    holders = idle_holders(target, args.idle_sockets, args.idle_procs, 0)
    try:
        reports = read_reports(holders, 180)
        time.sleep(3.0)  # let the server finish handshakes and settle
        settle(pids, 10)
        after = rss_bytes(pids)
        if mark is not None:
            mark("after")
    finally:
        release(holders)
    opened = sum(int(r.get("open", 0)) for r in reports)
    errors: dict[str, int] = {}
    for r in reports:
        for k, v in r.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + int(v)
    per_kb = (after - before) / opened / 1024 if opened and before and after else None
    return {
        "sockets_requested": args.idle_sockets,
        "sockets_open": opened,
        "errors": errors,
        "rss_before_mb": round(before / 2**20, 1) if before else None,
        "rss_after_mb": round(after / 2**20, 1) if after else None,
        "kb_per_socket": round(per_kb, 1) if per_kb is not None else None,
    }


def run_cell(
    target: Target, folder: Path, args: argparse.Namespace, cell: int, rate: float
) -> dict[str, Any]:
    calls = args.calls or max(1, round(rate * args.duration))
    cap = args.max_concurrent or max(100, int(rate * 15))
    load_s = calls / rate
    max_time = load_s + args.ended_timeout + 30
    lg = [
        "--mode", "steady", "--rate", f"{rate:g}", "--calls", str(calls),
        "--max-concurrent", str(cap), "--procs", str(args.procs),
        "--user-format", user_format(target, cell),
        "--signal-timeout", "20", "--ended-timeout", str(args.ended_timeout),
        "--max-time", f"{max_time:.0f}", "--schedule-ahead", "60",
    ]  # fmt: skip
    proxy0 = cpu_seconds(target.proxy_pids)
    started_at = time.time()
    with contextlib.ExitStack() as profiling:
        if args.profile and target.name != "ref":
            for pid in target.server_pids:
                profiling.enter_context(
                    py_spy(pid, folder / f"profile-{target.name}-r{rate:g}-{pid}.txt", load_s)
                )
        summary = run_loadgen(target, folder, f"r{rate:g}", lg, max_time + 120)
    proxy1 = cpu_seconds(target.proxy_pids)
    summary["rate"] = rate
    summary["window"] = [round(started_at, 3), round(time.time(), 3)]
    if proxy0 is not None and proxy1 is not None:
        ok = summary.get("calls_ok") or 0
        summary["haproxy_cpu_s"] = round(proxy1 - proxy0, 2)
        summary["haproxy_cpu_ms_per_call"] = round(1e3 * (proxy1 - proxy0) / ok, 2) if ok else None
    return summary


def add_gc_pauses(cells: list[dict[str, Any]], files: list[Path]) -> None:
    """Each cell's full (generation 2) collections, from bench/gc_serve.py's
    files, by the cell's wall-clock window (every server process together)."""
    files = [path for path in files if path.is_file()]
    if not files:  # not our server (the Node reference)
        return
    full: list[tuple[float, float]] = []
    for path in files:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if isinstance(record, list) and record[1] == 2:
                full.append((record[0], record[2]))
    for cell in cells:
        start, end = cell.get("window", (0.0, 0.0))
        pauses = sorted(ms for at, ms in full if start <= at <= end)
        cell["gc_full_pauses_ms"] = {
            "n": len(pauses),
            "p50": percentile(pauses, 50),
            "max": pauses[-1] if pauses else None,
        }


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def bench_setup(name: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the set-up (retrying if it fails to start or to complete two calls),
    measure idle memory, run every rate; never raises."""
    result: dict[str, Any] = {"setup": name, "label": LABELS[name], "attempts": []}
    for attempt in range(1, args.retries + 2):
        log(f"== {name}: {LABELS[name]} (attempt {attempt})")
        try:
            with SETUP_FACTORIES[name](folder, args) as target:
                check = preflight(target, folder, args)
                if not check.get("calls_ok"):
                    problem = (
                        f"preflight: {check.get('failures') or check.get('error')}"
                        f" {check.get('failure_samples', '')}"
                    )
                    result["attempts"].append(problem[:1500])
                    for path in target.logs:
                        log(f"-- {path.name}:\n{tail(path)}")
                    raise _RetryError(problem)
                result["server_pids"] = target.server_pids
                if args.idle_sockets:
                    log(f"== {name}: {args.idle_sockets} idle sockets")
                    result["idle"] = idle_memory(target, args)
                    log(f"   {result['idle']}")
                result["cells"] = []
                for cell, rate in enumerate(args.rates):
                    settle(target.server_pids)
                    log(f"== {name}: {rate:g} calls/s")
                    result["cells"].append(run_cell(target, folder, args, cell, rate))
            # The servers have stopped: their collector pauses are written.
            add_gc_pauses(result["cells"], [gc_pauses_file(path) for path in target.logs])
            return result
        except _RetryError:
            pass
        except Exception as exc:  # a set-up that does not start is reported, not fatal
            result["attempts"].append(f"{type(exc).__name__}: {exc}"[:1500])
            log(f"{name}: {type(exc).__name__}: {exc}")
            for path in folder.glob(f"{name}-*.log"):
                log(f"-- {path.name}:\n{tail(path)}")
        if attempt <= args.retries:
            log(f"{name}: retrying in {args.retry_pause:g} s")
            time.sleep(args.retry_pause)
    result["error"] = result["attempts"][-1] if result["attempts"] else "did not run"
    return result


class _RetryError(Exception):
    pass


# -- report --------------------------------------------------------------------


def _v(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _d(summary: dict[str, Any], key: str, *ps: str) -> str:
    dist = summary.get(key) or {}
    return " / ".join(_v(dist.get(p)) for p in ps)


def _gc(summary: dict[str, Any]) -> str:
    pauses = summary.get("gc_full_pauses_ms")
    if not pauses:  # the Node reference
        return "-"
    return f"{pauses['n']}, {_v(pauses['p50'])} / {_v(pauses['max'])}"


def _failures(summary: dict[str, Any]) -> str:
    failed = summary.get("calls_failed")
    if failed is None:
        return summary.get("error", "-")
    reasons = list((summary.get("failures") or {}).items())[:2]
    extra = ", ".join(f"{k} {v}" for k, v in reasons)
    return f"{failed} ({extra})" if failed and extra else str(failed)


def tables(results: list[dict[str, Any]]) -> str:
    head = (
        "| set-up | calls/s | calls ok / started | failures | relay p99 ms"
        " | join→countdown p50 / p99 ms | `live` late p50 / p99 / max ms"
        " | `ended` late p50 / p99 / max ms | full GC pauses: n, p50 / max ms"
        " | server CPU ms per call | generator CPU % |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for res in results:
        if "cells" not in res:
            rows.append(f"| {res['label']} | - | - | did not run: {res.get('error', '-')[:200]}"
                        " | | | | | | | |")  # fmt: skip
            continue
        for s in res["cells"]:
            cpu = _v(s.get("server_cpu_ms_per_call"))
            if s.get("haproxy_cpu_ms_per_call") is not None:
                cpu += f" (+ HAProxy {_v(s['haproxy_cpu_ms_per_call'])})"
            gen = " + ".join(f"{v:.0f}" for v in s.get("generator_cpu_pct_per_proc") or [])
            rows.append(
                f"| {res['label']} | {_v(s['rate'], 0)}"
                f" | {_v(s.get('calls_ok'))} / {_v(s.get('calls_started'))}"
                f" | {_failures(s)} | {_v((s.get('relay_latency_ms') or {}).get('p99'))}"
                f" | {_d(s, 'join_to_countdown_ms', 'p50', 'p99')}"
                f" | {_d(s, 'live_lateness_ms', 'p50', 'p99', 'max')}"
                f" | {_d(s, 'ended_lateness_ms', 'p50', 'p99', 'max')}"
                f" | {_gc(s)} | {cpu} | {gen or '-'} |"
            )
    mem = [
        "",
        "| set-up | idle sockets open | server RSS before → after (MB) | KB per idle socket |",
        "|---|---|---|---|",
    ]
    for res in results:
        idle = res.get("idle")
        if not idle:
            continue
        errors = ", ".join(f"{k} {v}" for k, v in idle["errors"].items())
        opened = f"{idle['sockets_open']} / {idle['sockets_requested']}"
        mem.append(
            f"| {res['label']} | {opened}{f' ({errors})' if errors else ''}"
            f" | {_v(idle['rss_before_mb'])} → {_v(idle['rss_after_mb'])}"
            f" | {_v(idle['kb_per_socket'])} |"
        )
    return "\n".join(rows + (mem if len(mem) > 3 else []))


@contextlib.contextmanager
def py_spy(pid: int, out: Path, seconds: float) -> Iterator[None]:
    """py-spy samples ``pid`` for ``seconds`` (the load), 100 times a second,
    into ``out`` (raw: one folded stack per line and its count)."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "-r", "100", "-f", "raw", "-d", f"{max(1, round(seconds))}"]
    proc = subprocess.Popen(
        [*command, "-p", str(pid), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        try:
            proc.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log(f"profile of pid {pid}: {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--setups", default=",".join(SETUPS), help=f"any of {','.join(SETUPS + EXTRA_SETUPS)}"
    )
    ap.add_argument("--rates", default="25,50,100", help="new calls per second, one cell each")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load per cell")
    ap.add_argument("--calls", type=int, help="calls per cell (instead of rate x duration)")
    ap.add_argument("--max-concurrent", type=int, help="calls in flight cap (default 15 x rate)")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--countdown-s", type=float, default=1.0, help="countdown (CD)")
    ap.add_argument("--limit-s", type=float, default=3.0, help="call length (LIM)")
    ap.add_argument("--ended-timeout", type=float, default=30.0, help="loadgen: wait for ended")
    ap.add_argument("--idle-sockets", type=int, default=2000, help="0: skip the memory test")
    ap.add_argument("--idle-procs", type=int, default=4, help="client processes holding them")
    ap.add_argument("--retries", type=int, default=2, help="restarts of a set-up that fails")
    ap.add_argument("--retry-pause", type=float, default=60.0, help="seconds before a retry")
    ap.add_argument("--ref-dir", type=Path, help="reuse (or create) the Node reference here")
    ap.add_argument("--workdir", type=Path, help="keep logs and loadgen JSON here")
    ap.add_argument("--json", type=Path, help="write everything here")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy every server process during each cell (raw stacks in the work folder; "
        "sampling slows the server, so its figures are not comparable)",
    )
    ap.add_argument(
        "--server-env",
        action="append",
        metavar="SIGNALING_X=VALUE",
        help="a setting for our server(s), repeatable (e.g. SIGNALING_GC_FREEZE=0)",
    )
    args = ap.parse_args(argv)
    if any(not item.startswith("SIGNALING_") or "=" not in item for item in args.server_env or []):
        ap.error("--server-env takes SIGNALING_NAME=VALUE")
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    bad = [s for s in setups if s not in SETUPS + EXTRA_SETUPS]
    if bad or not setups:
        ap.error(f"unknown set-up(s) {bad}; choose from {SETUPS + EXTRA_SETUPS}")
    try:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        ap.error("--rates: comma-separated numbers")
    if not args.rates or any(r <= 0 or r > 1000 for r in args.rates):
        ap.error("--rates must be in (0, 1000]")
    if args.duration <= 0 or args.duration > 600 or (args.calls is not None and args.calls < 1):
        ap.error("--duration must be in (0, 600] and --calls >= 1")
    if not 0 <= args.idle_sockets <= 10000 or not 1 <= args.idle_procs <= 16:
        ap.error("--idle-sockets must be 0..10000 and --idle-procs 1..16")
    if not 0 <= args.retries <= 5 or not 0 <= args.retry_pause <= 600:
        ap.error("--retries must be 0..5 and --retry-pause 0..600")

    started = dt.datetime.now(dt.UTC)
    meta = {
        "started_utc": started.isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "setups": setups,
        "rates": args.rates,
        "duration_s": args.duration,
        "calls_per_cell": args.calls,
        "countdown_s": args.countdown_s,
        "limit_s": args.limit_s,
        "generator_procs": args.procs,
        "idle_sockets": args.idle_sockets,
    }
    log(f"clock_bench: {meta}")
    results = []
    with contextlib.ExitStack() as stack:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            folder = args.workdir
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clock-bench-")))
        for name in setups:
            results.append(bench_setup(name, folder, args))
            if args.json:  # keep what we have if a later set-up hangs or is interrupted
                args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    meta["wall_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    text = tables(results)
    print(
        f"clock_bench {meta['started_utc']}, {meta['cpus']} CPUs, load average before"
        f" {meta['load_average_before'][0]:.2f}, CD {args.countdown_s:g} s, LIM"
        f" {args.limit_s:g} s, {args.procs} generator processes, wall {meta['wall_s']} s\n"
    )
    print(text, flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"meta": meta, "results": results, "table": text}, indent=2)
        )
    return 0 if all("cells" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
