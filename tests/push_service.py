"""A Web Push service for the tests: an aiohttp app on 127.0.0.1 over TLS (a
self-signed certificate the server under test is told to trust) standing in
for the browser vendors' services, which cannot be reached from here.

It checks what a real one checks and refuses what they refuse:

- the VAPID ``Authorization: vapid t=<JWT>, k=<key>`` header (RFC 8292): an
  ES256 JWT signed by ``k``, ``aud`` the endpoint's origin, ``exp`` in the
  future and at most 24 hours away, a ``sub`` contact, and ``k`` the server's
  public key;
- ``TTL`` and ``Urgency`` headers;
- an ``aes128gcm`` body (RFC 8188/8291) that decrypts with the subscription's
  private key and auth secret (http-ece), into JSON.

Every push that passes is recorded as a :class:`Receipt`; answers can be
scripted per subscription (404, 410, 429 with ``Retry-After``, 500, a hang).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import os
import re
import ssl
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import http_ece
import jwt
import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import free_port

_VAPID = re.compile(r"vapid\s+t=(?P<t>[A-Za-z0-9._-]+)\s*,\s*k=(?P<k>[A-Za-z0-9_-]+)", re.ASCII)
URGENCIES = ("very-low", "low", "normal", "high")
#: A scripted answer that never comes (until the service stops).
HANG = "hang"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Browser:
    """One browser's push subscription, with the private half the server never sees."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def token(self) -> str:
        return self.endpoint.rsplit("/", 1)[1]

    def subscription(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives a page."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }


@dataclass(frozen=True)
class Receipt:
    """A push that passed every check, and how it was answered."""

    token: str
    payload: dict[str, Any]
    ttl: int
    urgency: str
    claims: dict[str, Any]
    status: int


@dataclass
class Scripted:
    status: int | str
    headers: dict[str, str] = field(default_factory=dict)


class FakePushService:
    def __init__(self, folder: Path, server_public_key: str) -> None:
        self.port = free_port()
        self.origin = f"https://127.0.0.1:{self.port}"
        self.server_public_key = server_public_key
        self.cert_file = folder / "push-service.pem"
        self.receipts: list[Receipt] = []
        #: what the service refused, and why: a test expects none
        self.problems: list[str] = []
        #: requests answered with a hang and not released yet
        self.hanging = 0
        self._browsers: dict[str, Browser] = {}
        self._script: dict[str, deque[Scripted]] = defaultdict(deque)
        self._arrived = asyncio.Condition()
        self._release = asyncio.Event()
        self._key_file = folder / "push-service.key"
        self._write_certificate()

    # ---------------------------------------------------------------- set-up

    def _write_certificate(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake push service")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def browser(self) -> Browser:
        """A new subscription at this service."""
        token = b64url(os.urandom(12))
        made = Browser(
            f"{self.origin}/push/{token}", ec.generate_private_key(ec.SECP256R1()), os.urandom(16)
        )
        self._browsers[token] = made
        return made

    def script(self, browser: Browser, *answers: Scripted) -> None:
        """Answer the next pushes to ``browser`` so, in order (then 201)."""
        self._script[browser.token].extend(answers)

    def release_hangs(self) -> None:
        self._release.set()

    # ----------------------------------------------------------------- views

    def to(self, browser: Browser) -> list[Receipt]:
        return [r for r in self.receipts if r.token == browser.token]

    async def wait_for(self, count: int, timeout: float = 10) -> list[Receipt]:
        """Wait until ``count`` pushes have arrived (whatever they were answered)."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.receipts) + self.hanging >= count),
                timeout,
            )
        return list(self.receipts)

    # --------------------------------------------------------------- service

    async def _push(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        browser = self._browsers.get(token)
        if browser is None:
            return web.Response(status=404)
        try:
            claims = self._check_vapid(request.headers.get("Authorization", ""))
            ttl = int(request.headers["TTL"])
            if ttl < 0:
                raise ValueError(f"TTL {ttl}")
            urgency = request.headers.get("Urgency", "normal")
            if urgency not in URGENCIES:
                raise ValueError(f"Urgency {urgency!r}")
            if request.headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError(f"Content-Encoding {request.headers.get('Content-Encoding')!r}")
            plain = http_ece.decrypt(
                await request.read(),
                private_key=browser.private_key,
                auth_secret=browser.auth,
                version="aes128gcm",
            )
            payload = orjson.loads(plain)
        except Exception as exc:  # everything a real service refuses
            self.problems.append(f"{type(exc).__name__}: {exc}")
            return web.Response(status=400, text=str(exc))
        answer = self._script[token].popleft() if self._script[token] else Scripted(201)
        if answer.status == HANG:
            async with self._arrived:
                self.hanging += 1
                self._arrived.notify_all()
            try:
                await self._release.wait()
            finally:
                self.hanging -= 1
            answer = Scripted(201)
        assert isinstance(answer.status, int)
        async with self._arrived:
            self.receipts.append(Receipt(token, payload, ttl, urgency, claims, answer.status))
            self._arrived.notify_all()
        return web.Response(status=answer.status, headers=answer.headers)

    def _check_vapid(self, header: str) -> dict[str, Any]:
        found = _VAPID.fullmatch(header.strip())
        if found is None:
            raise PermissionError(f"no VAPID authorization: {header!r}")
        if found["k"] != self.server_public_key:
            raise PermissionError("k is not the server's public key")
        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b64url_decode(found["k"])
        )
        if jwt.get_unverified_header(found["t"]).get("alg") != "ES256":
            raise PermissionError("the JWT is not ES256")
        claims: dict[str, Any] = jwt.decode(
            found["t"],
            key=public,
            algorithms=["ES256"],
            audience=self.origin,
            options={"require": ["aud", "exp", "sub"]},
        )
        if claims["exp"] > time.time() + 24 * 3600:
            raise PermissionError("exp is more than 24 hours away")
        if not str(claims["sub"]).startswith(("mailto:", "https://")):
            raise PermissionError(f"sub {claims['sub']!r} is not a contact")
        return claims

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakePushService]:
        app = web.Application()
        app.router.add_post("/push/{token}", self._push)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self._key_file)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=context).start()
        try:
            yield self
        finally:
            self.release_hangs()
            await runner.cleanup()
