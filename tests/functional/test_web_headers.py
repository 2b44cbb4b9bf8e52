"""The web client's page and files, and every other answer,
carry a Content-Security-Policy limited to the server's own origin and its
sockets, no framing, ``nosniff``, a Referrer-Policy, and no version in
``Server``; against a real server."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support import RunningServer


@pytest.mark.parametrize(
    "path", ["/", "/web/main.js", "/web/style.css", "/api/health", "/api/calls", "/nothing"]
)
async def test_every_answer_has_the_security_headers(server: RunningServer, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.url + path) as response:
        headers = response.headers
    csp = headers["Content-Security-Policy"]
    directives = dict(
        (part.split(" ", 1)[0], part.split(" ", 1)[1]) for part in csp.split("; ") if " " in part
    )
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    host = f"{server.settings.host}:{server.settings.port}"
    assert directives["connect-src"] == f"'self' ws://{host} wss://{host}", csp
    assert "unsafe" not in csp and "*" not in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Server"] == "giftcall", headers["Server"]
    assert "aiohttp" not in str(headers) and "Python" not in str(headers)


async def test_a_strange_host_header_adds_no_socket_source(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/", headers={"Host": "evil.example; script-src *"}) as response,
    ):
        csp = response.headers["Content-Security-Policy"]
    assert csp.endswith("connect-src 'self'"), csp
    assert "evil" not in csp
