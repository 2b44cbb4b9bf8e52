"""OpenVidu webhook bodies and serverData as plain data (rtc_bridge.openvidu)."""

from __future__ import annotations

from typing import Any

import pytest

from rtc_bridge.openvidu import (
    WebhookError,
    call_id_for,
    parse_server_data,
    parse_webhook,
    server_data_for,
    session_id_for,
)

JOINED = {
    "event": "participantJoined",
    "timestamp": 1601394715606,
    "sessionId": "call-7",
    "uniqueSessionId": "call-7_1601394690713",
    "connectionId": "con_EIeO06zgMz",
    "location": "",
    "ip": "37.122.145.190",
    "platform": "Chrome 85.0.4183.121 on Linux 64-bit",
    "clientData": "Mike",
    "serverData": '{"call_id":7,"user_id":"alice"}',
}


def test_participant_joined() -> None:
    event = parse_webhook(JOINED)
    assert (event.event, event.timestamp, event.session_id) == (
        "participantJoined",
        1601394715606,
        "call-7",
    )
    assert event.unique_session_id == "call-7_1601394690713"
    assert event.connection_id == "con_EIeO06zgMz"
    assert parse_server_data(event.server_data) == (7, "alice")
    assert event.handled


def test_webrtc_connection_created_directions() -> None:
    base = {**JOINED, "event": "webrtcConnectionCreated", "streamId": "str_CAM_x"}
    outbound = parse_webhook({**base, "connection": "OUTBOUND"})
    inbound = parse_webhook({**base, "connection": "INBOUND", "receivingFrom": "con_other"})
    assert outbound.publishing and not inbound.publishing
    assert inbound.receiving_from == "con_other"
    # Older OpenVidu versions: no "connection" field, receivingFrom empty for a publisher.
    assert parse_webhook({**base, "receivingFrom": ""}).publishing
    assert outbound.key() != inbound.key()
    assert parse_webhook(base).key() == parse_webhook(dict(base)).key()


def test_left_and_destroyed_carry_a_reason() -> None:
    left = parse_webhook({**JOINED, "event": "participantLeft", "reason": "disconnect"})
    assert left.reason == "disconnect"
    destroyed = parse_webhook(
        {"event": "sessionDestroyed", "timestamp": 5, "sessionId": "call-7", "reason": "x"}
    )
    assert destroyed.connection_id is None and destroyed.reason == "x"


def test_other_events_are_accepted_and_not_handled() -> None:
    event = parse_webhook({"event": "recordingStatusChanged", "timestamp": 1})
    assert not event.handled


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"event": "", "timestamp": 1},
        {"event": "participantJoined", "timestamp": "1"},
        {"event": "participantJoined", "timestamp": True},
        {"event": "participantJoined", "timestamp": -1},
        {**JOINED, "sessionId": None},
        {**JOINED, "connectionId": 5},
        {k: v for k, v in JOINED.items() if k != "connectionId"},
    ],
)
def test_malformed_bodies(body: Any) -> None:
    with pytest.raises(WebhookError):
        parse_webhook(body)


def test_server_data_round_trip_and_garbage() -> None:
    assert parse_server_data(server_data_for(12, "bob")) == (12, "bob")
    for text in (None, "", "bob", "[]", '{"call_id":"12","user_id":"bob"}', '{"call_id":1}'):
        assert parse_server_data(text) is None
    assert parse_server_data('{"call_id":true,"user_id":"bob"}') is None


def test_session_ids() -> None:
    assert session_id_for(42) == "call-42"
    assert call_id_for("call-42") == 42
    for other in ("call-", "call-0", "call-01", "ses_abc", "call-42x", "xcall-42"):
        assert call_id_for(other) is None
