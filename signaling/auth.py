"""JWT (HS256) verification and minting with PyJWT."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import jwt

from signaling.errors import ApiError, unauthorized

_MAX_USER_ID = 64


@dataclass(frozen=True)
class Identity:
    """Who a valid token names, and until when (``exp``, seconds since the epoch)."""

    user_id: str
    expires_at: float


class TokenVerifier:
    """Verifies the tokens another service issues: HS256, ``sub``, ``exp``."""

    def __init__(self, secret: str, cache_size: int = 4096) -> None:
        self._secret = secret
        # A client uses one token for its REST calls and its sockets, and
        # reconnects with it: verifying it again costs about 0.1-0.2 ms of
        # PyJWT each time. Only tokens that verified are kept (a failure
        # raises, and lru_cache keeps nothing); expiry is checked on every use.
        self._verified = functools.lru_cache(maxsize=cache_size)(self._verify)

    def user_id(self, token: object) -> str:
        return self.identity(token).user_id

    def identity(self, token: object) -> Identity:
        # A JWT is ASCII (base64url and dots); anything else, a lone surrogate
        # or an undecodable header byte included, is refused before PyJWT,
        # which would raise on encoding it.
        if not isinstance(token, str) or not token or len(token) > 4096 or not token.isascii():
            raise unauthorized()
        identity = self._verified(token)
        if identity.expires_at <= time.time():
            raise unauthorized("token expired")
        return identity

    def _verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise unauthorized() from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > _MAX_USER_ID:
            raise unauthorized("token subject must be a user id string")
        # PyJWT checked that exp is a number (an int or a float).
        return Identity(sub, float(claims["exp"]))

    def user_from_header(self, header: str | None) -> str:
        if not header or not header.startswith("Bearer "):
            raise unauthorized("Authorization: Bearer <token> required")
        return self.user_id(header[len("Bearer ") :].strip())


def mint_token(secret: str, user_id: str, ttl_s: int = 24 * 3600) -> str:
    """A token for ``user_id`` (the CLI ``token`` command and the dev login)."""
    if not user_id or len(user_id) > _MAX_USER_ID:
        raise ApiError("invalid", f"user id must be 1 to {_MAX_USER_ID} characters")
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256")
