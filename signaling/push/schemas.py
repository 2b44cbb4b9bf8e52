"""Bodies of the push routes: a browser's ``PushSubscription.toJSON()``."""

from __future__ import annotations

import binascii
from typing import Annotated
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from persistence.push import MAX_ENDPOINT
from signaling.push.vapid import b64url_decode

#: RFC 8291: the browser's key is an uncompressed P-256 point, its auth secret 16 bytes.
P256DH_BYTES = 65
AUTH_BYTES = 16


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    return value


def _decoded(value: str, length: int) -> bytes:
    try:
        raw = b64url_decode(value)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64url") from None
    if len(raw) != length:
        raise ValueError(f"must decode to {length} bytes")
    return raw


def _p256dh(value: str) -> str:
    raw = _decoded(value, P256DH_BYTES)
    try:
        # A point on the curve, not only 65 bytes: encrypting to anything
        # else would fail at every push.
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ValueError("must be an uncompressed P-256 public key") from None
    return value


def _auth(value: str) -> str:
    _decoded(value, AUTH_BYTES)
    return value


_B64URL = r"^[A-Za-z0-9_-]+={0,2}$"


class PushKeys(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    p256dh: Annotated[str, Field(max_length=100, pattern=_B64URL), AfterValidator(_p256dh)]
    auth: Annotated[str, Field(max_length=32, pattern=_B64URL), AfterValidator(_auth)]


class Subscribe(BaseModel):
    """``POST /api/push/subscriptions``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    endpoint: Annotated[
        str, Field(min_length=1, max_length=MAX_ENDPOINT), AfterValidator(_https_url)
    ]
    keys: PushKeys
    #: what the browser's toJSON() carries; the push service's 404/410 is what counts
    expirationTime: int | float | None = None  # noqa: N815  (the browser's name)


class Unsubscribe(BaseModel):
    """``DELETE /api/push/subscriptions``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT)]
