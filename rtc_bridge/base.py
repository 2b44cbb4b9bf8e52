"""The contract every media backend implements, and what it may call back."""

from __future__ import annotations

import abc
from typing import Any, Protocol


class MediaEvents(Protocol):
    """What a media backend reports to the signaling layer (implemented by
    ``signaling``'s call service; rtc_bridge never imports it)."""

    async def send_signal(self, call_id: int, user_id: str, signal: dict[str, Any]) -> None:
        """Deliver a ``signal`` from the server's own peer (``from: "server"``)."""

    async def media_connected(self, call_id: int, user_id: str) -> None:
        """The user's media reached the media server (counts as ``connected``)."""

    async def media_left(self, call_id: int, user_id: str) -> None:
        """The user's media is gone from the media server."""


class MediaBackend(abc.ABC):
    """How media flows for a call; the signaling events stay the same.

    ``signaling`` opens a call's media when its join window opens, asks for
    each joiner's extra join-ack fields, hands it the signals of users whose
    peer connection ends at the server (``terminates_peers``), tells it when a
    user leaves, and closes the media when the call is over for any reason.
    A backend that reports back takes its :class:`MediaEvents` in its
    constructor (``signaling`` builds it through a factory, around the sink).
    """

    name: str
    #: Peers connect to the server, not to each other: every signal goes to
    #: the backend and both users make offers.
    terminates_peers: bool = False

    @abc.abstractmethod
    async def open_call(self, call_id: int, user_ids: tuple[str, str]) -> None: ...

    @abc.abstractmethod
    async def join_extras(self, call_id: int, user_id: str) -> dict[str, Any]:
        """Fields added to this user's ``join`` ack (e.g. ``openvidu_token``)."""

    async def on_signal(self, call_id: int, user_id: str, signal: dict[str, Any]) -> None:
        """A user's signal for the server's peer (only when ``terminates_peers``)."""
        raise NotImplementedError(f"{self.name} does not take signals")

    async def user_left(self, call_id: int, user_id: str) -> None:  # noqa: B027
        """The user left or dropped: release what the backend holds for them."""

    @abc.abstractmethod
    async def close_call(self, call_id: int) -> None: ...

    async def close(self) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Release everything at shut-down."""
