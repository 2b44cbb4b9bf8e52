"""``PushSubscriptions``: the use cases of a user's Web Push subscriptions."""

from __future__ import annotations

from persistence.push import PushStore, PushSubscription
from signaling.errors import not_found


class PushSubscriptions:
    """Subscribe and unsubscribe a user's browsers, keeping at most ``keep``
    subscriptions per user (the newest)."""

    def __init__(self, *, store: PushStore, keep: int) -> None:
        self._store = store
        self._keep = keep

    async def subscribe(
        self, user_id: str, endpoint: str, p256dh: str, auth: str
    ) -> PushSubscription:
        return await self._store.add(user_id, endpoint, p256dh, auth, keep=self._keep)

    async def unsubscribe(self, user_id: str, endpoint: str) -> None:
        if not await self._store.remove(user_id, endpoint):
            raise not_found("no such subscription")
