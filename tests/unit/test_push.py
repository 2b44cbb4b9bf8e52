"""Web Push pieces without a network: settings, the key command, VAPID
headers, Retry-After and the dispatcher's rules (outcomes and their metrics,
pruning the delivery keys) over memory stores."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from persistence.factory import open_stores
from persistence.models import CallChanges, CallState, EndReason, utcnow
from persistence.push import MemoryPushStore, PushSubscription
from signaling.__main__ import main
from signaling.app import create_app
from signaling.config import ConfigError, load_settings
from signaling.metrics import PUSH_OUTCOMES, Metrics
from signaling.push.dispatcher import PRUNE_SLACK, PushDispatcher
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
    """Answers with ``answers`` in turn (then 201; an exception is raised)
    and records what it sent."""

    def __init__(self, *answers: PushAnswer | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes, int, str]] = []
        self.closed = False
        self.first = asyncio.Event()

    async def send(
        self, subscription: PushSubscription, payload: bytes, *, ttl: int, urgency: str
    ) -> PushAnswer:
        self.sent.append((subscription.endpoint, payload, ttl, urgency))
        self.first.set()
        answer = self.answers.pop(0) if self.answers else PushAnswer(201)
        if isinstance(answer, Exception):
            raise answer
        return answer

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
    metrics = Metrics()
    dispatcher = PushDispatcher(
        subscriptions=stores.push,
        calls=stores.calls,
        sender=sender,
        workers=1,
        queue_max=1,
        metrics=metrics,
    )
    try:
        # Two notices, room for one: the caller's is queued, the callee's
        # dropped, and neither call waits.
        dispatcher.window_opened(call)
        assert sample(metrics, "signaling_push_queue_depth") == 1
        await dispatcher.drain()
        assert sample(metrics, "signaling_push_queue_depth") == 0
    finally:
        await dispatcher.close()
    assert [endpoint for endpoint, *_ in sender.sent] == ["https://push.example.net/alice"]
    assert sender.closed
    assert outcomes(metrics) == {"sent": 1, "dropped": 1}


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def outcomes(metrics: Metrics) -> dict[str, int]:
    """The non-zero push counts by outcome (every outcome is exported)."""
    counts = {o: sample(metrics, "signaling_pushes_total", outcome=o) for o in PUSH_OUTCOMES}
    assert None not in counts.values(), counts
    return {o: int(n) for o, n in counts.items() if n}


async def test_every_outcome_is_counted_as_it_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stores = await open_stores("memory://")
    endpoints = [f"https://push.example.net/{n}" for n in range(6)]
    for endpoint in endpoints:
        await stores.push.add("bob", endpoint, "k", "a", keep=10)
    now = utcnow()
    call = await stores.calls.create(
        "alice", "bob", now + timedelta(minutes=5), now, now + timedelta(minutes=15)
    )
    # One worker: the deliveries are sent in subscription order, and the
    # retry queues behind them.
    sender = RecordingSender(
        PushAnswer(201),
        PushAnswer(410),
        PushAnswer(400),
        PushAnswer(503, retry_after=0),  # then 201
        PushAnswer(429, retry_after=3600),  # after the window closes
        RuntimeError("a bug"),
    )
    metrics = Metrics()
    dispatcher = PushDispatcher(
        subscriptions=stores.push,
        calls=stores.calls,
        sender=sender,
        workers=1,
        queue_max=10,
        metrics=metrics,
    )
    caplog.set_level(logging.INFO, "signaling.push.dispatcher")
    try:
        dispatcher.partner_waiting(call, "bob")
        await dispatcher.drain()
    finally:
        await dispatcher.close()
    assert [endpoint for endpoint, *_ in sender.sent] == [*endpoints, endpoints[3]]
    expected = {"sent": 2, "gone": 1, "refused": 1, "retry": 1, "expired": 1, "failed": 1}
    assert outcomes(metrics) == expected
    logged = Counter(getattr(r, "event", "") for r in caplog.records)
    assert {e.removeprefix("push."): n for e, n in logged.items()} == expected


class PruneRecorder(MemoryPushStore):
    """Records the cut of every prune; the first one fails."""

    def __init__(self) -> None:
        super().__init__()
        self.cuts: list[datetime] = []
        self.twice = asyncio.Event()

    async def prune_deliveries(self, before: datetime) -> int:
        self.cuts.append(before)
        if len(self.cuts) == 1:
            raise RuntimeError("the database went away for a moment")
        self.twice.set()
        return await super().prune_deliveries(before)


async def test_the_dispatcher_prunes_keys_older_than_the_window_periodically() -> None:
    stores = await open_stores("memory://")
    store = PruneRecorder()
    errors: list[None] = []
    window = timedelta(minutes=15)
    started = utcnow()
    dispatcher = PushDispatcher(
        subscriptions=store,
        calls=stores.calls,
        sender=RecordingSender(),
        workers=1,
        queue_max=10,
        on_error=lambda: errors.append(None),
        keep_deliveries=window,
        prune_every_s=0.001,
    )
    try:
        await store.twice.wait()  # a failed round does not stop the next
        ended = utcnow()
    finally:
        await dispatcher.close()
    assert len(errors) == 1
    for cut in store.cuts:
        assert started - window - PRUNE_SLACK <= cut <= ended - window - PRUNE_SLACK


async def test_without_a_window_nothing_is_pruned() -> None:
    stores = await open_stores("memory://")
    store = PruneRecorder()
    dispatcher = PushDispatcher(
        subscriptions=store,
        calls=stores.calls,
        sender=RecordingSender(),
        workers=1,
        queue_max=10,
        prune_every_s=0.001,
    )
    try:
        assert await dispatcher.prune() == 0
        await dispatcher.drain()
    finally:
        await dispatcher.close()
    assert store.cuts == []


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
