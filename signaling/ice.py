"""ICE servers for the ``join`` ack, with time-limited TURN credentials.

With ``SIGNALING_TURN_SECRET`` set, every configured ICE server that has a
``turn:`` or ``turns:`` URL gets credentials in coturn's ``use-auth-secret``
scheme (the "TURN REST API"): ``username`` is ``"<expiry unix time>:<user id>"``
and ``credential`` is ``base64(HMAC-SHA1(secret, username))``. coturn, started
with ``--use-auth-secret --static-auth-secret=<the same secret>``, recomputes
the credential from the username and refuses it once the expiry has passed, so
the server never talks to coturn and nothing is stored.

Pure: no I/O, and the clock is injected, so tests pin the instant.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from signaling.config import PREFIX, ConfigError, Settings

logger = logging.getLogger(__name__)

#: URL schemes that need credentials (RFC 7065); ``stun:``/``stuns:`` do not.
TURN_SCHEMES = ("turn:", "turns:")
#: Added to the longest a call can last after a join: covers clock skew
#: between this server and coturn, and a slow last allocation refresh.
CREDENTIAL_MARGIN_S = 300.0

#: What the call service asks for: the ``ice_servers`` list for one user.
IceServersFor = Callable[[str], list[dict[str, Any]]]


def turn_credential(secret: str, username: str) -> str:
    """coturn's ``use-auth-secret`` password for ``username``:
    ``base64(HMAC-SHA1(secret, username))``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def credential_ttl_s(settings: Settings) -> float:
    """How long TURN credentials minted at a ``join`` stay valid.

    A user can join as early as the window opens (``notify_before`` before
    ``scheduled_at``); the partner may come as late as the window closes
    (``join_grace`` after it); then the countdown and the call itself run. So
    a call ends at most ``notify_before + join_grace + countdown + limit`` after
    any join, and the credential must outlive that: TURN allocations are
    refreshed (and re-authenticated) during the call, and an ICE restart makes
    new ones. Anything longer only widens what a leaked credential is good
    for. Every (re)join mints fresh credentials, so this bounds one join only.
    """
    return (
        settings.notify_before_s
        + settings.join_grace_s
        + settings.countdown_s
        + settings.limit_s
        + CREDENTIAL_MARGIN_S
    )


def _urls(server: Mapping[str, Any]) -> list[str]:
    urls = server.get("urls")
    if isinstance(urls, str):
        return [urls]
    if isinstance(urls, list) and all(isinstance(u, str) for u in urls):
        return list(urls)
    raise ConfigError(f"{PREFIX}ICE_SERVERS: 'urls' must be a string or a list of strings")


def needs_credentials(server: Mapping[str, Any]) -> bool:
    """Whether the ICE server entry has at least one TURN URL."""
    return any(url.lower().startswith(TURN_SCHEMES) for url in _urls(server))


class IceServerProvider:
    """The ``ice_servers`` each user gets in the ``join`` ack.

    Without a secret it hands out the configured list unchanged. With one,
    entries with TURN URLs get a fresh ``username``/``credential`` pair per
    call of :meth:`for_user` (replacing any configured static pair, which a
    ``use-auth-secret`` coturn would refuse anyway); STUN-only entries are
    passed unchanged. Each call returns new dicts: callers may mutate them.
    """

    def __init__(
        self,
        servers: Iterable[Mapping[str, Any]],
        *,
        secret: str = "",
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._servers: tuple[dict[str, Any], ...] = tuple(copy.deepcopy(dict(s)) for s in servers)
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock
        # Checked once here so that a bad entry stops the server at start-up.
        self._turn = tuple(needs_credentials(s) for s in self._servers)
        if secret and not any(self._turn):
            logger.warning(
                "%sTURN_SECRET is set but no ICE server has a turn: URL",
                PREFIX,
                extra={"event": "ice.no_turn_server"},
            )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> IceServerProvider:
        return cls(
            settings.ice_servers,
            secret=settings.turn_secret,
            ttl_s=credential_ttl_s(settings),
            clock=clock,
        )

    def expiry(self) -> int:
        """The Unix time that credentials minted now carry (rounded up)."""
        return math.ceil(self._clock() + self.ttl_s)

    def for_user(self, user_id: str) -> list[dict[str, Any]]:
        servers = [copy.deepcopy(s) for s in self._servers]
        if not self._secret:
            return servers
        username = f"{self.expiry()}:{user_id}"
        credential = turn_credential(self._secret, username)
        for server, turn in zip(servers, self._turn, strict=True):
            if turn:
                server["username"] = username
                server["credential"] = credential
        return servers
