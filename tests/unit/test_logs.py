"""signaling.logs: every record is one line of valid JSON."""

from __future__ import annotations

import json
import logging
import sys

from signaling.logs import JsonFormatter


def line_of(record: logging.LogRecord) -> dict[str, object]:
    text = JsonFormatter().format(record)
    assert "\n" not in text and "\r" not in text, text
    parsed = json.loads(text)
    assert isinstance(parsed, dict)
    return parsed


def record(msg: object, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "engineio.server", "levelno": 30, "levelname": "WARNING"})
    made.msg, made.args = msg, args
    made.__dict__.update(extra)
    return made


def test_client_text_stays_inside_json_strings() -> None:
    fake = 'x\n{"level": "error", "msg": "forged"}\n'
    line = line_of(record("Invalid session %s", fake, why=fake))
    assert line["msg"] == f"Invalid session {fake}" and line["why"] == fake
    assert line["level"] == "warning"


def test_lone_surrogates_bytes_and_odd_keys_still_make_json() -> None:
    line = line_of(record("token %s", "\udcff\ud800", raw=b"\xff\x00", odd={(1, 2): "t", 3: 4}))
    assert line["msg"] == "token \udcff\ud800"
    assert line["raw"] == str(b"\xff\x00")


def test_a_message_that_cannot_be_formatted_is_still_a_line() -> None:
    line = line_of(record("%d packets from %s", "not a number"))
    assert "%d packets from %s" in str(line["msg"]) and "not a number" in str(line["msg"])


def test_a_traceback_is_one_field() -> None:
    try:
        raise ValueError('bad\n{"level": "error"}')
    except ValueError:
        failed = record("handler failed")
        failed.exc_info = sys.exc_info()
    line = line_of(failed)
    assert "ValueError" in str(line["exc"])
