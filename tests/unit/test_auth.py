"""signaling.auth: HS256 tokens with ``sub`` and ``exp``, verified only."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from signaling.auth import TokenVerifier, mint_token
from signaling.errors import ApiError
from tests.support import SECRET

OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET)


def token(claims: dict[str, Any], *, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def in_an_hour() -> int:
    return int(time.time()) + 3600


def rejected(verifier: TokenVerifier, value: object) -> ApiError:
    with pytest.raises(ApiError) as exc:
        verifier.user_id(value)
    assert exc.value.code == "unauthorized"
    assert exc.value.status == 401
    return exc.value


def test_a_minted_token_names_its_user(verifier: TokenVerifier) -> None:
    assert verifier.user_id(mint_token(SECRET, "alice")) == "alice"
    claims = jwt.decode(mint_token(SECRET, "alice", ttl_s=60), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert 0 < claims["exp"] - time.time() <= 60


def test_a_token_from_another_issuer_with_the_same_secret(verifier: TokenVerifier) -> None:
    assert verifier.user_id(token({"sub": "42", "exp": in_an_hour(), "role": "x"})) == "42"


def test_an_expired_token(verifier: TokenVerifier) -> None:
    error = rejected(verifier, token({"sub": "alice", "exp": int(time.time()) - 5}))
    assert "expired" in error.message


def hs512_token() -> str:
    # Only our 42-byte SECRET makes the point (same key, other algorithm); PyJWT
    # rightly finds it short for SHA-512.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return token({"sub": "alice", "exp": in_an_hour()}, algorithm="HS512")


#: Built when the test runs (exp is relative to now).
BAD_TOKENS: dict[str, Callable[[], object]] = {
    "wrong secret": lambda: token({"sub": "alice", "exp": in_an_hour()}, key=OTHER_SECRET),
    "no exp": lambda: token({"sub": "alice"}),
    "no sub": lambda: token({"exp": in_an_hour()}),
    "numeric sub": lambda: token({"sub": 42, "exp": in_an_hour()}),
    "empty sub": lambda: token({"sub": "", "exp": in_an_hour()}),
    "sub too long": lambda: token({"sub": "u" * 65, "exp": in_an_hour()}),
    "alg none": lambda: token({"sub": "alice", "exp": in_an_hour()}, key="", algorithm="none"),
    "alg HS512": hs512_token,
    "garbage": lambda: "not.a.jwt",
    "empty": lambda: "",
    "too long": lambda: "a" * 5000,
    "not a string": lambda: 12345,
    "missing": lambda: None,
}


@pytest.mark.parametrize("label", BAD_TOKENS)
def test_bad_tokens_are_unauthorized(verifier: TokenVerifier, label: str) -> None:
    rejected(verifier, BAD_TOKENS[label]())


def test_the_authorization_header(verifier: TokenVerifier) -> None:
    valid = mint_token(SECRET, "bob")
    assert verifier.user_from_header(f"Bearer {valid}") == "bob"
    for header in (None, "", valid, f"Basic {valid}", "Bearer ", f"bearer {valid}"):
        with pytest.raises(ApiError) as exc:
            verifier.user_from_header(header)
        assert exc.value.code == "unauthorized", header


@pytest.mark.parametrize("user_id", ["", "u" * 65])
def test_minting_needs_a_sensible_user_id(user_id: str) -> None:
    with pytest.raises(ApiError) as exc:
        mint_token(SECRET, user_id)
    assert exc.value.code == "invalid"


def test_a_token_is_verified_once_and_its_expiry_checked_on_every_use(
    verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(raw: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(raw)
        return real_decode(raw, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    soon = token({"sub": "alice", "exp": time.time() + 60})
    assert verifier.user_id(soon) == verifier.user_id(soon) == "alice"
    assert decoded == [soon]
    forged = token({"sub": "alice", "exp": in_an_hour()}, key=OTHER_SECRET)
    for _ in range(2):  # a failure is never kept: verified (and refused) each time
        with pytest.raises(ApiError):
            verifier.user_id(forged)
    assert decoded == [soon, forged, forged]
    later = time.time() + 61
    monkeypatch.setattr("signaling.auth.time.time", lambda: later)
    with pytest.raises(ApiError, match="expired"):
        verifier.user_id(soon)  # kept, but expired since
