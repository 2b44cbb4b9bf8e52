"""The one reader of the environment. Everything else takes a ``Settings``."""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    Json,
    StringConstraints,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PREFIX = "SIGNALING_"
#: The shortest JWT secret accepted outside dev mode (F11).
MIN_SECRET_BYTES = 32
MEDIA_BACKENDS = ("p2p", "relay", "openvidu", "janus")
_VAPID_KEY = re.compile(r"[A-Za-z0-9_-]{43}=?", re.ASCII)


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
    #: how long the write-behind gathers calls' changes into one transaction
    write_linger_s: float = 0.02
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
    #: connections one client address may hold outside every namespace (F6); 0: no bound
    pending_per_address: int = 100
    #: proxies (addresses or networks) whose X-Forwarded-For names the client
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
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
    send_budget: int = 1024 * 1024
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


_DEFAULTS = Settings()

# The variables' types: pydantic casts and bounds them (a bad value is a
# ValidationError, turned into a ConfigError by load_settings).
#: Text, surrounding spaces dropped.
_Text = Annotated[str, StringConstraints(strip_whitespace=True)]
#: Seconds: finite and not negative (what must be positive, _validated says).
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A quota or rate limit (docs/configuration.md, Quotas and rate limits); 0 turns it off.
_Quota = Annotated[int, Field(ge=0, le=1_000_000)]
_ByteBudget = Annotated[int, Field(ge=0, le=2**40)]


def _flag(raw: object) -> object:
    """Only these words, whatever their case: pydantic's own bool also takes
    ``t``, ``y``, ``f`` and ``n``, and no empty value."""
    if not isinstance(raw, str):
        return raw
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise PydanticCustomError("boolean", "Input should be 1, true, yes, on, 0, false, no or off")


def _comma_list(raw: object) -> object:
    """``a, b,,c`` is ``a``, ``b`` and ``c``."""
    if not isinstance(raw, str):
        return raw
    return [part.strip() for part in raw.split(",") if part.strip()]


def _ice_server(server: dict[str, Any]) -> dict[str, Any]:
    if "urls" not in server:
        raise PydanticCustomError("ice_server", "Input should be an object with 'urls'")
    return server


_Flag = Annotated[bool, BeforeValidator(_flag)]
#: Addresses or networks (``10.0.0.0/8``), comma-separated.
_Networks = Annotated[tuple[IPvAnyNetwork, ...], BeforeValidator(_comma_list)]
_CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
#: User ids, as long as the database keeps them.
_IdList = Annotated[
    frozenset[Annotated[str, StringConstraints(max_length=64)]], BeforeValidator(_comma_list)
]
#: A JSON list of RTCIceServer objects, kept as they are for the join ack.
_IceServers = Json[tuple[Annotated[dict[str, Any], AfterValidator(_ice_server)], ...]]


def _variable_name(attribute: str) -> str:
    return PREFIX + attribute.upper()


class _Environment(BaseSettings):
    """The environment side of ``Settings``: one field per variable, named as
    the ``Settings`` attribute it sets, its variable name the validation alias
    (``SIGNALING_`` and the attribute in capitals, unless given). The prefix is
    in the aliases, not ``env_prefix``: pydantic-settings leaves aliases
    unprefixed."""

    model_config = SettingsConfigDict(
        alias_generator=AliasGenerator(validation_alias=_variable_name),
        # An empty variable means the default, as if unset.
        env_ignore_empty=True,
        # The defaults are Settings' own, already typed (a Json field's default is no JSON text).
        validate_default=False,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what load_settings hands in (read by _EnvironSource from the
        # mapping it was given): never os.environ, an .env file or secrets
        # behind its back.
        return (init_settings,)

    host: _Text = _DEFAULTS.host
    port: Annotated[int, Field(ge=0, le=65535)] = _DEFAULTS.port
    jwt_secret: _Text = _DEFAULTS.jwt_secret
    dev: _Flag = _DEFAULTS.dev
    cors_origins: _CommaList = _DEFAULTS.cors_origins
    database_url: _Text = _DEFAULTS.database_url
    message_store_url: _Text = _DEFAULTS.message_store_url
    redis_url: _Text = _DEFAULTS.redis_url
    redis_prefix: _Text = _DEFAULTS.redis_prefix
    media: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)] = _DEFAULTS.media
    openvidu_url: _Text = _DEFAULTS.openvidu_url
    openvidu_secret: _Text = _DEFAULTS.openvidu_secret
    openvidu_webhook_secret: _Text = _DEFAULTS.openvidu_webhook_secret
    janus_url: _Text = _DEFAULTS.janus_url
    janus_public_url: _Text = _DEFAULTS.janus_public_url
    janus_admin_key: _Text = _DEFAULTS.janus_admin_key
    janus_event_secret: _Text = _DEFAULTS.janus_event_secret
    ice_servers: _IceServers = _DEFAULTS.ice_servers
    turn_secret: _Text = _DEFAULTS.turn_secret
    countdown_s: _Seconds = _DEFAULTS.countdown_s
    limit_s: _Seconds = Field(_DEFAULTS.limit_s, validation_alias=PREFIX + "CALL_LIMIT_S")
    notify_before_s: _Seconds = _DEFAULTS.notify_before_s
    join_grace_s: _Seconds = _DEFAULTS.join_grace_s
    sweep_interval_s: _Seconds = _DEFAULTS.sweep_interval_s
    takeover_s: _Seconds = _DEFAULTS.takeover_s
    write_linger_s: _Seconds = _DEFAULTS.write_linger_s
    signal_queue_max: Annotated[int, Field(ge=1, le=10_000)] = _DEFAULTS.signal_queue_max
    held_bytes_max: _ByteBudget = _DEFAULTS.held_bytes_max
    log_level: _Text = _DEFAULTS.log_level
    ws_deflate: _Flag = _DEFAULTS.ws_deflate
    gc_freeze: _Flag = _DEFAULTS.gc_freeze
    auth_timeout_s: _Seconds = _DEFAULTS.auth_timeout_s
    pending_per_address: _Quota = _DEFAULTS.pending_per_address
    trusted_proxies: _Networks = _DEFAULTS.trusted_proxies
    ping_interval_s: _Seconds = _DEFAULTS.ping_interval_s
    ping_timeout_s: _Seconds = _DEFAULTS.ping_timeout_s
    calls_open_max: _Quota = _DEFAULTS.calls_open_max
    calls_per_day: _Quota = _DEFAULTS.calls_per_day
    gifts_per_minute: _Quota = _DEFAULTS.gifts_per_minute
    signals_per_s: _Quota = _DEFAULTS.signals_per_s
    chat_per_s: _Quota = _DEFAULTS.chat_per_s
    connections_per_user: _Quota = _DEFAULTS.connections_per_user
    send_budget: _ByteBudget = _DEFAULTS.send_budget
    metrics_token: _Text = _DEFAULTS.metrics_token
    admin_ids: _IdList = _DEFAULTS.admin_ids
    vapid_private_key: _Text = _DEFAULTS.vapid_private_key
    vapid_subject: _Text = _DEFAULTS.vapid_subject
    push_subscriptions_max: Annotated[int, Field(ge=1, le=100)] = _DEFAULTS.push_subscriptions_max
    push_workers: Annotated[int, Field(ge=1, le=256)] = _DEFAULTS.push_workers
    push_queue_max: Annotated[int, Field(ge=1, le=1_000_000)] = _DEFAULTS.push_queue_max
    push_timeout_s: _Seconds = _DEFAULTS.push_timeout_s
    push_ca_file: _Text = _DEFAULTS.push_ca_file


class _EnvironSource(PydanticBaseSettingsSource):
    """The variables of ``_Environment`` in the mapping ``load_settings`` was
    given, each asked for by its exact name (case-sensitive; a mapping that
    cannot be listed, as tests/unit/test_docker_files.py uses, still answers)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = field.validation_alias
        assert isinstance(name, str), field_name  # the alias generator's or the field's own
        return self.environ.get(name), name, False

    def __call__(self) -> dict[str, Any]:
        ignore_empty = self.config.get("env_ignore_empty", False)
        found: dict[str, Any] = {}
        for field_name, info in self.settings_cls.model_fields.items():
            value, name, _ = self.get_field_value(info, field_name)
            if value is not None and not (ignore_empty and value == ""):
                found[name] = value
        return found


def _config_error(error: ValidationError) -> ConfigError:
    """One message naming each offending variable (an item of a list one by
    its index) and the value pydantic refused."""
    problems = []
    for problem in error.errors(include_url=False):
        name, *inside = problem["loc"]
        where = "".join(f"[{index}]" for index in inside)
        problems.append(f"{name}{where}: {problem['msg']}, got {problem['input']!r}")
    return ConfigError("; ".join(problems))


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``environ`` (default ``os.environ``); ``overrides``
    (CLI flags) win over the environment."""
    env = os.environ if environ is None else environ
    variables = _EnvironSource(_Environment, env)()
    try:
        parsed = _Environment.model_validate(variables)
    except ValidationError as error:
        raise _config_error(error) from None
    values = dict(parsed)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _validated(Settings(**values))


def _validated(settings: Settings) -> Settings:
    if settings.media not in MEDIA_BACKENDS:
        raise ConfigError(f"{PREFIX}MEDIA must be one of {', '.join(MEDIA_BACKENDS)}")
    if settings.limit_s <= 0:
        raise ConfigError(f"{PREFIX}CALL_LIMIT_S must be positive")
    if settings.takeover_s < 0:
        raise ConfigError(f"{PREFIX}TAKEOVER_S must not be negative")
    if not 0 <= settings.write_linger_s <= 1:
        raise ConfigError(f"{PREFIX}WRITE_LINGER_S must be 0 to 1")
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
