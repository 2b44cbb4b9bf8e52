"""One push to one subscription: encrypted (aes128gcm, RFC 8291) and signed
(VAPID, RFC 8292) by pywebpush, posted over a shared aiohttp session."""

from __future__ import annotations

import asyncio
import email.utils
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from pywebpush import WebPusher

from persistence.push import PushSubscription
from signaling.push.vapid import VapidKeys


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """What the push service said: ``status`` is ``None`` when it did not
    answer in time or the connection failed."""

    status: int | None
    #: seconds to wait before trying again (``Retry-After``), if it said
    retry_after: float | None = None


def retry_after_seconds(raw: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delay-seconds or an HTTP date."""
    if not raw:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        return float(raw)
    try:
        at = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - now).total_seconds())


class WebPushSender:
    """Posts pushes with pywebpush's asyncio API over one connection pool."""

    def __init__(
        self, keys: VapidKeys, *, timeout_s: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._keys = keys
        self._timeout_s = timeout_s
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def close(self) -> None:
        await self._session.close()

    async def send(
        self, subscription: PushSubscription, payload: bytes, *, ttl: int, urgency: str
    ) -> PushAnswer:
        pusher = WebPusher(
            {
                "endpoint": subscription.endpoint,
                "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
            },
            aiohttp_session=self._session,
        )
        headers = {
            "Authorization": self._keys.authorization(subscription.endpoint),
            "Urgency": urgency,
        }
        try:
            # The session's timeout bounds the request; this one also bounds
            # reading a body that trickles in.
            async with asyncio.timeout(self._timeout_s):
                response = await pusher.send_async(
                    payload,
                    headers,
                    ttl=ttl,
                    timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                )
        except (TimeoutError, aiohttp.ClientError, OSError):
            return PushAnswer(None)
        assert not isinstance(response, str)  # a curl rendering only when asked for
        return PushAnswer(
            response.status,
            retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC)),
        )
