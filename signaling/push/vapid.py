"""The server's VAPID key pair (RFC 8292) and the ``Authorization`` header it signs."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

#: How long a signed JWT is valid (RFC 8292 allows at most 24 hours) and how
#: long before its expiry a new one is signed.
JWT_LIFETIME_S = 12 * 3600
_RENEW_BEFORE_S = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding (browsers send it without)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def origin_of(endpoint: str) -> str:
    """The JWT audience: the push service's scheme, host and port."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class VapidKeys:
    """The private key from configuration and what is derived from it."""

    private_key: str
    subject: str
    #: the public key as browsers take it (``applicationServerKey``)
    public_key: str = field(init=False)
    _vapid: Vapid02 = field(init=False, repr=False)
    #: signed headers by audience, with their expiry: one ECDSA signature per
    #: push service per hour rather than per push
    _signed: dict[str, tuple[float, str]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._vapid = Vapid02.from_raw(self.private_key.encode())
        point = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = b64url(point)

    @classmethod
    def generate(cls, subject: str) -> VapidKeys:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(b64url(key.private_numbers().private_value.to_bytes(32, "big")), subject)

    def authorization(self, endpoint: str) -> str:
        """``vapid t=<JWT>, k=<public key>`` for a push to ``endpoint``."""
        audience = origin_of(endpoint)
        now = time.time()
        cached = self._signed.get(audience)
        if cached is not None and cached[0] - _RENEW_BEFORE_S > now:
            return cached[1]
        expires = int(now) + JWT_LIFETIME_S
        claims = {"aud": audience, "exp": expires, "sub": self.subject}
        header = str(self._vapid.sign(claims)["Authorization"])
        self._signed[audience] = (expires, header)
        return header
