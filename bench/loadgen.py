"""Call load generator for the signalling server (and for bench/bare_relay.py).

Each call is two python-socketio clients (websocket transport only) that follow
PROTOCOL.md: both ``join``; the late joiner (role ``offerer``) sends an offer of
about 4 KB, the answerer answers; each side trickles ``--candidates`` ICE
candidates and an ``end-of-candidates``; each emits ``connected`` once it has
all of its partner's signals; both then wait for ``countdown`` / ``live`` /
``ended``.

Every relayed ``offer``/``answer``/``candidate`` carries ``ts=<perf_counter_ns>``
of its sender (in the SDP's ``s=`` line or at the end of the candidate string);
the receiver, in the same process, turns it into a relay latency. The server's
clock is measured too: ``live`` lateness is its arrival (wall clock) minus the
``live_at`` of the preceding ``countdown``, ``ended`` lateness its arrival minus
the ``ends_at`` of ``live`` (ISO 8601 strings or epoch-second numbers).

Each socket carries its call's id in the handshake query (``?call_id=N``, the
routing hint of PROTOCOL.md) unless ``--no-call-id-query``.

Modules, one job each: this file (CLI and the parent's run loop: progress,
Ctrl-C, summary), ``loadgen_call.py`` (one call: its peers and their script),
``loadgen_workers.py`` (worker processes and the merge of their reports),
``loadgen_payload.py`` (SDP and candidates), ``loadgen_stats.py`` (figures).

Examples::

    # against bench/bare_relay.py (no REST, sequential call ids)
    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8090 --no-rest --calls 50
    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8090 --no-rest \\
        --mode saturate --calls 300 --procs 2
    # against the real server (started with the same SIGNALING_JWT_SECRET)
    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8080 --jwt-secret S \\
        --mode steady --rate 50 --max-concurrent 500 --calls 3000

Only 127.0.0.1 / localhost / ::1 targets are accepted. Every phase has a
timeout and the whole run is bounded by ``--max-time``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import multiprocessing.sharedctypes
import queue
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
from loadgen_call import (
    CPU_MS,
    ENDED,
    FAILED,
    JOINED,
    NFIELDS,
    OK,
    READY,
    RECV,
    STARTED,
    Config,
    user_id,
)
from loadgen_stats import add_server_cpu, cpu_seconds, parse_pids, print_summary
from loadgen_workers import counter_total, merge, start_workers

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def run(cfg: Config, json_path: str | None, server_pids: Sequence[int] = ()) -> int:
    ctx = mp.get_context("spawn")
    counters = multiprocessing.sharedctypes.RawArray("q", cfg.procs * NFIELDS)
    go = ctx.Event()
    stop = ctx.Event()
    results: Any = ctx.Queue()

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored
    t0 = time.monotonic()
    srv_cpu0 = cpu_seconds(server_pids)
    procs = start_workers(cfg, counters, go, stop, results)

    def total(field: int) -> int:
        return counter_total(counters, cfg.procs, field)

    collected: dict[int, dict[str, Any]] = {}
    hard_deadline = t0 + cfg.max_time + 30
    barrier_deadline = t0 + cfg.barrier_timeout
    next_print = t0 + 1.0
    last_recv, last_t, peak_rate = 0, t0, 0.0
    last_gen_ms = [0] * cfg.procs
    peak_gen = [0.0] * cfg.procs
    last_srv, peak_srv = srv_cpu0, 0.0
    interrupted = False
    try:
        while len(collected) < cfg.procs:
            now = time.monotonic()
            if not go.is_set() and (
                cfg.mode != "saturate"
                or total(READY) + total(FAILED) >= cfg.calls
                or now >= barrier_deadline
            ):
                go.set()
            if now >= hard_deadline - 20 and not stop.is_set():
                stop.set()
            if now >= hard_deadline:
                print(
                    "loadgen: workers did not finish in time, terminating",
                    file=sys.stderr,
                )
                break
            if now >= next_print:
                recv = total(RECV)
                span = now - last_t
                rate = (recv - last_recv) / span
                peak_rate = max(peak_rate, rate)
                gen_ms = [counters[j * NFIELDS + CPU_MS] for j in range(cfg.procs)]
                gen_pct = [(b - a) / 10 / span for a, b in zip(last_gen_ms, gen_ms, strict=True)]
                peak_gen = [max(a, b) for a, b in zip(peak_gen, gen_pct, strict=True)]
                cpu = "gen " + "+".join(f"{v:.0f}%" for v in gen_pct)
                srv_now = cpu_seconds(server_pids)
                if srv_now is not None and last_srv is not None:
                    srv_pct = 100 * (srv_now - last_srv) / span
                    peak_srv = max(peak_srv, srv_pct)
                    cpu += f" srv {srv_pct:.0f}%"
                last_recv, last_t, last_gen_ms, last_srv = recv, now, gen_ms, srv_now
                print(
                    f"[{now - t0:6.1f}s] calls started {total(STARTED)}/{cfg.calls} "
                    f"joined {total(JOINED)} ended {total(ENDED)} "
                    f"ok {total(OK)} failed {total(FAILED)} | signals relayed {recv} "
                    f"({rate:.0f}/s) | cpu {cpu}",
                    file=sys.stderr,
                    flush=True,
                )
                next_print += 1.0
            try:
                res = results.get(timeout=0.01 if not go.is_set() else 0.1)
                collected[res["index"]] = res
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and results.empty():
                    break
    except KeyboardInterrupt:
        interrupted = True
        print("loadgen: interrupted, stopping workers", file=sys.stderr)
        stop.set()
        go.set()
        end = time.monotonic() + 15
        while len(collected) < cfg.procs and time.monotonic() < end:
            try:
                res = results.get(timeout=0.2)
                collected[res["index"]] = res
            except queue.Empty:
                if all(not p.is_alive() for p in procs):
                    break
    wall = time.monotonic() - t0
    srv_cpu1 = cpu_seconds(server_pids)
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=2)

    summary = merge(cfg, counters, collected, wall, peak_rate)
    summary["server_pids"] = list(server_pids)
    if srv_cpu0 is not None and srv_cpu1 is not None:
        add_server_cpu(summary, srv_cpu1 - srv_cpu0, wall, peak_srv)
    summary["generator_cpu_peak_1s_pct"] = [round(v, 1) for v in peak_gen]
    summary["interrupted"] = interrupted
    print_summary(summary)
    if json_path:
        with open(json_path, "wb") as fh:
            fh.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return 0 if summary["calls_failed"] == 0 and not interrupted and not summary["crashes"] else 1


def parse_args(argv: list[str] | None) -> tuple[Config, str | None, list[int]]:
    ap = argparse.ArgumentParser(
        description="Call load generator (see bench/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL (local only)")
    ap.add_argument("--mode", choices=("saturate", "steady"), default="saturate")
    ap.add_argument("--calls", type=int, default=50, help="total number of calls")
    ap.add_argument("--rate", type=float, default=50.0, help="steady: new calls per second")
    ap.add_argument("--max-concurrent", type=int, default=500, help="steady: calls in flight cap")
    ap.add_argument("--procs", type=int, default=1, help="worker processes")
    ap.add_argument("--no-rest", action="store_true", help="skip POST /api/calls (bare relay)")
    ap.add_argument(
        "--jwt-secret",
        default="bench-secret-0123456789abcdef0123456789",
        help="HS256 secret for the tokens",
    )
    ap.add_argument("--candidates", type=int, default=20, help="ICE candidates per side")
    ap.add_argument("--sdp-bytes", type=int, default=4096, help="approximate SDP size")
    ap.add_argument("--first-call-id", type=int, default=1, help="--no-rest: first call id")
    ap.add_argument(
        "--user-format",
        default="u{call}{side}",
        help="user id template; fields {call} (index), {side} (a|b), {n} (2*call+0|1);"
        " digits only (e.g. '7{n:06d}') for servers with numeric user ids such as the Node"
        " reference (the JWT sub stays a string, as the contract says)",
    )
    ap.add_argument("--schedule-ahead", type=float, default=5.0, help="scheduled_at = now + S")
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--ack-timeout", type=float, default=10.0)
    ap.add_argument("--signal-timeout", type=float, default=20.0, help="wait for partner events")
    ap.add_argument("--ended-timeout", type=float, default=90.0, help="wait for `ended`")
    ap.add_argument("--barrier-timeout", type=float, default=60.0, help="saturate: setup limit")
    ap.add_argument("--max-time", type=float, default=300.0, help="hard limit for the whole run")
    ap.add_argument("--connect-concurrency", type=int, default=100, help="per worker process")
    ap.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    ap.add_argument(
        "--server-pid",
        action="append",
        help="report these processes' CPU use, summed (Linux; comma- or space-separated"
        " pids, or the option repeated)",
    )
    ap.add_argument(
        "--no-call-id-query",
        action="store_true",
        help="do not put ?call_id=<id> in the Socket.IO handshake URL",
    )
    ap.add_argument(
        "--url-b",
        help="server for each call's second user (another process of a cluster); default --url",
    )
    a = ap.parse_args(argv)

    for url in (a.url, a.url_b or a.url):
        host = urlsplit(url).hostname
        if host not in LOCAL_HOSTS:
            ap.error(f"only local targets are allowed (127.0.0.1, localhost, ::1), not {host!r}")
    if a.calls < 1 or a.procs < 1 or a.rate <= 0 or a.max_concurrent < 1 or a.candidates < 0:
        ap.error("--calls, --procs, --max-concurrent must be >= 1 and --rate > 0")
    for name in (
        "connect_timeout",
        "ack_timeout",
        "signal_timeout",
        "ended_timeout",
        "max_time",
    ):
        if getattr(a, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0")
    try:
        ids = {user_id(a.user_format, c, side) for c in (0, 1) for side in "ab"}
    except (KeyError, IndexError, ValueError) as exc:
        ap.error(f"--user-format {a.user_format!r}: {exc!r}")
    if len(ids) != 4:
        ap.error("--user-format must give each call's two users distinct ids per call")
    try:
        server_pids = parse_pids(a.server_pid)
    except ValueError:
        ap.error(f"--server-pid: not a list of pids: {a.server_pid!r}")
    procs = min(a.procs, a.calls)
    cfg = Config(
        url=a.url.rstrip("/"),
        url_b=(a.url_b or a.url).rstrip("/"),
        mode=a.mode,
        calls=a.calls,
        rate=a.rate,
        max_concurrent=max(a.max_concurrent, procs),
        procs=procs,
        rest=not a.no_rest,
        jwt_secret=a.jwt_secret,
        candidates=a.candidates,
        sdp_bytes=a.sdp_bytes,
        first_call_id=a.first_call_id,
        user_format=a.user_format,
        schedule_ahead_s=a.schedule_ahead,
        connect_timeout=a.connect_timeout,
        ack_timeout=a.ack_timeout,
        signal_timeout=a.signal_timeout,
        ended_timeout=a.ended_timeout,
        barrier_timeout=a.barrier_timeout,
        max_time=a.max_time,
        connect_concurrency=a.connect_concurrency,
        call_id_query=not a.no_call_id_query,
    )
    return cfg, a.json, server_pids


def main(argv: list[str] | None = None) -> int:
    cfg, json_path, server_pids = parse_args(argv)
    return run(cfg, json_path, server_pids)


if __name__ == "__main__":
    sys.exit(main())
