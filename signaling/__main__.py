"""Command line: ``serve`` runs the server, ``token`` mints a JWT for a user,
``openapi`` and ``events-schema`` print the REST and Socket.IO descriptions,
``vapid-keys`` makes a key pair for Web Push."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web

from signaling.auth import mint_token
from signaling.config import ConfigError, load_settings
from signaling.logs import configure_logging

logger = logging.getLogger("signaling")


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(host=args.host, port=args.port, dev=True if args.dev else None)
    configure_logging(settings.log_level)
    if settings.jwt_secret_generated:
        # Printed on purpose: dev mode's secret is what `token` needs.
        print(f"dev mode: SIGNALING_JWT_SECRET={settings.jwt_secret}", file=sys.stderr)
    from signaling.app import create_app

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # uvloop is optional: the server runs on the default loop too
        pass
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=lambda msg: logger.info(msg.strip(), extra={"event": "server.listening"}),
        access_log=None,
        # Clients were told to go at shutdown; don't wait a minute for stragglers.
        shutdown_timeout=3.0,
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    settings = load_settings(dev=True, jwt_secret=args.secret)
    if settings.jwt_secret_generated:
        print("error: set SIGNALING_JWT_SECRET or pass --secret", file=sys.stderr)
        return 2
    print(mint_token(settings.jwt_secret, args.user_id, ttl_s=args.ttl))
    return 0


def _describe(args: argparse.Namespace) -> int:
    from signaling import openapi

    # The committed docs/openapi.json and docs/events.schema.json are this output.
    document = openapi.openapi_spec() if args.command == "openapi" else openapi.events_schema()
    sys.stdout.write(openapi.dumps(document))
    return 0


def _vapid_keys(args: argparse.Namespace) -> int:
    from signaling.push.vapid import VapidKeys

    keys = VapidKeys.generate(args.subject)
    # The private key goes to the server's secrets; browsers get the public one
    # from GET /api/push/vapid-public-key.
    print(f"SIGNALING_VAPID_PRIVATE_KEY={keys.private_key}")
    print(f"SIGNALING_VAPID_SUBJECT={keys.subject}")
    print(f"# public key (served at /api/push/vapid-public-key): {keys.public_key}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="giftcall", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="listen address (SIGNALING_HOST)")
    serve.add_argument("--port", type=int, help="listen port (SIGNALING_PORT)")
    serve.add_argument("--dev", action="store_true", help="dev mode (SIGNALING_DEV=1)")
    serve.set_defaults(run=_serve)
    token = commands.add_parser("token", help="mint a JWT for a user id")
    token.add_argument("user_id")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    token.add_argument("--secret", help="HS256 secret (default: SIGNALING_JWT_SECRET)")
    token.set_defaults(run=_token)
    commands.add_parser("openapi", help="print the OpenAPI 3.1 description").set_defaults(
        run=_describe
    )
    commands.add_parser(
        "events-schema", help="print the JSON Schema of the Socket.IO events"
    ).set_defaults(run=_describe)
    vapid = commands.add_parser("vapid-keys", help="generate a VAPID key pair for Web Push")
    vapid.add_argument(
        "--subject",
        default="mailto:ops@example.com",
        help="the contact push services see (mailto: or https:)",
    )
    vapid.set_defaults(run=_vapid_keys)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
