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

Modules: this file (CLI, peers, worker processes, the parent's run loop),
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
import array
import asyncio
import contextlib
import datetime as dt
import multiprocessing as mp
import multiprocessing.sharedctypes
import queue
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import jwt
import orjson
import socketio
from loadgen_payload import candidate_string, extract_ts, sdp_parts
from loadgen_stats import (
    add_server_cpu,
    cpu_seconds,
    parse_instant,
    parse_pids,
    print_summary,
    summarize,
)

NAMESPACE = "/call"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# Shared per-worker counters (one row of NFIELDS int64 per worker process).
STARTED, JOINED, READY, ENDED, OK, FAILED, SENT, RECV, ACKED, CPU_MS = range(10)
NFIELDS = 10

perf_ns = time.perf_counter_ns  # CLOCK_MONOTONIC on Linux: comparable across processes


class OrjsonJson:
    """orjson behind the stdlib ``json`` API (what python-socketio expects)."""

    @staticmethod
    def dumps(obj: Any, **_kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_kwargs: Any) -> Any:
        return orjson.loads(data)


@dataclass(frozen=True)
class Config:
    url: str
    mode: str
    calls: int
    rate: float
    max_concurrent: int
    procs: int
    url_b: str
    rest: bool
    jwt_secret: str
    candidates: int
    sdp_bytes: int
    first_call_id: int
    user_format: str
    schedule_ahead_s: float
    connect_timeout: float
    ack_timeout: float
    signal_timeout: float
    ended_timeout: float
    barrier_timeout: float
    max_time: float
    connect_concurrency: int
    call_id_query: bool = True


class CallError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def make_token(secret: str, user_id: str, ttl_s: int = 6 * 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256")


def user_id(fmt: str, call: int, side: str) -> str:
    return fmt.format(call=call, side=side, n=2 * call + (0 if side == "a" else 1))


# -- worker side ---------------------------------------------------------------


class Peer:
    """One user's socket in one call."""

    def __init__(self, worker: Worker, side: int, user: str, token: str, call_id: Any) -> None:
        self.w = worker
        self.side = side
        self.user = user
        self.token = token
        self.call_id = call_id
        self.sio = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,
            json=OrjsonJson,
            http_session=worker.session,
            request_timeout=worker.cfg.connect_timeout,
        )
        self.gone = False
        self.partner_joined = asyncio.Event()
        self.got_sdp = asyncio.Event()
        self.got_eoc = asyncio.Event()
        self.got_countdown = asyncio.Event()
        self.got_live = asyncio.Event()
        self.got_ended = asyncio.Event()
        self.acks_done = asyncio.Event()
        self.acks_done.set()
        self.ended_reason: str | None = None
        self.join_t0 = 0
        self.live_at: float | None = None  # epoch s, from the latest `countdown`
        self.ends_at: float | None = None  # epoch s, from `live`
        self.recv = 0
        self.next_cand = 0
        self.pending = 0
        self.nacks = 0
        on = self.sio.on
        on("signal", self._on_signal, namespace=NAMESPACE)
        on("partner_joined", self._on_partner_joined, namespace=NAMESPACE)
        on("countdown", self._on_countdown, namespace=NAMESPACE)
        on("live", self._on_live, namespace=NAMESPACE)
        on("ended", self._on_ended, namespace=NAMESPACE)
        on("disconnect", self._on_disconnect, namespace=NAMESPACE)

    # events (plain functions: python-socketio calls them without a coroutine)

    def _on_signal(self, data: Any) -> None:
        now = perf_ns()
        w = self.w
        self.recv += 1
        w.counters[w.base + RECV] += 1
        w.last_recv_ns = max(w.last_recv_ns, now)
        if not isinstance(data, dict):
            w.error("bad_signal_payload")
            return
        kind = data.get("type")
        text: Any = None
        if kind == "candidate":
            cand = data.get("candidate")
            text = cand.get("candidate") if isinstance(cand, dict) else None
            if isinstance(text, str):
                try:
                    seq = int(text[10 : text.index(" ")])
                except ValueError:
                    seq = -1
                if seq != self.next_cand:
                    w.error("out_of_order")
                self.next_cand = seq + 1
            else:
                w.error("bad_candidate")
        elif kind in ("offer", "answer"):
            text = data.get("sdp")
            self.got_sdp.set()
        elif kind == "end-of-candidates":
            self.got_eoc.set()
            return
        else:
            w.error("unknown_signal_type")
            return
        ts = extract_ts(text) if isinstance(text, str) else None
        if ts is None:
            w.error("no_timestamp")
        else:
            w.relay_ns.append(now - ts)

    def _on_partner_joined(self, data: Any) -> None:
        self.partner_joined.set()

    def _on_countdown(self, data: Any) -> None:
        if self.join_t0 and not self.got_countdown.is_set():
            self.w.j2c_ns.append(perf_ns() - self.join_t0)
        self.got_countdown.set()
        live_at = parse_instant(data.get("live_at")) if isinstance(data, dict) else None
        if live_at is None:
            self.w.error("countdown_without_live_at")
        else:
            self.live_at = live_at  # a restarted countdown announces a new instant

    def _on_live(self, data: Any) -> None:
        now = time.time()  # wall clock: the server announced wall-clock instants
        if self.got_live.is_set():
            self.w.error("live_twice")
            return
        if self.live_at is None:
            self.w.error("live_without_live_at")
        else:
            self.w.live_late_ms.append(1000 * (now - self.live_at))
        self.ends_at = parse_instant(data.get("ends_at")) if isinstance(data, dict) else None
        if self.ends_at is None:
            self.w.error("live_without_ends_at")
        self.got_live.set()

    def _on_ended(self, data: Any) -> None:
        now = time.time()
        if self.got_ended.is_set():
            return
        reason = data.get("reason") if isinstance(data, dict) else None
        self.ended_reason = str(reason)
        if reason == "time_limit" and self.ends_at is not None:
            self.w.ended_late_ms.append(1000 * (now - self.ends_at))
        self.got_ended.set()

    def _on_disconnect(self, *args: Any) -> None:
        self.gone = True
        for ev in (
            self.partner_joined,
            self.got_sdp,
            self.got_eoc,
            self.got_countdown,
            self.got_live,
            self.got_ended,
            self.acks_done,
        ):
            ev.set()

    def _on_ack(self, *args: Any) -> None:
        self.pending -= 1
        ack = args[0] if args else None
        w = self.w
        if isinstance(ack, dict) and ack.get("ok") is True:
            w.counters[w.base + ACKED] += 1
        else:
            self.nacks += 1
            w.error("signal_nack_" + _error_code(ack))
        if self.pending <= 0:
            self.acks_done.set()

    # actions

    async def connect(self) -> None:
        cfg = self.w.cfg
        try:
            async with asyncio.timeout(cfg.connect_timeout * 2):
                url = cfg.url if self.side == 1 else cfg.url_b
                if cfg.call_id_query:  # the routing hint: both users to one process
                    url += "?call_id=" + quote(str(self.call_id), safe="")
                await self.sio.connect(
                    url,
                    auth={"token": self.token},
                    transports=["websocket"],
                    namespaces=[NAMESPACE],
                    wait_timeout=cfg.connect_timeout,
                )
        except TimeoutError:
            raise CallError("connect_timeout") from None
        except socketio.exceptions.ConnectionError as exc:
            raise CallError("connect_error", str(exc)) from None
        except aiohttp.ClientError as exc:
            raise CallError("connect_error", repr(exc)) from None

    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        try:
            ack = await self.sio.call(
                event, data, namespace=NAMESPACE, timeout=self.w.cfg.ack_timeout
            )
        except socketio.exceptions.TimeoutError:
            raise CallError(f"{event}_ack_timeout") from None
        except socketio.exceptions.BadNamespaceError:
            raise CallError("disconnected") from None
        if not isinstance(ack, dict) or ack.get("ok") is not True:
            raise CallError(f"{event}_{_error_code(ack)}", repr(ack)[:300])
        return ack

    async def send(self, kind: str, payload: dict[str, Any]) -> None:
        w = self.w
        payload["call_id"] = self.call_id
        payload["type"] = kind
        self.pending += 1
        self.acks_done.clear()
        try:
            await self.sio.emit("signal", payload, namespace=NAMESPACE, callback=self._on_ack)
        except socketio.exceptions.BadNamespaceError:
            self.pending -= 1
            raise CallError("disconnected") from None
        w.counters[w.base + SENT] += 1

    async def send_sdp(self, kind: str) -> None:
        prefix, suffix = self.w.sdp_offer if kind == "offer" else self.w.sdp_answer
        ts = perf_ns()
        if self.w.first_send_ns == 0 or ts < self.w.first_send_ns:
            self.w.first_send_ns = ts
        await self.send(kind, {"sdp": f"{prefix}{ts}{suffix}"})

    async def send_candidates(self) -> None:
        for seq in range(self.w.cfg.candidates):
            cand = {
                "candidate": candidate_string(seq, self.side, perf_ns()),
                "sdpMid": "0",
                "sdpMLineIndex": 0,
                "usernameFragment": "abcd",
            }
            await self.send("candidate", {"candidate": cand})
        await self.send("end-of-candidates", {})

    async def wait(self, ev: asyncio.Event, limit_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(limit_s):
                await ev.wait()
        except TimeoutError:
            raise CallError(f"{what}_timeout") from None
        if self.gone:
            raise CallError(f"disconnected_before_{what}")

    async def close(self) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(3):
                await self.sio.disconnect()


def _error_code(ack: Any) -> str:
    if isinstance(ack, dict):
        err = ack.get("error")
        code = err.get("code") if isinstance(err, dict) else None
        if isinstance(code, str):
            return code
    return "bad_ack"


class Worker:
    def __init__(
        self,
        *,
        cfg: Config,
        index: int,
        calls: Sequence[int],
        counters: Any,
        go: Any,
        stop: Any,
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.calls = calls
        self.counters = counters
        self.base = index * NFIELDS
        self.mp_go = go
        self.mp_stop = stop
        self.relay_ns = array.array("q")
        self.j2c_ns = array.array("q")
        self.live_late_ms = array.array("d")
        self.ended_late_ms = array.array("d")
        self.errors: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.samples: dict[str, str] = {}
        self.first_send_ns = 0
        self.last_recv_ns = 0
        self.sdp_offer = sdp_parts("setup:actpass", cfg.sdp_bytes)
        self.sdp_answer = sdp_parts("setup:active", cfg.sdp_bytes)
        self.session: aiohttp.ClientSession
        self.go = asyncio.Event()
        self.stopping = asyncio.Event()
        self.connect_sem = asyncio.Semaphore(max(1, cfg.connect_concurrency))
        self.tasks: set[asyncio.Task[None]] = set()

    def error(self, reason: str) -> None:
        self.errors[reason] += 1

    def inc(self, field: int) -> None:
        self.counters[self.base + field] += 1

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        t_start = time.monotonic()
        cpu_start = time.process_time()
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            json_serialize=lambda o: orjson.dumps(o).decode(),
            timeout=aiohttp.ClientTimeout(total=cfg.connect_timeout * 2),
        )
        watch = asyncio.create_task(self._watch(t_start + cfg.max_time))
        try:
            if cfg.mode == "saturate":
                for i in self.calls:
                    self._launch(i)
            else:
                await self._steady(t_start + cfg.max_time)
            if self.tasks:
                await asyncio.wait(
                    set(self.tasks),
                    timeout=max(1.0, t_start + cfg.max_time - time.monotonic()),
                )
        finally:
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=10)
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await self.session.close()
        return {
            "index": self.index,
            "counters": list(self.counters[self.base : self.base + NFIELDS]),
            "errors": dict(self.errors),
            "failures": dict(self.failures),
            "samples": self.samples,
            "relay_ns": self.relay_ns.tobytes(),
            "j2c_ns": self.j2c_ns.tobytes(),
            "live_late_ms": self.live_late_ms.tobytes(),
            "ended_late_ms": self.ended_late_ms.tobytes(),
            "first_send_ns": self.first_send_ns,
            "last_recv_ns": self.last_recv_ns,
            "cpu_s": time.process_time() - cpu_start,
            "wall_s": time.monotonic() - t_start,
        }

    async def _watch(self, deadline: float) -> None:
        """Relay the parent's go/stop flags into asyncio events; enforce the deadline."""
        cpu0 = time.process_time()
        while True:
            self.counters[self.base + CPU_MS] = int((time.process_time() - cpu0) * 1000)
            if not self.go.is_set() and self.mp_go.is_set():
                self.go.set()
            if self.mp_stop.is_set() or time.monotonic() >= deadline:
                self.stopping.set()
                self.go.set()
                for task in list(self.tasks):
                    task.cancel()
                return
            await asyncio.sleep(0.002 if not self.go.is_set() else 0.05)

    def _launch(self, i: int) -> asyncio.Task[None]:
        task = asyncio.create_task(self._run_call(i))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _steady(self, deadline: float) -> None:
        cfg = self.cfg
        interval = cfg.procs / cfg.rate
        cap = asyncio.Semaphore(max(1, cfg.max_concurrent // cfg.procs))
        loop = asyncio.get_running_loop()
        next_t = loop.time() + interval * self.index / cfg.procs
        for i in self.calls:
            if self.stopping.is_set():
                break
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await cap.acquire()
            except TimeoutError:
                break
            delay = next_t - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
                if self.stopping.is_set():
                    cap.release()
                    break
            next_t = max(next_t, loop.time()) + interval
            task = self._launch(i)
            task.add_done_callback(lambda _t: cap.release())

    async def _create_call(self, token: str, partner: str) -> Any:
        cfg = self.cfg
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=cfg.schedule_ahead_s)
        body = {
            "partner_id": partner,
            "scheduled_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        try:
            async with self.session.post(
                cfg.url.rstrip("/") + "/api/calls",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                raw = await resp.read()
                if resp.status != 201:
                    raise CallError(f"rest_{resp.status}", raw[:300].decode(errors="replace"))
                data = orjson.loads(raw)
        except TimeoutError:
            limit = cfg.connect_timeout * 2
            raise CallError("rest_timeout", f"no answer in {limit:g} s") from None
        except aiohttp.ClientError as exc:
            raise CallError("rest_error", repr(exc)) from None
        except orjson.JSONDecodeError:
            raise CallError("rest_bad_json") from None
        try:
            return data["call"]["id"]
        except (KeyError, TypeError):
            raise CallError("rest_bad_body", repr(data)[:300]) from None

    async def _run_call(self, i: int) -> None:
        self.inc(STARTED)
        peers: list[Peer] = []
        reason: str | None = None
        detail = ""
        try:
            await self._call(i, peers)
        except CallError as exc:
            reason, detail = exc.reason, exc.detail
        except asyncio.CancelledError:
            reason = "aborted"
        except Exception as exc:  # counted per reason, never fatal
            reason, detail = type(exc).__name__, str(exc)
        finally:
            await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        if reason is None:
            self.inc(OK)
        else:
            self.inc(FAILED)
            self.failures[reason] += 1
            if detail and reason not in self.samples:
                self.samples[reason] = detail[:300]

    async def _call(self, i: int, peers: list[Peer]) -> None:
        cfg = self.cfg
        ua, ub = user_id(cfg.user_format, i, "a"), user_id(cfg.user_format, i, "b")
        ta, tb = make_token(cfg.jwt_secret, ua), make_token(cfg.jwt_secret, ub)
        call_id: Any = await self._create_call(ta, ub) if cfg.rest else cfg.first_call_id + i
        a = Peer(self, 1, ua, ta, call_id)
        b = Peer(self, 2, ub, tb, call_id)
        peers += (a, b)
        async with self.connect_sem:
            # wait for both (each is bounded) so that neither is left connecting
            done = await asyncio.gather(a.connect(), b.connect(), return_exceptions=True)
        for res in done:
            if isinstance(res, BaseException):
                raise res

        join = {"call_id": call_id}
        ack_a = await a.call("join", join)
        b.join_t0 = perf_ns()
        ack_b = await b.call("join", join)
        if ack_b.get("role") == "offerer":
            offerer, answerer = b, a
        elif ack_a.get("role") == "offerer":
            offerer, answerer = a, b
        else:
            raise CallError("no_offerer", f"roles {ack_a.get('role')}/{ack_b.get('role')}")
        await answerer.wait(answerer.partner_joined, cfg.signal_timeout, "partner_joined")
        self.inc(JOINED)

        if cfg.mode == "saturate" and not self.go.is_set():
            self.inc(READY)
            t_wait = perf_ns()
            try:
                async with asyncio.timeout(cfg.barrier_timeout + 5):
                    await self.go.wait()
            except TimeoutError:
                raise CallError("barrier_timeout") from None
            b.join_t0 += perf_ns() - t_wait  # join->countdown excludes the barrier wait
            if self.stopping.is_set():
                raise CallError("aborted")

        await asyncio.gather(self._offer_side(offerer), self._answer_side(answerer))
        await b.wait(b.got_countdown, cfg.signal_timeout, "countdown")
        await a.wait(a.got_ended, cfg.ended_timeout, "ended")
        await b.wait(b.got_ended, cfg.ended_timeout, "ended")
        self.inc(ENDED)
        for p in peers:
            if p.ended_reason != "time_limit":
                raise CallError(f"ended_{p.ended_reason}")
            await p.wait(p.acks_done, cfg.ack_timeout, "signal_ack")
            if p.nacks:
                raise CallError("signal_nack")
            if p.recv != cfg.candidates + 2:
                raise CallError("signals_missing", f"got {p.recv} of {cfg.candidates + 2}")

    async def _offer_side(self, p: Peer) -> None:
        await p.send_sdp("offer")
        await p.send_candidates()
        await p.wait(p.got_sdp, self.cfg.signal_timeout, "answer")
        await p.wait(p.got_eoc, self.cfg.signal_timeout, "remote_candidates")
        await p.call("connected", {"call_id": p.call_id})

    async def _answer_side(self, p: Peer) -> None:
        await p.wait(p.got_sdp, self.cfg.signal_timeout, "offer")
        await p.send_sdp("answer")
        await p.send_candidates()
        await p.wait(p.got_eoc, self.cfg.signal_timeout, "remote_candidates")
        await p.call("connected", {"call_id": p.call_id})


def _run_loop(
    factory: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(factory())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(factory())


def worker_main(
    *,
    cfg: Config,
    index: int,
    calls: range,
    counters: Any,
    go: Any,
    stop: Any,
    results: Any,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        result = _run_loop(
            lambda: Worker(
                cfg=cfg, index=index, calls=calls, counters=counters, go=go, stop=stop
            ).run()
        )
    except BaseException as exc:  # reported; never hang the parent
        result = {"index": index, "crash": f"{type(exc).__name__}: {exc}"}
    results.put(result)


# -- parent side ---------------------------------------------------------------


def split_calls(n: int, k: int) -> list[range]:
    size, extra = divmod(n, k)
    out, start = [], 0
    for j in range(k):
        stop = start + size + (1 if j < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def run(cfg: Config, json_path: str | None, server_pids: Sequence[int] = ()) -> int:
    ctx = mp.get_context("spawn")
    counters = multiprocessing.sharedctypes.RawArray("q", cfg.procs * NFIELDS)
    go = ctx.Event()
    stop = ctx.Event()
    results: Any = ctx.Queue()
    parts = split_calls(cfg.calls, cfg.procs)
    procs = [
        ctx.Process(
            target=worker_main,
            kwargs={
                "cfg": cfg,
                "index": j,
                "calls": parts[j],
                "counters": counters,
                "go": go,
                "stop": stop,
                "results": results,
            },
            name=f"loadgen-{j}",
            daemon=True,
        )
        for j in range(cfg.procs)
    ]

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored
    t0 = time.monotonic()
    srv_cpu0 = cpu_seconds(server_pids)
    for p in procs:
        p.start()

    def total(field: int) -> int:
        return sum(counters[j * NFIELDS + field] for j in range(cfg.procs))

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

    totals = {
        "started": total(STARTED),
        "ok": total(OK),
        "failed": total(FAILED),
        "recv": total(RECV),
        "sent": total(SENT),
        "acked": total(ACKED),
    }
    summary = summarize(asdict(cfg), collected, wall, peak_rate, totals)
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
