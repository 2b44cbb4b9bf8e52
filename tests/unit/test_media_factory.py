"""signaling.app.create_media: SIGNALING_MEDIA picks the backend (a factory,
checked at once, that builds it around its events)."""

from __future__ import annotations

import pytest

from rtc_bridge.openvidu import OpenViduMedia
from rtc_bridge.p2p import PeerToPeerMedia
from rtc_bridge.relay import RelayMedia
from signaling.app import create_media
from signaling.config import ConfigError, load_settings
from tests.support import SECRET
from tests.unit.doubles import UnheardMediaEvents

OPENVIDU = {
    "media": "openvidu",
    "openvidu_url": "http://127.0.0.1:4443",
    "openvidu_secret": "ov-secret",
}


async def test_each_backend() -> None:
    events = UnheardMediaEvents()
    p2p = create_media(load_settings({}, jwt_secret=SECRET))(events)
    assert isinstance(p2p, PeerToPeerMedia)
    relay = create_media(load_settings({}, jwt_secret=SECRET, media="relay"))(events)
    assert isinstance(relay, RelayMedia) and relay.terminates_peers
    openvidu = create_media(
        load_settings({}, jwt_secret=SECRET, openvidu_webhook_secret="hook", **OPENVIDU)
    )(events)
    assert isinstance(openvidu, OpenViduMedia) and not openvidu.terminates_peers
    await openvidu.close()


def test_openvidu_needs_the_webhook_secret() -> None:
    settings = load_settings({}, jwt_secret=SECRET, **OPENVIDU)
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        create_media(settings)
