"""The connection registry: this process's /call connections, whose user each
is, and which of them joined a call (the relay's only lookup)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Joined:
    """A connection that joined a call (the hot path's only lookup)."""

    call_id: int
    user_id: str
    partner_id: str


class JoinedConnections:
    """This process's connections: every connection's user (``users_by_sid``,
    filled by the namespace as connections come and go), and those that joined
    a call, by connection and by (call, user), so the relay finds a local
    partner without asking presence.

    One object, shared by the namespace, the call machine and the scheduler's
    notifier; built first, so each of them receives it complete.
    """

    def __init__(self) -> None:
        #: every connection's user; the namespace's connect and disconnect
        #: handlers keep it (the edge's ``GuardedNamespace`` owns that rule)
        self.users_by_sid: dict[str, str] = {}
        self._by_sid: dict[str, Joined] = {}
        self._by_call: dict[int, dict[str, str]] = {}

    def get(self, sid: str) -> Joined | None:
        return self._by_sid.get(sid)

    def add(self, sid: str, joined: Joined) -> None:
        self._by_sid[sid] = joined
        self._by_call.setdefault(joined.call_id, {})[joined.user_id] = sid

    def remove(self, sid: str) -> Joined | None:
        joined = self._by_sid.pop(sid, None)
        if joined is not None:
            users = self._by_call.get(joined.call_id)
            if users is not None and users.get(joined.user_id) == sid:
                del users[joined.user_id]
                if not users:
                    del self._by_call[joined.call_id]
        return joined

    def sid_of(self, call_id: int, user_id: str) -> str | None:
        users = self._by_call.get(call_id)
        return users.get(user_id) if users is not None else None

    def drop_call(self, call_id: int) -> None:
        for sid in self._by_call.pop(call_id, {}).values():
            self._by_sid.pop(sid, None)

    def user_of(self, sid: str) -> str | None:
        """The connection's user, joined or not (cold path: explains errors)."""
        joined = self._by_sid.get(sid)
        return joined.user_id if joined else self.users_by_sid.get(sid)

    def has_user(self, user_id: str) -> bool:
        """The user has a /call connection on this process (cold path)."""
        return user_id in self.users_by_sid.values()
