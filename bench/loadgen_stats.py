"""Figures of the call load generator: percentiles, the server's CPU from /proc,
the server's announced instants (``live_at`` / ``ends_at``), the run summary and
its printout. No socket code here; ``bench/loadgen.py`` feeds it."""

from __future__ import annotations

import array
import datetime as dt
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0 < p < 100, to a tenth) of ``values``, sorted
    or not: ``statistics.quantiles``' inclusive method, linear between the two
    closest ranks, as numpy's default. None when there are none."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=1000, method="inclusive")[round(p * 10) - 1]


def distribution(values_ms: Sequence[float], *ps: float) -> dict[str, Any]:
    """``{n, p<p>..., max}`` of values in milliseconds."""
    out: dict[str, Any] = {"n": len(values_ms)}
    for p in ps:
        out[f"p{p:g}"] = _round(percentile(values_ms, p))
    out["max"] = _round(max(values_ms) if values_ms else None)
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def parse_pids(values: Iterable[str] | str | None) -> list[int]:
    """Pids from ``"1,2"``, ``"1 2"`` or several such strings."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    pids: list[int] = []
    for value in values:
        for part in value.replace(",", " ").split():
            pids.append(int(part))
    return pids


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """CPU seconds (user + system, all threads) used so far by ``pids``, summed;
    None if any of them is gone or /proc is not there."""
    if not pids:
        return None
    total = 0.0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, USER_HZ
    except (OSError, IndexError, ValueError):
        return None
    return total


def rss_bytes(pids: Sequence[int]) -> int | None:
    """Resident set size of ``pids``, summed (``VmRSS`` of /proc/<pid>/status)."""
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
    except (OSError, IndexError, ValueError):
        return None
    return total


def parse_instant(value: Any) -> float | None:
    """An instant the server announced, as epoch seconds: an ISO 8601 string
    (``2026-11-26T01:04:05.123Z``; no offset means UTC) or a number of epoch
    seconds (a number above 1e11 is taken as epoch milliseconds)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            return None
        return seconds / 1000.0 if abs(seconds) > 1e11 else seconds
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)  # a number sent as a string
        except ValueError:
            pass
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp()
    return None


def sorted_ms_from_ns(raw: Iterable[bytes]) -> list[float]:
    values = array.array("q")
    for chunk in raw:
        values.frombytes(chunk)
    return sorted(v / 1e6 for v in values)


def sorted_ms(raw: Iterable[bytes]) -> list[float]:
    values = array.array("d")
    for chunk in raw:
        values.frombytes(chunk)
    return sorted(values)


def summarize(
    cfg: dict[str, Any],
    collected: dict[int, dict[str, Any]],
    wall: float,
    peak_rate: float,
    totals: dict[str, int],
) -> dict[str, Any]:
    """The run summary from the workers' results and the shared counters' totals
    (``started``, ``ok``, ``failed``, ``recv``, ``sent``, ``acked``)."""
    errors: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    samples: dict[str, str] = {}
    crashes: list[str] = []
    first, last, cpu = 0, 0, []
    good = []
    for res in collected.values():
        if "crash" in res:
            crashes.append(res["crash"])
            continue
        good.append(res)
        errors.update(res["errors"])
        failures.update(res["failures"])
        for k, v in res["samples"].items():
            samples.setdefault(k, v)
        if res["first_send_ns"] and (first == 0 or res["first_send_ns"] < first):
            first = res["first_send_ns"]
        last = max(last, res["last_recv_ns"])
        cpu.append(round(100 * res["cpu_s"] / max(res["wall_s"], 1e-9), 1))
    relay = sorted_ms_from_ns(r["relay_ns"] for r in good)
    j2c = sorted_ms_from_ns(r["j2c_ns"] for r in good)
    live_late = sorted_ms(r["live_late_ms"] for r in good)
    ended_late = sorted_ms(r["ended_late_ms"] for r in good)

    started, ok, failed = totals["started"], totals["ok"], totals["failed"]
    recv = totals["recv"]
    phase = (last - first) / 1e9 if first and last > first else 0.0
    lost = started - ok - failed  # workers that crashed or were terminated mid-call

    def lateness(values: list[float]) -> dict[str, Any]:
        out = distribution(values, 50, 90, 99)
        out["min"] = _round(values[0] if values else None)
        return out

    return {
        "config": cfg,
        "calls_requested": cfg["calls"],
        "calls_started": started,
        "calls_ok": ok,
        "calls_failed": failed + max(0, lost),
        "calls_not_started": cfg["calls"] - started,
        "failures": dict(failures.most_common()),
        "failure_samples": samples,
        "errors": dict(errors.most_common()),
        "signals_sent": totals["sent"],
        "signals_acked_ok": totals["acked"],
        "signals_relayed": recv,
        "signalling_phase_s": round(phase, 3),
        "signals_per_s": round(recv / phase, 1) if phase else None,
        "peak_signals_per_s_1s": round(peak_rate, 1),
        "relay_latency_ms": distribution(relay, 50, 90, 99),
        "join_to_countdown_ms": distribution(j2c, 50, 99),
        "live_lateness_ms": lateness(live_late),
        "ended_lateness_ms": lateness(ended_late),
        "wall_s": round(wall, 2),
        "generator_cpu_pct_per_proc": cpu,
        "crashes": crashes,
    }


def add_server_cpu(summary: dict[str, Any], cpu_s: float, wall: float, peak_pct: float) -> None:
    summary["server_cpu_s"] = round(cpu_s, 2)
    summary["server_cpu_pct"] = round(100 * cpu_s / wall, 1) if wall > 0 else None
    summary["server_cpu_peak_1s_pct"] = round(peak_pct, 1)
    relayed, ok = summary["signals_relayed"], summary["calls_ok"]
    summary["server_cpu_us_per_signal"] = round(1e6 * cpu_s / relayed, 1) if relayed else None
    summary["server_cpu_ms_per_call"] = round(1e3 * cpu_s / ok, 2) if ok else None


def _dist_line(d: dict[str, Any], keys: Sequence[str]) -> str:
    parts = "  ".join(f"{k} {fmt(d.get(k))}" for k in keys)
    return f"{parts} ms  (n={d['n']})"


def print_summary(s: dict[str, Any]) -> None:
    cfg = s["config"]
    target = cfg["url"] + ("" if cfg["rest"] else " (no REST)")
    mode = cfg["mode"]
    if mode == "steady":
        mode += f" {cfg['rate']}/s cap {cfg['max_concurrent']}"
    calls = f"ok {s['calls_ok']}  failed {s['calls_failed']}  not started {s['calls_not_started']}"
    signals = (
        f"relayed {s['signals_relayed']}  sent {s['signals_sent']}"
        f"  acked ok {s['signals_acked_ok']}"
    )
    rate = (
        f"{fmt(s['signals_per_s'])} over {s['signalling_phase_s']} s of signalling"
        f" (peak 1 s window {s['peak_signals_per_s_1s']:.0f})"
    )
    head = f"loadgen: {mode}, {cfg['calls']} calls, {cfg['procs']} proc(s) -> {target}"
    late_keys = ("min", "p50", "p99", "max")
    rows = [
        ("calls", calls),
        ("signals", signals),
        ("signals/s", rate),
        ("relay latency", _dist_line(s["relay_latency_ms"], ("p50", "p90", "p99", "max"))),
        ("join->countdown", _dist_line(s["join_to_countdown_ms"], ("p50", "p99", "max"))),
        ("live lateness", _dist_line(s["live_lateness_ms"], late_keys)),
        ("ended lateness", _dist_line(s["ended_lateness_ms"], late_keys)),
        ("wall time", f"{s['wall_s']} s"),
        (
            "generator CPU",
            f"{s['generator_cpu_pct_per_proc']} % per worker process over the run,"
            f" peak 1 s {s['generator_cpu_peak_1s_pct']} %",
        ),
    ]
    lines = [head] + [f"  {k:<16} {v}" for k, v in rows]
    if "server_cpu_pct" in s:
        lines.append(
            f"  server CPU       {s['server_cpu_pct']} % of one core over the run"
            f" ({s['server_cpu_s']} s), peak 1 s {s['server_cpu_peak_1s_pct']} %,"
            f" {fmt(s['server_cpu_ms_per_call'])} ms per ok call,"
            f" {fmt(s['server_cpu_us_per_signal'])} us per relayed signal (all work)"
        )
    if s["failures"]:
        lines.append(
            "  failures         " + ", ".join(f"{k} {v}" for k, v in s["failures"].items())
        )
        for k, v in s["failure_samples"].items():
            lines.append(f"    {k}: {v}")
    if s["errors"]:
        lines.append("  errors           " + ", ".join(f"{k} {v}" for k, v in s["errors"].items()))
    for c in s["crashes"]:
        lines.append(f"  worker crashed   {c}")
    print("\n".join(lines), flush=True)
