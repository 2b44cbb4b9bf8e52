"""The one reader of the environment. Everything else takes a ``Settings``."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

PREFIX = "SIGNALING_"
#: The shortest JWT secret accepted outside dev mode (F11).
MIN_SECRET_BYTES = 32
MEDIA_BACKENDS = ("p2p", "relay", "openvidu", "janus")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Every setting of PROTOCOL.md's configuration table, plus a few
    operational knobs (documented in docs/configuration.md)."""

    host: str = "127.0.0.1"
    port: int = 8080
    jwt_secret: str = ""
    jwt_secret_generated: bool = False
    dev: bool = False
    cors_origins: tuple[str, ...] = ()
    database_url: str = "sqlite+aiosqlite:///signaling.sqlite3"
    message_store_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "giftcall"
    media: str = "p2p"
    openvidu_url: str = ""
    openvidu_secret: str = ""
    openvidu_webhook_secret: str = ""
    #: Janus VideoRoom (docs/media.md): the HTTP API this server calls, the one
    #: browsers call (default: the same), the VideoRoom admin_key, and the
    #: password of Janus's event handler posts
    janus_url: str = ""
    janus_public_url: str = ""
    janus_admin_key: str = field(default="", repr=False)
    janus_event_secret: str = field(default="", repr=False)
    ice_servers: tuple[dict[str, Any], ...] = ()
    turn_secret: str = ""
    countdown_s: float = 5.0
    limit_s: float = 60.0
    notify_before_s: float = 300.0
    join_grace_s: float = 600.0
    sweep_interval_s: float = 30.0
    #: how long after an in-call instant another process takes a call over
    takeover_s: float = 0.25
    signal_queue_max: int = 64
    #: bytes of signals one user may have held for absent partners, every call together (F5)
    held_bytes_max: int = 1024 * 1024
    log_level: str = "INFO"
    #: permessage-deflate on websockets (off: it costs two zlib contexts per socket)
    ws_deflate: bool = False
    #: freeze what exists once start-up ends out of the cyclic collector's
    #: walks (signaling/heap.py): shorter full-collection pauses
    gc_freeze: bool = True
    #: an Engine.IO connection outside every authenticated namespace this long is closed
    auth_timeout_s: float = 10.0
    #: Engine.IO heartbeat: the server pings every ``ping_interval_s``; a client
    #: that has not answered within ``ping_timeout_s`` more is closed
    ping_interval_s: float = 25.0
    ping_timeout_s: float = 20.0
    #: quotas and rate limits per user (signaling/quotas.py); 0 turns one off
    calls_open_max: int = 50
    calls_per_day: int = 500
    gifts_per_minute: int = 60
    signals_per_s: int = 200
    chat_per_s: int = 200
    connections_per_user: int = 20
    #: characters of packets waiting for one connection before it is closed (F3)
    send_budget: int = 2 * 1024 * 1024
    #: with a value, /metrics needs ``Authorization: Bearer <metrics_token>``
    metrics_token: str = field(default="", repr=False)
    #: users who may add questions to the icebreaker bank
    admin_ids: frozenset[str] = frozenset()
    #: Web Push (docs/push.md): the VAPID private key (base64url of the raw
    #: 32-byte P-256 scalar, from ``giftcall vapid-keys``; empty: push off),
    #: the contact ``sub`` claim (mailto: or https:), subscriptions kept per
    #: user, senders, jobs queued, one push's time limit, and a CA bundle
    #: trusted for push services besides the system's
    vapid_private_key: str = field(default="", repr=False)
    vapid_subject: str = ""
    push_subscriptions_max: int = 5
    push_workers: int = 4
    push_queue_max: int = 1000
    push_timeout_s: float = 10.0
    push_ca_file: str = ""

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{PREFIX}{name} must be a boolean, got {raw!r}")


def _number(name: str, raw: str, *, minimum: float = 0.0) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{PREFIX}{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, got {raw!r}")
    return value


def _integer(name: str, raw: str, *, minimum: int, maximum: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{PREFIX}{name} must be from {minimum} to {maximum}, got {raw!r}")
    return value


def _ice_servers(raw: str) -> tuple[dict[str, Any], ...]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ConfigError(f"{PREFIX}ICE_SERVERS must be a JSON list, got {raw!r}") from None
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and "urls" in item for item in value
    ):
        raise ConfigError(f"{PREFIX}ICE_SERVERS must be a JSON list of objects with 'urls'")
    return tuple(value)


def _id_list(name: str, raw: str) -> frozenset[str]:
    ids = [part.strip() for part in raw.split(",")]
    ids = [i for i in ids if i]
    too_long = [i for i in ids if len(i) > 64]
    if too_long:
        raise ConfigError(f"{PREFIX}{name}: user ids are at most 64 characters: {too_long[0]!r}")
    return frozenset(ids)


#: The quota settings (docs/configuration.md, Quotas and rate limits).
QUOTA_SETTINGS = {
    "CALLS_OPEN_MAX": "calls_open_max",
    "CALLS_PER_DAY": "calls_per_day",
    "GIFTS_PER_MINUTE": "gifts_per_minute",
    "SIGNALS_PER_S": "signals_per_s",
    "CHAT_PER_S": "chat_per_s",
    "CONNECTIONS_PER_USER": "connections_per_user",
}


#: The push service's integer settings and their largest values.
PUSH_LIMITS = (
    ("PUSH_SUBSCRIPTIONS_MAX", "push_subscriptions_max", 100),
    ("PUSH_WORKERS", "push_workers", 256),
    ("PUSH_QUEUE_MAX", "push_queue_max", 1_000_000),
)
_VAPID_KEY = re.compile(r"[A-Za-z0-9_-]{43}=?", re.ASCII)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``environ`` (default ``os.environ``); ``overrides``
    (CLI flags) win over the environment."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(PREFIX + name)

    values: dict[str, Any] = {}
    text_settings = {
        "HOST": "host",
        "DATABASE_URL": "database_url",
        "MESSAGE_STORE_URL": "message_store_url",
        "REDIS_URL": "redis_url",
        "REDIS_PREFIX": "redis_prefix",
        "OPENVIDU_URL": "openvidu_url",
        "OPENVIDU_SECRET": "openvidu_secret",
        "OPENVIDU_WEBHOOK_SECRET": "openvidu_webhook_secret",
        "JANUS_URL": "janus_url",
        "JANUS_PUBLIC_URL": "janus_public_url",
        "JANUS_ADMIN_KEY": "janus_admin_key",
        "JANUS_EVENT_SECRET": "janus_event_secret",
        "TURN_SECRET": "turn_secret",
        "JWT_SECRET": "jwt_secret",
        "METRICS_TOKEN": "metrics_token",
        "LOG_LEVEL": "log_level",
        "VAPID_PRIVATE_KEY": "vapid_private_key",
        "VAPID_SUBJECT": "vapid_subject",
        "PUSH_CA_FILE": "push_ca_file",
    }
    for var, attr in text_settings.items():
        raw = get(var)
        if raw:
            values[attr] = raw.strip()
    number_settings = {
        "COUNTDOWN_S": "countdown_s",
        "CALL_LIMIT_S": "limit_s",
        "NOTIFY_BEFORE_S": "notify_before_s",
        "JOIN_GRACE_S": "join_grace_s",
        "SWEEP_INTERVAL_S": "sweep_interval_s",
        "AUTH_TIMEOUT_S": "auth_timeout_s",
        "PING_INTERVAL_S": "ping_interval_s",
        "PING_TIMEOUT_S": "ping_timeout_s",
        "TAKEOVER_S": "takeover_s",
        "PUSH_TIMEOUT_S": "push_timeout_s",
    }
    for var, attr in number_settings.items():
        raw = get(var)
        if raw:
            values[attr] = _number(var, raw)
    if raw := get("PORT"):
        values["port"] = _integer("PORT", raw, minimum=0, maximum=65535)
    if raw := get("SIGNAL_QUEUE_MAX"):
        values["signal_queue_max"] = _integer("SIGNAL_QUEUE_MAX", raw, minimum=1, maximum=10_000)
    for var, attr in QUOTA_SETTINGS.items():
        if raw := get(var):
            values[attr] = _integer(var, raw, minimum=0, maximum=1_000_000)
    for var, attr, most in PUSH_LIMITS:
        if raw := get(var):
            values[attr] = _integer(var, raw, minimum=1, maximum=most)
    if raw := get("HELD_BYTES_MAX"):
        values["held_bytes_max"] = _integer("HELD_BYTES_MAX", raw, minimum=0, maximum=2**40)
    if raw := get("SEND_BUDGET"):
        values["send_budget"] = _integer("SEND_BUDGET", raw, minimum=0, maximum=2**40)
    if raw := get("DEV"):
        values["dev"] = _bool("DEV", raw)
    if raw := get("WS_DEFLATE"):
        values["ws_deflate"] = _bool("WS_DEFLATE", raw)
    if raw := get("GC_FREEZE"):
        values["gc_freeze"] = _bool("GC_FREEZE", raw)
    if raw := get("CORS_ORIGINS"):
        values["cors_origins"] = tuple(o.strip() for o in raw.split(",") if o.strip())
    if raw := get("MEDIA"):
        values["media"] = raw.strip().lower()
    if raw := get("ADMIN_IDS"):
        values["admin_ids"] = _id_list("ADMIN_IDS", raw)
    if raw := get("ICE_SERVERS"):
        values["ice_servers"] = _ice_servers(raw)

    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    return _validated(settings)


def _validated(settings: Settings) -> Settings:
    if settings.media not in MEDIA_BACKENDS:
        raise ConfigError(f"{PREFIX}MEDIA must be one of {', '.join(MEDIA_BACKENDS)}")
    if settings.limit_s <= 0:
        raise ConfigError(f"{PREFIX}CALL_LIMIT_S must be positive")
    if settings.takeover_s < 0:
        raise ConfigError(f"{PREFIX}TAKEOVER_S must not be negative")
    if settings.sweep_interval_s <= 0:
        raise ConfigError(f"{PREFIX}SWEEP_INTERVAL_S must be positive")
    if settings.auth_timeout_s <= 0:
        raise ConfigError(f"{PREFIX}AUTH_TIMEOUT_S must be positive")
    if settings.ping_interval_s <= 0 or settings.ping_timeout_s <= 0:
        raise ConfigError(f"{PREFIX}PING_INTERVAL_S and _PING_TIMEOUT_S must be positive")
    if settings.message_store_url and not settings.message_store_url.startswith(
        ("mongodb://", "mongodb+srv://")
    ):
        raise ConfigError(
            f"{PREFIX}MESSAGE_STORE_URL must be a mongodb:// URL (or empty for the SQL database)"
        )
    if settings.media == "openvidu" and not (settings.openvidu_url and settings.openvidu_secret):
        raise ConfigError(f"{PREFIX}MEDIA=openvidu needs {PREFIX}OPENVIDU_URL and _SECRET")
    if settings.media == "janus" and not (
        settings.janus_url and settings.janus_admin_key and settings.janus_event_secret
    ):
        raise ConfigError(
            f"{PREFIX}MEDIA=janus needs {PREFIX}JANUS_URL, _ADMIN_KEY and _EVENT_SECRET"
        )
    if settings.vapid_private_key:
        # The raw scalar, base64url: 32 bytes are 43 characters (44 padded).
        if not _VAPID_KEY.fullmatch(settings.vapid_private_key):
            raise ConfigError(
                f"{PREFIX}VAPID_PRIVATE_KEY must be the base64url private key "
                "that `giftcall vapid-keys` prints"
            )
        if not settings.vapid_subject.startswith(("mailto:", "https://")):
            raise ConfigError(
                f"{PREFIX}VAPID_SUBJECT must be a mailto: or https: contact for push services"
            )
    if settings.push_timeout_s <= 0:
        raise ConfigError(f"{PREFIX}PUSH_TIMEOUT_S must be positive")
    short = bool(settings.jwt_secret) and len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES
    if short and not settings.dev:
        raise ConfigError(
            f"{PREFIX}JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
            f"(HS256 wants a key as long as its hash; {PREFIX}DEV=1 allows a shorter one)"
        )
    if not settings.jwt_secret:
        if not settings.dev:
            raise ConfigError(
                f"{PREFIX}JWT_SECRET is required (or set {PREFIX}DEV=1 to generate one)"
            )
        settings = settings.replace(jwt_secret=secrets.token_urlsafe(32), jwt_secret_generated=True)
    return settings
