"""The contract every media backend implements."""

from __future__ import annotations

import abc
from typing import Any


class MediaBackend(abc.ABC):
    """How media flows for a call; the signaling events stay the same.

    ``signaling`` opens a call's media when its join window opens, asks for
    each joiner's extra join-ack fields, and closes the media when the call
    is over for any reason.
    """

    name: str

    @abc.abstractmethod
    async def open_call(self, call_id: int, user_ids: tuple[str, str]) -> None: ...

    @abc.abstractmethod
    async def join_extras(self, call_id: int, user_id: str) -> dict[str, Any]:
        """Fields added to this user's ``join`` ack (e.g. ``openvidu_token``)."""

    @abc.abstractmethod
    async def close_call(self, call_id: int) -> None: ...

    async def close(self) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Release everything at shut-down."""
