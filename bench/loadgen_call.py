"""One call of the load generator: its two peers and the script they follow.

``Peer`` is one user's python-socketio client; ``CallRunner`` holds what the
calls of one worker process share (config, HTTP session, counters, samples)
and runs one call end to end (``run_call``): ``POST /api/calls``, both
``join``, offer/answer and candidates, ``connected``, then ``countdown`` /
``live`` / ``ended``. Also the run's ``Config`` and the token and user-id
helpers the CLI checks its options with. ``loadgen_workers.py`` schedules
these calls in worker processes; ``loadgen.py`` is the CLI.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import orjson
import socketio
from loadgen_payload import candidate_string, extract_ts, sdp_parts
from loadgen_stats import parse_instant

NAMESPACE = "/call"

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


class Peer:
    """One user's socket in one call."""

    def __init__(self, worker: CallRunner, side: int, user: str, token: str, call_id: Any) -> None:
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


class CallRunner:
    """What the calls of one worker process share, and the script of one call."""

    def __init__(self, *, cfg: Config, index: int, counters: Any) -> None:
        self.cfg = cfg
        self.index = index
        self.counters = counters
        self.base = index * NFIELDS
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

    def error(self, reason: str) -> None:
        self.errors[reason] += 1

    def inc(self, field: int) -> None:
        self.counters[self.base + field] += 1

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

    async def run_call(self, i: int) -> None:
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
