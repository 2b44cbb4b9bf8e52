"""Store contract for Web Push subscriptions and the delivery keys that make
each push happen once; the in-memory backend (SQL: ``persistence.push_sql``)."""

from __future__ import annotations

import abc
import hashlib
import itertools
from dataclasses import dataclass
from datetime import datetime

from persistence.models import utcnow

#: The longest endpoint URL stored (browsers' are a few hundred characters).
MAX_ENDPOINT = 2048
#: A delivery key names one notice to one endpoint: ``kind:call_id:endpoint_hash``.
MAX_DELIVERY_KEY = 128


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A browser's ``PushSubscription``, as its user posted it."""

    id: int
    user_id: str
    endpoint: str
    #: the browser's P-256 public key and auth secret, base64url as posted
    p256dh: str
    auth: str
    created_at: datetime

    @property
    def endpoint_hash(self) -> str:
        return endpoint_hash(self.endpoint)


def endpoint_hash(endpoint: str) -> str:
    """The endpoint's SHA-256 in hex: its unique key, and what names it in a
    delivery key (ids may be reused after a delete; an endpoint is not)."""
    return hashlib.sha256(endpoint.encode()).hexdigest()


class PushStore(abc.ABC):
    @abc.abstractmethod
    async def add(
        self, user_id: str, endpoint: str, p256dh: str, auth: str, *, keep: int
    ) -> PushSubscription:
        """Store a subscription for the user, then drop their oldest ones
        beyond ``keep``. An endpoint belongs to one browser profile: posting
        it again replaces the stored one (new keys, possibly another user,
        as when someone else logs in on that browser)."""

    @abc.abstractmethod
    async def remove(self, user_id: str, endpoint: str) -> bool:
        """Delete the user's subscription with that endpoint; whether there was one."""

    @abc.abstractmethod
    async def discard(self, subscription_id: int) -> None:
        """Delete a subscription the push service says is gone (404/410)."""

    @abc.abstractmethod
    async def list_for_user(self, user_id: str) -> list[PushSubscription]:
        """The user's subscriptions, oldest first."""

    @abc.abstractmethod
    async def claim_delivery(self, key: str) -> bool:
        """Insert ``key`` if absent: ``True`` for the one caller that inserted
        it, ``False`` for every other (this process or another, now or later)."""

    @abc.abstractmethod
    async def prune_deliveries(self, before: datetime) -> int:
        """Delete the delivery keys claimed before ``before``; how many went.
        A key matters only until its notice's join window closes (no push is
        sent after that), so keys older than the window can go."""


class MemoryPushStore(PushStore):
    def __init__(self) -> None:
        self._by_endpoint: dict[str, PushSubscription] = {}
        self._ids = itertools.count(1)
        #: delivery key -> when it was claimed
        self._delivered: dict[str, datetime] = {}

    async def add(
        self, user_id: str, endpoint: str, p256dh: str, auth: str, *, keep: int
    ) -> PushSubscription:
        subscription = PushSubscription(next(self._ids), user_id, endpoint, p256dh, auth, utcnow())
        self._by_endpoint.pop(endpoint, None)
        self._by_endpoint[endpoint] = subscription
        mine = await self.list_for_user(user_id)
        for old in mine[: max(0, len(mine) - keep)]:
            del self._by_endpoint[old.endpoint]
        return subscription

    async def remove(self, user_id: str, endpoint: str) -> bool:
        found = self._by_endpoint.get(endpoint)
        if found is None or found.user_id != user_id:
            return False
        del self._by_endpoint[endpoint]
        return True

    async def discard(self, subscription_id: int) -> None:
        for endpoint, subscription in list(self._by_endpoint.items()):
            if subscription.id == subscription_id:
                del self._by_endpoint[endpoint]

    async def list_for_user(self, user_id: str) -> list[PushSubscription]:
        mine = [s for s in self._by_endpoint.values() if s.user_id == user_id]
        return sorted(mine, key=lambda s: s.id)

    async def claim_delivery(self, key: str) -> bool:
        if key in self._delivered:
            return False
        self._delivered[key] = utcnow()
        return True

    async def prune_deliveries(self, before: datetime) -> int:
        old = [key for key, claimed_at in self._delivered.items() if claimed_at < before]
        for key in old:
            del self._delivered[key]
        return len(old)
