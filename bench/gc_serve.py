"""The server's CLI with its cyclic-collector pauses timed.

    .venv/bin/python bench/gc_serve.py PAUSES.jsonl serve [--host H] [--port P]

Runs ``python -m signaling`` in this process with a ``gc.callbacks`` hook
that times every collection; at exit (SIGTERM or Ctrl-C stop the server
cleanly) it writes one JSON line per collection of generation 1 or 2,
``[unix_time_of_start, generation, pause_ms]``, and one summary line per
generation including 0. A full (generation 2) collection stops the event
loop, so its pauses show up as late ``live`` and ``ended``:
``bench/clock_bench.py`` runs the server this way and reports them per cell.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any


class PauseLog:
    def __init__(self) -> None:
        self.started_at = 0.0
        self.started_wall = 0.0
        self.pauses: list[tuple[float, int, float]] = []
        self.young: list[float] = []

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started_wall = time.time()
            self.started_at = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self.started_at) * 1e3
        if info["generation"] == 0:
            self.young.append(pause_ms)  # thousands of them: only summarised
        else:
            self.pauses.append((self.started_wall, info["generation"], pause_ms))

    def write(self, path: Path) -> None:
        lines = [json.dumps([round(t, 4), g, round(ms, 3)]) for t, g, ms in self.pauses]
        for generation in (0, 1, 2):
            times = self.young if generation == 0 else [
                ms for _, g, ms in self.pauses if g == generation
            ]  # fmt: skip
            summary = {"generation": generation, "n": len(times)}
            if times:
                summary |= {"max_ms": round(max(times), 3), "total_ms": round(sum(times), 1)}
            lines.append(json.dumps(summary))
        path.write_text("\n".join(lines) + "\n")


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    pause_log = PauseLog()
    gc.callbacks.append(pause_log)
    atexit.register(pause_log.write, out)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from signaling.__main__ import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
