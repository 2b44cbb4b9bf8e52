"""OpenVidu 2 as a media backend: ``client`` (its REST API), ``webhooks``
(its events as typed data, and the names we give it), ``backend``
(:class:`OpenViduMedia`, the state machine that follows them)."""

from rtc_bridge.openvidu.backend import OpenViduMedia
from rtc_bridge.openvidu.client import (
    ConnectionInfo,
    OpenViduClient,
    OpenViduError,
    OpenViduRejectedError,
    OpenViduUnavailableError,
    RetryPolicy,
    SessionInfo,
    SessionNotFoundError,
)
from rtc_bridge.openvidu.webhooks import (
    SESSION_PREFIX,
    OtherEvent,
    ParticipantJoined,
    ParticipantLeft,
    SessionDestroyed,
    WebhookError,
    WebhookEvent,
    WebrtcConnectionCreated,
    call_id_for,
    parse_server_data,
    parse_webhook,
    server_data_for,
    session_id_for,
)

__all__ = [
    "SESSION_PREFIX",
    "ConnectionInfo",
    "OpenViduClient",
    "OpenViduError",
    "OpenViduMedia",
    "OpenViduRejectedError",
    "OpenViduUnavailableError",
    "OtherEvent",
    "ParticipantJoined",
    "ParticipantLeft",
    "RetryPolicy",
    "SessionDestroyed",
    "SessionInfo",
    "SessionNotFoundError",
    "WebhookError",
    "WebhookEvent",
    "WebrtcConnectionCreated",
    "call_id_for",
    "parse_server_data",
    "parse_webhook",
    "server_data_for",
    "session_id_for",
]
