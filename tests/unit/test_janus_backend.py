"""The Janus backend's pure parts: settings, the derived room keys, and the
event handler's posts parsed into events."""

from __future__ import annotations

import pytest

from rtc_bridge.janus import EventError, JanusMedia, RoomKeys, parse_events
from signaling.app import create_media
from signaling.config import ConfigError, load_settings
from tests.support import SECRET
from tests.unit.doubles import UnheardMediaEvents

JANUS = {
    "media": "janus",
    "janus_url": "http://127.0.0.1:8088/janus",
    "janus_admin_key": "admin-key",
    "janus_event_secret": "event-secret",
}


async def test_the_janus_backend_from_settings() -> None:
    media = create_media(load_settings({}, jwt_secret=SECRET, **JANUS))(UnheardMediaEvents())
    assert isinstance(media, JanusMedia) and not media.terminates_peers
    assert media.public_url == JANUS["janus_url"]
    await media.close()
    env = {f"SIGNALING_{k.upper()}": v for k, v in JANUS.items()}
    env["SIGNALING_JANUS_PUBLIC_URL"] = "https://j.example/janus"
    settings = load_settings({**env, "SIGNALING_JWT_SECRET": SECRET})
    assert settings.janus_public_url == "https://j.example/janus"
    assert "admin-key" not in repr(settings) and "event-secret" not in repr(settings)


@pytest.mark.parametrize("missing", ["janus_url", "janus_admin_key", "janus_event_secret"])
def test_each_janus_setting_is_required(missing: str) -> None:
    with pytest.raises(ConfigError, match="JANUS_URL, _ADMIN_KEY and _EVENT_SECRET"):
        load_settings({}, jwt_secret=SECRET, **{**JANUS, missing: ""})


def test_room_keys_are_stable_distinct_and_fit_javascript_numbers() -> None:
    keys, other = RoomKeys("k1"), RoomKeys("k2")
    assert keys.token(7, "alice") == RoomKeys("k1").token(7, "alice")
    values = {keys.token(7, "alice"), keys.token(7, "bob"), keys.token(8, "alice")}
    assert len(values) == 3 and keys.token(7, "alice") != other.token(7, "alice")
    assert keys.secret(7) != keys.secret(8) != other.secret(8)
    feeds = {keys.feed_id(call, user) for call in range(50) for user in ("alice", "bob")}
    assert len(feeds) == 100 and all(0 < f < 2**53 for f in feeds)


def test_posts_parse_into_the_events_read_and_skip_the_others() -> None:
    plugin = {"plugin": "janus.plugin.videoroom"}
    ids = {"session_id": 5, "handle_id": 6}
    joined = {"event": "joined", "room": 9, "id": 42}
    body = [
        {"type": 2, "timestamp": 1, **ids, "event": {"name": "detached"}},
        {"type": 16, "timestamp": 2, **ids, "event": {"connection": "webrtcup"}},
        {"type": 16, "timestamp": 3, **ids, "event": {"ice": "connected"}},
        {"type": 64, "timestamp": 4, **ids, "event": {**plugin, "data": joined}},
        {"type": 64, "timestamp": 5, "event": {"plugin": "janus.plugin.echotest", "data": {}}},
        {"type": 32, "timestamp": 6, "event": {"media": "audio"}},
    ]  # fmt: skip
    events = parse_events(body)
    assert [(e.type, e.name, e.room, e.feed_id) for e in events] == [
        (2, "detached", None, None),
        (16, "webrtcup", None, None),
        (64, "joined", 9, 42),
    ]
    assert parse_events(body[1])[0].key() == events[1].key()
    for bad in ([1], {"type": "x", "timestamp": 1}, {"type": 2}, [{"timestamp": True, "type": 2}]):
        with pytest.raises(EventError):
            parse_events(bad)
