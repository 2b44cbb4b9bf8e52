"""One JSON line per event: the message plus every ``extra`` field."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import orjson

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Every record becomes one line of valid JSON, whatever it carries: text
    from a client (newlines, quotes, lone surrogates, bytes) stays inside
    JSON strings, and a record whose message cannot be formatted is still a
    line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _dumps(line)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a library's bad format arguments: keep both, unformatted
        return f"{record.msg!r} % {record.args!r}"


def _dumps(line: dict[str, Any]) -> str:
    try:
        return orjson.dumps(line, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        # orjson refuses lone surrogates and non-string keys; the standard
        # library escapes the first (\udxxx) and skips the second.
        return json.dumps(line, default=str, ensure_ascii=True, skipkeys=True)


def configure_logging(level: str = "INFO") -> None:
    import time

    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python's warnings, which would print raw text on stderr, become records too.
    logging.captureWarnings(True)
    # The libraries' per-packet info lines would drown the events that matter.
    for noisy in ("socketio", "engineio", "aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
