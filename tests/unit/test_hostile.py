"""The pieces of the hostile-client fixes that need no server (the servers'
side is tests/functional/test_hostile.py)."""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from signaling.auth import TokenVerifier, mint_token
from signaling.config import ConfigError, load_settings
from signaling.edge import UnknownNamespace, _polling_problem
from signaling.errors import ApiError
from tests.support import SECRET

BASE = {"SIGNALING_JWT_SECRET": SECRET}


def test_auth_timeout_setting() -> None:
    assert load_settings(BASE).auth_timeout_s == 10.0
    assert load_settings({**BASE, "SIGNALING_AUTH_TIMEOUT_S": "2.5"}).auth_timeout_s == 2.5
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(ConfigError, match="SIGNALING_AUTH_TIMEOUT_S"):
            load_settings({**BASE, "SIGNALING_AUTH_TIMEOUT_S": bad})


@pytest.mark.parametrize(
    "token",
    [
        "\ud800",
        "ab\udcffcd",  # an undecodable header byte, as aiohttp hands it over
        "é" * 20,
        mint_token(SECRET, "alice") + "\udcff",
        "\x00",
    ],
)
def test_a_token_that_is_not_ascii_is_unauthorized(token: str) -> None:
    verifier = TokenVerifier(SECRET)
    for check in (verifier.user_id, lambda t: verifier.user_from_header("Bearer " + t)):
        with pytest.raises(ApiError) as caught:
            check(token)
        assert caught.value.code == "unauthorized"


def test_a_good_token_still_passes() -> None:
    verifier = TokenVerifier(SECRET)
    token = mint_token(SECRET, "alice")
    assert verifier.user_id(token) == "alice"
    assert verifier.user_from_header(f"Bearer {token}") == "alice"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", None),
        (b"40/call,{}", None),
        (b'42/call,1["join",{}]\x1e3\x1e2probe', None),
        (b"\xff", "the body is not UTF-8"),
        ("\x1e".join(["3"] * 17).encode(), "more than 16 packets"),
        (b"9", "not Engine.IO packets"),
        (b"bAAAA", "not Engine.IO packets"),
        (b"40\x1e", "not Engine.IO packets"),
    ],
)
def test_polling_uploads(body: bytes, problem: str | None) -> None:
    assert _polling_problem(body) == problem


@pytest.mark.parametrize("authenticate", [None, lambda auth: "alice"])
async def test_an_unknown_namespace_is_refused(authenticate: Any) -> None:
    """Without an authenticator every other namespace is ``unauthorized``;
    with one, a caller it accepts learns ``not_found``."""
    namespace = UnknownNamespace(authenticate)
    with pytest.raises(socketio.exceptions.ConnectionRefusedError) as caught:
        await namespace.trigger_event("connect", "/", "sid", {}, {"token": "t"})
    code = "unauthorized" if authenticate is None else "not_found"
    assert caught.value.error_args == {
        "message": code,
        "data": {"code": code, "message": caught.value.error_args["data"]["message"]},
    }
    assert await namespace.trigger_event("disconnect", "/", "sid", "reason") is None
