"""schemathesis against a live server: every operation of
``signaling.openapi.openapi_spec()`` gets requests generated from the spec,
schema-valid (positive) and schema-invalid (negative), with a real token.

Every answer must be documented (status, content type, headers), match its
schema (the error body on every 4xx), never be a 5xx, reject schema-invalid
input with a 4xx, and honour the auth the spec names; nothing a request does
may log an ERROR line.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, CheckFunction
from schemathesis.specs.openapi import checks as openapi_checks

from signaling.openapi import ROUTES, dumps, openapi_spec
from tests.support import ErrorLines, RunningServer, in_seconds, server_in_thread

#: Generated requests per operation and generation mode (positive, and negative
#: where there is an input to break): about 5,400 in all, some 45 s here.
EXAMPLES = 150
#: The run must send at least this many.
MIN_REQUESTS = 5000
USER = "alice"
PARTNER = "bob"


def error_shape_on_4xx(ctx: CheckContext, response: Any, case: schemathesis.Case) -> bool | None:
    """Every 4xx, documented or not (405, 404 of an unknown path), is the error body."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and body.get("ok") is False, body
        assert set(body["error"]) <= {"code", "message", "retry_after"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return None


CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
    error_shape_on_4xx,
]


def seed(server: RunningServer, session: requests.Session) -> None:
    """Something to find at small ids: calls, gifts both ways (a chat room)."""
    for in_s in (3600, 7200, 86400):
        call = {"partner_id": PARTNER, "scheduled_at": in_seconds(in_s)}
        assert post(server, session, "/api/calls", USER, call).status_code == 201
    for sender, receiver in ((USER, PARTNER), (PARTNER, USER)):
        gift = {"receiver_id": receiver, "kind": "general", "message": "hi"}
        assert post(server, session, "/api/gifts", sender, gift).status_code == 201


def post(
    server: RunningServer, session: requests.Session, path: str, user: str, body: Any
) -> requests.Response:
    return session.post(server.url + path, json=body, headers=server.headers(user), timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_operation_against_the_spec(tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_dict(openapi_spec())
    # Unknown query keys are ignored, as HTTP servers do; the token is sent on
    # every request (ignored_auth checks what happens without it).
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(ROUTES)
    errors = ErrorLines()
    logging.getLogger().addHandler(errors)
    sent: dict[str, int] = {}
    started = time.monotonic()
    try:
        with (
            server_in_thread(
                tmp_path,
                dev=True,  # the dev login route answers
                admin_ids=frozenset({USER}),  # and so does adding questions
                # Quotas high enough that bodies reach the services, not the limiter.
                calls_open_max=100_000,
                calls_per_day=100_000,
                gifts_per_minute=100_000,
            ) as server,
            requests.Session() as session,
        ):
            seed(server, session)
            session.headers.update(server.headers(USER))
            for operation in operations:
                for mode in modes_for(operation):
                    sent[f"{mode.value} {operation.label}"] = _fuzz(
                        operation, mode, server, session
                    )
    finally:
        logging.getLogger().removeHandler(errors)
    total = sum(sent.values())
    print(f"schemathesis: {total} requests in {time.monotonic() - started:.1f} s", sent)
    assert total >= MIN_REQUESTS, sent
    assert not errors.records, [r.getMessage() for r in errors.records][:5]


def modes_for(operation: Any) -> tuple[GenerationMode, ...]:
    """Negative cases need something to break: a parameter or a body."""
    has_input = any(
        len(part) for part in (operation.path_parameters, operation.query, operation.body)
    )
    if has_input:
        return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return (GenerationMode.POSITIVE,)


def _fuzz(
    operation: Any, mode: GenerationMode, server: RunningServer, session: requests.Session
) -> int:
    """Run one operation's generated cases; returns how many were sent."""
    count = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def one(case: schemathesis.Case) -> None:
        nonlocal count
        response = case.call(base_url=server.url, session=session, timeout=10)
        count += 1
        case.validate_response(response, checks=CHECKS)

    began = time.monotonic()
    one()
    print(
        "fuzzed", mode.value, operation.label, count, f"{time.monotonic() - began:.1f}", flush=True
    )
    return count


async def test_the_description_and_its_page_are_served(server: RunningServer) -> None:
    status, spec = await server.request("GET", "/api/openapi.json")
    assert (status, spec) == (200, json.loads(dumps(openapi_spec())))
    status, page = await server.request("GET", "/api/docs")
    assert status == 200 and '<script src="/web/api-docs.js"></script>' in page, page
    for asset in ("api-docs.js", "api-docs.css"):
        status, text = await server.request("GET", f"/web/{asset}")
        assert status == 200 and text, asset
