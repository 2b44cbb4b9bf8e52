"""OpenVidu webhook bodies as typed events (one type per handled event, picked
by ``event``), and serverData and session ids (rtc_bridge.openvidu.webhooks)."""

from __future__ import annotations

from typing import Any

import pytest

from rtc_bridge.openvidu import (
    OtherEvent,
    ParticipantJoined,
    ParticipantLeft,
    SessionDestroyed,
    WebhookError,
    WebrtcConnectionCreated,
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
    assert isinstance(event, ParticipantJoined)
    assert (event.event, event.timestamp, event.session_id) == (
        "participantJoined",
        1601394715606,
        "call-7",
    )
    assert event.unique_session_id == "call-7_1601394690713"
    assert event.connection_id == "con_EIeO06zgMz"
    assert parse_server_data(event.server_data) == (7, "alice")
    # serverData is ours: anything but a string is no data, not an invalid event
    odd = parse_webhook({**JOINED, "serverData": {"call_id": 7}})
    assert isinstance(odd, ParticipantJoined) and odd.server_data is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("participantJoined", ParticipantJoined),
        ("participantLeft", ParticipantLeft),
        ("webrtcConnectionCreated", WebrtcConnectionCreated),
        ("sessionDestroyed", SessionDestroyed),
        ("recordingStatusChanged", OtherEvent),
        ("participantjoined", OtherEvent),  # tags match exactly, as OpenVidu spells them
    ],
)
def test_each_event_has_its_type(name: str, kind: type) -> None:
    event = parse_webhook({**JOINED, "event": name})
    assert type(event) is kind
    assert (event.event, event.session_id, event.connection_id) == (
        name,
        "call-7",
        "con_EIeO06zgMz",
    )


def test_webrtc_connection_created_directions() -> None:
    base = {**JOINED, "event": "webrtcConnectionCreated", "streamId": "str_CAM_x"}
    outbound = parse_webhook({**base, "connection": "OUTBOUND"})
    inbound = parse_webhook({**base, "connection": "INBOUND", "receivingFrom": "con_other"})
    assert isinstance(outbound, WebrtcConnectionCreated)
    assert isinstance(inbound, WebrtcConnectionCreated)
    assert outbound.publishing and not inbound.publishing
    assert inbound.receiving_from == "con_other"
    # Older OpenVidu versions: no "connection" field, receivingFrom empty for a publisher.
    older = parse_webhook({**base, "receivingFrom": ""})
    assert isinstance(older, WebrtcConnectionCreated)
    assert older.publishing and older.receiving_from is None
    assert outbound.key() != inbound.key()
    assert parse_webhook(base).key() == parse_webhook(dict(base)).key()


def test_left_and_destroyed_carry_a_reason() -> None:
    left = parse_webhook({**JOINED, "event": "participantLeft", "reason": "disconnect"})
    assert isinstance(left, ParticipantLeft) and left.reason == "disconnect"
    destroyed = parse_webhook(
        {"event": "sessionDestroyed", "timestamp": 5, "sessionId": "call-7", "reason": "x"}
    )
    assert isinstance(destroyed, SessionDestroyed)
    assert destroyed.connection_id is None and destroyed.reason == "x"


@pytest.mark.parametrize(
    "body",
    [
        {"event": "recordingStatusChanged", "timestamp": 1},
        {"event": "signalSent", "timestamp": 1, "sessionId": None, "data": [1]},
        {"event": "streamCreated", "timestamp": 1, "sessionId": "", "connectionId": "con_x"},
    ],
)
def test_other_events_are_accepted_as_other(body: dict[str, Any]) -> None:
    """What the backend does not act on needs no session or connection."""
    event = parse_webhook(body)
    assert isinstance(event, OtherEvent)
    assert event.session_id == "" and event.event == body["event"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        "participantJoined",
        {},
        {"event": "", "timestamp": 1},
        {"event": 5, "timestamp": 1},
        {"event": ["participantJoined"], "timestamp": 1},
        {"event": "recordingStatusChanged"},
        {"event": "recordingStatusChanged", "timestamp": 1, "connectionId": 5},
        {"event": "participantJoined", "timestamp": "1"},
        {"event": "participantJoined", "timestamp": True},
        {"event": "participantJoined", "timestamp": 1.0},
        {"event": "participantJoined", "timestamp": -1},
        {**JOINED, "sessionId": None},
        {**JOINED, "sessionId": ""},
        {**JOINED, "uniqueSessionId": 7},
        {**JOINED, "connectionId": 5},
        {**JOINED, "connectionId": ""},
        {k: v for k, v in JOINED.items() if k != "connectionId"},
        {**JOINED, "event": "participantLeft", "reason": 5},
        {**JOINED, "event": "webrtcConnectionCreated", "connection": 1},
        {k: v for k, v in JOINED.items() if k != "sessionId"} | {"event": "sessionDestroyed"},
    ],
)
def test_malformed_bodies(body: Any) -> None:
    with pytest.raises(WebhookError):
        parse_webhook(body)


def test_the_error_names_the_field_as_openvidu_does() -> None:
    with pytest.raises(WebhookError, match=r"^connectionId: ") as missing:
        parse_webhook({k: v for k, v in JOINED.items() if k != "connectionId"})
    assert "participantJoined" not in str(missing.value)
    with pytest.raises(WebhookError, match=r"^timestamp: "):
        parse_webhook({**JOINED, "timestamp": -1})
    with pytest.raises(WebhookError, match=r"^the body must be a JSON object$"):
        parse_webhook([JOINED])


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
