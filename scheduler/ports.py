"""What the scheduler needs from the layer above, as protocols it implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from persistence.calls import NewNotification
from persistence.models import CallRecord


class Notifier(Protocol):
    """Reaches the users of a call after a timed transition.

    Implemented by ``signaling``; the scheduler never imports it.
    """

    def call_soon_notices(self, call: CallRecord) -> Sequence[NewNotification]:
        """The ``call_soon`` notifications of the window's opening, stored in
        the transaction that opens it."""

    async def call_soon(self, call: CallRecord) -> None:
        """The join window opened (its notifications are stored): tell the
        users' connections, and get the media ready."""

    async def call_ended(self, call: CallRecord) -> None:
        """The call reached a final state (``call.state``/``call.end_reason``)."""

    async def runs_clock(self, call_id: int) -> bool:
        """A live server process (this one or another) meets the call's
        in-call instants on its own clock, so the database timer waits."""


class LatenessObserver(Protocol):
    def __call__(self, kind: str, seconds: float) -> None:
        """Record how late a timer fired after its deadline."""


class ChangeAnnouncer(Protocol):
    def __call__(self, call: CallRecord) -> None:
        """Tell the other server processes how the call now stands (fire and forget)."""


class PushNotices(Protocol):
    """Web Push to the users' browsers (implemented by ``signaling``).

    Each method only queues the notice and returns: a push service that is
    slow or hangs never holds a timer or a join.
    """

    def window_opened(self, call: CallRecord) -> None:
        """The join window opened: tell both users (the push twin of ``call_soon``)."""

    def partner_waiting(self, call: CallRecord, absent_user_id: str) -> None:
        """One user is in the call and ``absent_user_id`` has no connection."""


class NoPush:
    """:class:`PushNotices` when push is off: nothing is sent."""

    def window_opened(self, call: CallRecord) -> None:
        return None

    def partner_waiting(self, call: CallRecord, absent_user_id: str) -> None:
        return None
