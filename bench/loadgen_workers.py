"""The load generator's worker processes: each runs its block of calls on an
event loop of its own (all at once, or at a steady rate under a cap) and
reports its samples; the parent merges them (``merge``)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from typing import Any

import aiohttp
import orjson
from loadgen_call import (
    ACKED,
    CPU_MS,
    FAILED,
    NFIELDS,
    OK,
    RECV,
    SENT,
    STARTED,
    CallRunner,
    Config,
)
from loadgen_stats import summarize


class Worker(CallRunner):
    """One worker process's calls: launches them and enforces the deadline."""

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
        super().__init__(cfg=cfg, index=index, counters=counters)
        self.calls = calls
        self.mp_go = go
        self.mp_stop = stop
        self.tasks: set[asyncio.Task[None]] = set()

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
        task = asyncio.create_task(self.run_call(i))
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


def split_calls(n: int, k: int) -> list[range]:
    size, extra = divmod(n, k)
    out, start = [], 0
    for j in range(k):
        stop = start + size + (1 if j < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def start_workers(cfg: Config, counters: Any, go: Any, stop: Any, results: Any) -> list[Any]:
    """Start ``cfg.procs`` worker processes (spawned: a clean interpreter each),
    calls divided in contiguous blocks."""
    ctx = mp.get_context("spawn")
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
    for p in procs:
        p.start()
    return procs


def counter_total(counters: Any, procs: int, field: int) -> int:
    """One counter summed over the worker processes' rows."""
    return sum(counters[j * NFIELDS + field] for j in range(procs))


def merge(
    cfg: Config,
    counters: Any,
    collected: dict[int, dict[str, Any]],
    wall: float,
    peak_rate: float,
) -> dict[str, Any]:
    """The run's summary from every worker's report and the shared counters."""
    procs = cfg.procs
    totals = {
        "started": counter_total(counters, procs, STARTED),
        "ok": counter_total(counters, procs, OK),
        "failed": counter_total(counters, procs, FAILED),
        "recv": counter_total(counters, procs, RECV),
        "sent": counter_total(counters, procs, SENT),
        "acked": counter_total(counters, procs, ACKED),
    }
    return summarize(asdict(cfg), collected, wall, peak_rate, totals)
