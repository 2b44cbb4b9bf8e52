"""The composition root: builds the aiohttp app, Socket.IO server and services,
starts them in order and stops them in reverse (one ``AsyncExitStack`` in the
app's ``cleanup_ctx``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
import socketio
from aiohttp import web

from persistence.factory import Stores, open_stores
from persistence.models import utcnow
from rtc_bridge.base import MediaEvents
from rtc_bridge.openvidu import OpenViduMedia
from rtc_bridge.p2p import PeerToPeerMedia
from scheduler.service import CallTimers
from signaling import heap, openapi, ops, questions, web_routes
from signaling.admission import ClientAddresses
from signaling.auth import Identity, TokenVerifier
from signaling.calls import routes as call_routes
from signaling.calls.connections import JoinedConnections
from signaling.calls.machine import CallMachine, MediaFactory
from signaling.calls.namespace import CallNamespace, SocketOutbox
from signaling.calls.service import CallService
from signaling.calls.state import CallRules
from signaling.chat import routes as chat_routes
from signaling.chat.namespace import ChatNamespace, SocketChatOutbox
from signaling.chat.service import ChatService
from signaling.config import ConfigError, Settings
from signaling.edge import GuardedServer
from signaling.engineio_fence import close_all
from signaling.errors import ApiError
from signaling.gifts import routes as gift_routes
from signaling.gifts.service import GiftService
from signaling.http import cors_middleware_for, error_middleware, security_headers
from signaling.ice import IceServerProvider
from signaling.keys import CALLS, CHAT, GIFTS, METRICS, SETTINGS, STORES, TIMERS, VERIFIER
from signaling.metrics import Metrics
from signaling.push import routes as push_routes
from signaling.push.dispatcher import PushDispatcher
from signaling.push.sender import WebPushSender
from signaling.push.subscriptions import PushSubscriptions
from signaling.push.vapid import VapidKeys
from signaling.quotas import QuotaRules, Quotas
from signaling.socketio_fence import IndexedAsyncManager, PooledRedisManager
from signaling.webhooks import janus as janus_webhook
from signaling.webhooks import openvidu as openvidu_webhook
from signaling.webhooks.openvidu import MEDIA

if TYPE_CHECKING:
    from persistence.redis import ProcessBeacon
    from signaling.cluster import ClusterBus

logger = logging.getLogger(__name__)

#: Largest Socket.IO message accepted; a larger one closes that connection.
MAX_MESSAGE_BYTES = 1_000_000


class OrjsonCodec:
    """python-socketio's ``json`` hook: orjson, with the standard library as a
    fallback for what orjson refuses (integers beyond 64 bits), so such input
    reaches validation and gets an ``invalid`` ack instead of a dropped socket."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)


def redis_manager(settings: Settings) -> socketio.AsyncManager:
    from signaling.cluster import pooled_client  # the redis extra, only when asked for

    return PooledRedisManager(
        settings.redis_url, channel=f"{settings.redis_prefix}:socketio", client_for=pooled_client
    )


def create_sio(settings: Settings) -> GuardedServer:
    origins: Any = None  # same origin only
    if settings.cors_origins:
        origins = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
    sio = GuardedServer(
        # Other namespaces, "/" too: unauthorized without a valid token, not_found with one.
        authenticate=socket_authenticator(TokenVerifier(settings.jwt_secret)),
        auth_timeout_s=settings.auth_timeout_s,
        pending_per_address=settings.pending_per_address,
        client_addresses=ClientAddresses(settings.trusted_proxies),
        ws_deflate=settings.ws_deflate,
        send_budget=settings.send_budget,
        async_mode="aiohttp",
        json=OrjsonCodec,
        # Handle each connection's events inline, in arrival order: signals
        # must reach the partner in the order they were sent, and it saves a
        # task per message on the hot path.
        async_handlers=False,
        cors_allowed_origins=origins,
        max_http_buffer_size=MAX_MESSAGE_BYTES,
        ping_interval=settings.ping_interval_s,
        ping_timeout=settings.ping_timeout_s,
        # Several processes: events to connections elsewhere travel over Redis.
        client_manager=redis_manager(settings) if settings.redis_url else IndexedAsyncManager(),
    )
    sio.eio.async_handlers = False
    return sio


def create_media(settings: Settings) -> MediaFactory:
    """The media backend ``SIGNALING_MEDIA`` names (docs/media.md), as a
    factory: the call machine builds it around the events it reports to.
    The settings are checked here, at start-up, before anything is built."""
    if settings.media == "p2p":
        return lambda events: PeerToPeerMedia()  # peers meet directly: nothing to report
    if settings.media == "openvidu":
        if not (settings.openvidu_url and settings.openvidu_secret):
            raise ConfigError("SIGNALING_MEDIA=openvidu needs SIGNALING_OPENVIDU_URL and _SECRET")
        if not settings.openvidu_webhook_secret:
            raise ConfigError(
                "SIGNALING_MEDIA=openvidu needs SIGNALING_OPENVIDU_WEBHOOK_SECRET "
                f"(OpenVidu sends it in the {openvidu_webhook.SECRET_HEADER} header)"
            )
        url, secret = settings.openvidu_url, settings.openvidu_secret
        return lambda events: OpenViduMedia(url, secret, events=events)
    if settings.media == "janus":
        from rtc_bridge.janus import JanusMedia

        def janus(events: MediaEvents) -> JanusMedia:
            return JanusMedia(
                settings.janus_url,
                settings.janus_admin_key,
                events=events,
                public_url=settings.janus_public_url,
            )

        return janus
    if settings.media == "relay":
        try:
            from rtc_bridge.relay import RelayMedia
        except ImportError as exc:
            raise ConfigError(
                f"SIGNALING_MEDIA=relay needs aiortc ({exc}): "
                "pip install 'giftcall-signaling[relay]'"
            ) from None
        return RelayMedia
    raise ConfigError(f"SIGNALING_MEDIA={settings.media} is not a media backend")


def call_rules(settings: Settings) -> CallRules:
    return CallRules(
        countdown_s=settings.countdown_s,
        limit_s=settings.limit_s,
        notify_before_s=settings.notify_before_s,
        join_grace_s=settings.join_grace_s,
        signal_queue_max=settings.signal_queue_max,
        held_bytes_max=settings.held_bytes_max,
        write_linger_s=settings.write_linger_s,
        ice_servers=settings.ice_servers,
        ice_servers_for=IceServerProvider.from_settings(settings).for_user,
    )


def quota_rules(settings: Settings) -> QuotaRules:
    return QuotaRules(
        calls_open_max=settings.calls_open_max,
        calls_per_day=settings.calls_per_day,
        gifts_per_minute=settings.gifts_per_minute,
        signals_per_s=settings.signals_per_s,
        chat_per_s=settings.chat_per_s,
        connections_per_user=settings.connections_per_user,
    )


def socket_authenticator(verifier: TokenVerifier) -> Callable[[Any], Identity]:
    """The Socket.IO connect check: a refused connection's ``connect_error``
    carries PROTOCOL.md's ``unauthorized`` message and data."""

    def authenticate(auth: Any) -> Identity:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            return verifier.identity(token)
        except ApiError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                "unauthorized", {"code": "unauthorized", "message": exc.message}
            ) from None

    return authenticate


def client_disconnector(sio: GuardedServer) -> Callable[[web.Application], Awaitable[None]]:
    """An ``on_shutdown`` hook that tells every client to go, then stops the
    Socket.IO server's background work (``sio.shutdown()``).

    It runs before aiohttp waits for open handlers: without it every websocket
    would hold the shutdown until its ping timeout. It never waits on a
    socket's queue: a client that is just going away never drains it.
    """

    async def disconnect_clients(app: web.Application) -> None:
        connections = await asyncio.wait_for(close_all(sio.eio), timeout=5)
        await sio.shutdown()
        logger.info(
            "clients disconnected",
            extra={"event": "server.stopping", "connections": connections},
        )

    return disconnect_clients


def vapid_keys(settings: Settings) -> VapidKeys:
    """The server's VAPID keys, checked by signing once (py-vapid refuses a
    ``sub`` it does not take for a contact)."""
    try:
        keys = VapidKeys(settings.vapid_private_key, settings.vapid_subject)
        keys.authorization("https://push.example")
    except Exception as exc:
        raise ConfigError(f"SIGNALING_VAPID_PRIVATE_KEY/_SUBJECT: {exc}") from None
    return keys


def create_push(app: web.Application, settings: Settings, stores: Stores) -> PushDispatcher | None:
    """The push queue and its workers, when push is configured."""
    keys = app.get(push_routes.VAPID)
    if keys is None:
        return None
    ssl_context = None
    if settings.push_ca_file:
        ssl_context = ssl.create_default_context()
        ssl_context.load_verify_locations(settings.push_ca_file)
    return PushDispatcher(
        subscriptions=stores.push,
        calls=stores.calls,
        sender=WebPushSender(keys, timeout_s=settings.push_timeout_s, ssl_context=ssl_context),
        workers=settings.push_workers,
        queue_max=settings.push_queue_max,
    )


def create_app(settings: Settings) -> web.Application:
    middlewares: list[Any] = [error_middleware]
    if settings.cors_origins:
        middlewares.insert(0, cors_middleware_for(settings.cors_origins))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_MESSAGE_BYTES)
    app.on_response_prepare.append(security_headers)
    metrics = Metrics()
    verifier = TokenVerifier(settings.jwt_secret)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[VERIFIER] = verifier
    sio = create_sio(settings)
    sio.attach(app)
    app.router.add_routes(call_routes.routes)
    app.router.add_routes(questions.routes)
    app.router.add_routes(chat_routes.routes)
    app.router.add_routes(gift_routes.routes)
    app.router.add_routes(push_routes.routes)
    if settings.vapid_private_key:
        app[push_routes.VAPID] = vapid_keys(settings)
    app.router.add_routes(ops.routes)
    app.router.add_routes(web_routes.routes)
    app.router.add_routes(openvidu_webhook.routes)
    app.router.add_routes(janus_webhook.routes)
    if settings.media == "janus":
        app.on_response_prepare.append(
            janus_webhook.janus_csp(settings.janus_public_url or settings.janus_url)
        )
    app.router.add_routes(openapi.routes)

    authenticate = socket_authenticator(verifier)

    app.cleanup_ctx.append(
        functools.partial(run_services, settings=settings, sio=sio, authenticate=authenticate)
    )
    app.on_shutdown.append(client_disconnector(sio))
    return app


async def run_services(
    app: web.Application,
    *,
    settings: Settings,
    sio: GuardedServer,
    authenticate: Callable[[Any], Identity],
) -> AsyncIterator[None]:
    """Start stores, services and timers in order; stop them in reverse.

    Each component is built complete and its teardown pushed on one exit
    stack right after it starts, so a failure half-way stops what started,
    in reverse, and nothing else.
    """
    metrics = app[METRICS]
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(logger.info, "server stopped", extra={"event": "server.stopped"})
        beacon: ProcessBeacon | None = None
        if settings.redis_url:
            from persistence.redis import ProcessBeacon  # the redis extra, only when asked for

            # This process's name and heartbeat in the cluster, for the
            # presence homes and the clock claims alike.
            beacon = await ProcessBeacon.open(settings.redis_url, settings.redis_prefix)
            stack.push_async_callback(beacon.close)
        stores = await open_stores(
            settings.database_url,
            settings.message_store_url,
            settings.redis_url,
            settings.redis_prefix,
            beacon,
        )
        stack.push_async_callback(stores.close)
        app[STORES] = stores
        app[push_routes.SUBSCRIPTIONS] = PushSubscriptions(
            store=stores.push, keep=settings.push_subscriptions_max
        )
        quotas = Quotas(
            quota_rules(settings), redis_url=settings.redis_url, key_prefix=settings.redis_prefix
        )
        stack.push_async_callback(quotas.close)
        bus: ClusterBus | None = None
        if beacon is not None:
            from signaling.cluster import ClusterBus  # the redis extra, only when asked for

            bus = ClusterBus(
                settings.redis_url,
                channel=f"{settings.redis_prefix}:calls",
                key_prefix=settings.redis_prefix,
                beacon=beacon,
            )
            stack.push_async_callback(bus.close)
        push = create_push(app, settings, stores)
        if push is not None:
            stack.push_async_callback(push.close)
            app[push_routes.PUSH] = push
        seeded = await stores.questions.seed(questions.BUILT_IN_QUESTIONS)
        await stores.questions.load()
        app[questions.QUESTION_BANK] = questions.QuestionBank(
            questions=stores.questions, admin_ids=settings.admin_ids
        )

        connections = JoinedConnections()
        rules = call_rules(settings)
        machine = CallMachine(
            calls=stores.calls,
            presence=stores.presence,
            questions=stores.questions,
            connections=connections,
            outbox=SocketOutbox(sio),
            metrics=metrics,
            rules=rules,
            open_media=create_media(settings),
            open_timers=functools.partial(
                CallTimers,
                stores.calls,
                sweep_interval_s=settings.sweep_interval_s,
                takeover_s=settings.takeover_s,
                observe_lateness=metrics.observe_lateness,
                announce=None if bus is None else bus.announce,
                push=push,
            ),
            claims=bus,
            quotas=quotas,
            push=push,
        )
        # Its clocks stop and its queued writes land after the timers stop.
        stack.push_async_callback(machine.close)
        app[MEDIA] = machine.media
        calls = CallService(
            calls=stores.calls,
            notifications=stores.notifications,
            held=machine.held,
            timers=machine.timers,
            finish=machine.finish,
            rules=rules,
            quotas=quotas,
        )
        app[CALLS] = calls
        app[TIMERS] = machine.timers
        sio.register_namespace(CallNamespace(machine, connections, authenticate, metrics, quotas))
        chat = ChatService(
            rooms=stores.rooms,
            messages=stores.messages,
            outbox=SocketChatOutbox(sio),
            metrics=metrics,
            quotas=quotas,
        )
        app[CHAT] = chat
        app[GIFTS] = GiftService(
            gifts=stores.gifts, calls=calls, chat=chat, metrics=metrics, quotas=quotas
        )
        sio.register_namespace(ChatNamespace(chat, authenticate, metrics, quotas))
        if bus is not None:
            await bus.start(machine.changed_elsewhere)
        await machine.timers.start()
        stack.push_async_callback(machine.timers.shutdown)
        if settings.dev:
            await _seed_demo(stores, calls)
        frozen = heap.freeze_startup_heap() if settings.gc_freeze else 0
        logger.info(
            "server ready",
            extra={
                "event": "server.ready",
                "database": settings.database_url.split("://")[0],
                "message_store": settings.message_store_url.split("://")[0] or "database",
                "media": machine.media.name,
                "cluster": bus.origin if bus else None,
                "questions_seeded": seeded,
                "dev": settings.dev,
                "gc_frozen_objects": frozen,
            },
        )
        yield


async def _seed_demo(stores: Stores, service: CallService) -> None:
    """Dev mode: a call between ``alice`` and ``bob`` two minutes from now."""
    if await stores.calls.list_for_user("alice", limit=1):
        return
    call = await service.schedule("alice", "bob", utcnow() + timedelta(minutes=2))
    logger.info("demo call %s: alice and bob", call.id, extra={"event": "dev.demo_call"})
