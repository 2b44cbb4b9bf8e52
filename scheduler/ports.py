"""What the scheduler needs from the layer above, as protocols it implements."""

from __future__ import annotations

from typing import Protocol

from persistence.models import CallRecord


class Notifier(Protocol):
    """Reaches the users of a call after a timed transition.

    Implemented by ``signaling``; the scheduler never imports it.
    """

    async def call_soon(self, call: CallRecord) -> None:
        """The join window opened."""

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
