"""Peer to peer: browsers connect to each other; the server only relays signals."""

from __future__ import annotations

from typing import Any

from rtc_bridge.base import MediaBackend


class PeerToPeerMedia(MediaBackend):
    name = "p2p"

    async def open_call(self, call_id: int, user_ids: tuple[str, str]) -> None:
        return None

    async def join_extras(self, call_id: int, user_id: str) -> dict[str, Any]:
        return {}

    async def close_call(self, call_id: int) -> None:
        return None
