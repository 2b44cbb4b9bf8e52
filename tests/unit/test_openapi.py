"""The OpenAPI description and the events' JSON Schema cannot drift: every
route of the app is described and every described route exists, the committed
copies in docs/ are what the code generates, and both documents are valid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import schemathesis

from signaling import openapi
from signaling.app import create_app
from signaling.config import load_settings
from tests.support import REPO, SECRET

#: How to regenerate each committed copy.
COMMITTED = {
    "openapi": REPO / "docs" / "openapi.json",
    "events-schema": REPO / "docs" / "events.schema.json",
}


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, HEAD twins of GET aside."""
    settings = load_settings({}, jwt_secret=SECRET, database_url=f"sqlite:///{tmp_path}/x.db")
    found = set()
    for route in create_app(settings).router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        found.add((route.method, path))
    return {(m, p) for m, p in found if not (m == "HEAD" and ("GET", p) in found)}


def test_every_route_is_described_and_every_description_is_a_route(tmp_path: Path) -> None:
    served = app_routes(tmp_path) - openapi.NOT_REST
    described = {(r.method, r.path) for r in openapi.ROUTES}
    assert not served - described, (
        f"routes missing from signaling/openapi.py ROUTES: {served - described}"
    )
    assert not described - served, f"described routes the app does not serve: {described - served}"
    assert app_routes(tmp_path) >= openapi.NOT_REST, "NOT_REST names a route that is gone"
    assert len(described) == len(openapi.ROUTES), "a route is described twice"


@pytest.mark.parametrize("command", sorted(COMMITTED))
def test_committed_copy_is_current(command: str) -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "signaling", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = COMMITTED[command]
    assert path.read_text() == generated, (
        f"{path.relative_to(REPO)} is stale: python -m signaling {command} > "
        f"{path.relative_to(REPO)}"
    )


def test_the_description_loads_with_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(openapi.openapi_spec())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(openapi.ROUTES)


def test_every_error_answer_has_the_error_shape() -> None:
    spec = openapi.openapi_spec()
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
            assert errors, (method, path)
            for status, response in errors.items():
                assert response["content"]["application/json"]["schema"] == error_ref, (
                    method,
                    path,
                    status,
                )


def test_the_events_schema_is_valid_json_schema() -> None:
    document = openapi.events_schema()
    jsonschema.Draft202012Validator.check_schema(document)
    for namespace, events in document["x-events"].items():
        for name in events:
            jsonschema.Draft202012Validator.check_schema(
                openapi.event_payload_schema(namespace, name)
            )
    assert json.loads(openapi.dumps(document)) == document
