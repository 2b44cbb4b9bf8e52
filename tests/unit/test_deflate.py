"""``SIGNALING_WS_DEFLATE``: off unless asked for."""

from __future__ import annotations

import pytest

from signaling.config import ConfigError, load_settings
from tests.support import SECRET

BASE = {"SIGNALING_JWT_SECRET": SECRET}


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, False), ("", False), ("0", False), ("1", True), ("on", True)]
)
def test_the_setting(raw: str | None, expected: bool) -> None:
    env = dict(BASE) if raw is None else {**BASE, "SIGNALING_WS_DEFLATE": raw}
    assert load_settings(env).ws_deflate is expected


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SIGNALING_WS_DEFLATE"):
        load_settings({**BASE, "SIGNALING_WS_DEFLATE": "gzip"})
