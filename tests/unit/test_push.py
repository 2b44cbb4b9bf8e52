"""Web Push pieces without a network: settings, the key command, VAPID
headers, Retry-After and the dispatcher's rules over memory stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from persistence.factory import open_stores
from persistence.models import CallChanges, CallState, EndReason, utcnow
from persistence.push import PushSubscription
from signaling.__main__ import main
from signaling.app import create_app
from signaling.config import ConfigError, load_settings
from signaling.push.dispatcher import PushDispatcher
from signaling.push.sender import PushAnswer, retry_after_seconds
from signaling.push.vapid import VapidKeys, b64url_decode
from tests.support import SECRET, server_settings

KEYS = VapidKeys.generate("mailto:ops@giftcall.example")


def test_push_settings_are_parsed() -> None:
    settings = load_settings(
        {
            "SIGNALING_JWT_SECRET": SECRET,
            "SIGNALING_VAPID_PRIVATE_KEY": KEYS.private_key,
            "SIGNALING_VAPID_SUBJECT": KEYS.subject,
            "SIGNALING_PUSH_SUBSCRIPTIONS_MAX": "2",
            "SIGNALING_PUSH_WORKERS": "8",
            "SIGNALING_PUSH_QUEUE_MAX": "50",
            "SIGNALING_PUSH_TIMEOUT_S": "2.5",
            "SIGNALING_PUSH_CA_FILE": "/etc/ca.pem",
        }
    )
    assert (settings.vapid_private_key, settings.vapid_subject) == (KEYS.private_key, KEYS.subject)
    assert (settings.push_subscriptions_max, settings.push_workers, settings.push_queue_max) == (
        2,
        8,
        50,
    )
    assert (settings.push_timeout_s, settings.push_ca_file) == (2.5, "/etc/ca.pem")
    assert KEYS.private_key not in repr(settings)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SIGNALING_VAPID_PRIVATE_KEY": "short"}, "VAPID_PRIVATE_KEY"),
        ({"SIGNALING_VAPID_PRIVATE_KEY": KEYS.private_key}, "VAPID_SUBJECT"),
        (
            {"SIGNALING_VAPID_PRIVATE_KEY": KEYS.private_key, "SIGNALING_VAPID_SUBJECT": "me"},
            "VAPID_SUBJECT",
        ),
        ({"SIGNALING_PUSH_WORKERS": "0"}, "PUSH_WORKERS"),
        ({"SIGNALING_PUSH_SUBSCRIPTIONS_MAX": "101"}, "PUSH_SUBSCRIPTIONS_MAX"),
        ({"SIGNALING_PUSH_TIMEOUT_S": "0"}, "PUSH_TIMEOUT_S"),
    ],
)
def test_bad_push_settings_name_their_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_settings({"SIGNALING_JWT_SECRET": SECRET, **env})


def test_the_key_command_prints_a_pair_the_server_takes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["vapid-keys", "--subject", "mailto:me@example.org"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line)
    settings = load_settings(
        {"SIGNALING_JWT_SECRET": SECRET, **{k: v.strip() for k, v in lines.items()}}
    )
    assert settings.vapid_subject == "mailto:me@example.org"
    assert len(b64url_decode(VapidKeys(settings.vapid_private_key, "x").public_key)) == 65


def test_the_vapid_header_is_an_es256_jwt_for_the_origin() -> None:
    header = KEYS.authorization("https://push.example.net:8443/send/abc")
    token, key = header.removeprefix("vapid t=").split(",k=")
    assert key == KEYS.public_key
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
    claims = jwt.decode(
        token, public, algorithms=["ES256"], audience="https://push.example.net:8443"
    )
    assert claims["sub"] == KEYS.subject
    assert 0 < claims["exp"] - datetime.now(UTC).timestamp() <= 24 * 3600
    # Signed once per audience, not per push.
    assert KEYS.authorization("https://push.example.net:8443/send/other") == header


def test_retry_after_takes_seconds_or_a_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


class RecordingSender:
    """Answers with ``answers`` in turn (then 201) and records what it sent."""

    def __init__(self, *answers: PushAnswer) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes, int, str]] = []
        self.closed = False
        self.first = asyncio.Event()

    async def send(
        self, subscription: PushSubscription, payload: bytes, *, ttl: int, urgency: str
    ) -> PushAnswer:
        self.sent.append((subscription.endpoint, payload, ttl, urgency))
        self.first.set()
        return self.answers.pop(0) if self.answers else PushAnswer(201)

    async def close(self) -> None:
        self.closed = True


async def test_a_full_queue_drops_notices_without_waiting() -> None:
    stores = await open_stores("memory://")
    for user_id in ("alice", "bob"):
        await stores.push.add(user_id, f"https://push.example.net/{user_id}", "k", "a", keep=5)
    now = utcnow()
    call = await stores.calls.create(
        "alice", "bob", now + timedelta(minutes=5), now, now + timedelta(minutes=15)
    )
    sender = RecordingSender()
    dispatcher = PushDispatcher(
        subscriptions=stores.push, calls=stores.calls, sender=sender, workers=1, queue_max=1
    )
    try:
        # Two notices, room for one: the caller's is queued, the callee's
        # dropped, and neither call waits.
        dispatcher.window_opened(call)
        await dispatcher.drain()
    finally:
        await dispatcher.close()
    assert [endpoint for endpoint, *_ in sender.sent] == ["https://push.example.net/alice"]
    assert sender.closed


async def test_a_retry_stops_when_the_call_is_cancelled() -> None:
    stores = await open_stores("memory://")
    await stores.push.add("bob", "https://push.example.net/1", "k", "a", keep=5)
    now = utcnow()
    call = await stores.calls.create(
        "alice", "bob", now + timedelta(minutes=5), now, now + timedelta(minutes=15)
    )
    sender = RecordingSender(PushAnswer(503, retry_after=0.05))
    dispatcher = PushDispatcher(
        subscriptions=stores.push, calls=stores.calls, sender=sender, workers=2, queue_max=10
    )
    try:
        dispatcher.partner_waiting(call, "bob")
        await sender.first.wait()
        await stores.calls.update(
            call.id,
            lambda c: CallChanges(
                state=CallState.CANCELLED, ended_at=utcnow(), end_reason=EndReason.CANCELLED
            ),
            cause="test",
        )
        await dispatcher.drain()
    finally:
        await dispatcher.close()
    ((endpoint, _payload, ttl, urgency),) = sender.sent
    assert (endpoint, urgency) == ("https://push.example.net/1", "high")
    assert 0 < ttl <= 15 * 60


def test_a_subject_push_services_would_refuse_stops_the_server(tmp_path: Path) -> None:
    settings = server_settings(
        tmp_path, vapid_private_key=KEYS.private_key, vapid_subject="mailto:nobody"
    )
    with pytest.raises(ConfigError, match="VAPID"):
        create_app(settings)
