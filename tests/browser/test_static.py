"""The web client's files: served at / and /web/, shipped inside the package."""

from __future__ import annotations

import re

import aiohttp

from signaling.web_routes import WEB_ROOT
from tests.support import REPO, RunningServer

CLIENT_FILES = (
    "index.html",
    "app.js",
    "push.js",
    "sw.js",
    "style.css",
    "socket.io.min.js",
    "VENDOR.md",
)


async def fetch(server: RunningServer, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + path, allow_redirects=False) as response,
    ):
        return response.status, response.content_type, await response.text()


async def test_the_page_and_its_assets_are_served(server: RunningServer) -> None:
    status, kind, page = await fetch(server, "/")
    assert (status, kind) == (200, "text/html"), page[:200]
    assets = re.findall(r'(?:src|href)="(/web/[^"]+)"', page)
    assert set(assets) == {
        "/web/style.css",
        "/web/socket.io.min.js",
        "/web/app.js",
        "/web/push.js",
    }, assets
    for asset in assets:
        status, kind, body = await fetch(server, asset)
        assert status == 200, asset
        assert kind in ("text/css", "application/javascript", "text/javascript"), (asset, kind)
        assert body.strip(), asset
    _, _, vendored = await fetch(server, "/web/socket.io.min.js")
    assert vendored.startswith("/*!\n * Socket.IO v4."), vendored[:80]


async def test_the_service_worker_may_serve_the_whole_site(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/web/sw.js") as response,
    ):
        assert response.status == 200
        assert response.headers["Service-Worker-Allowed"] == "/"
        assert response.content_type in ("application/javascript", "text/javascript")


async def test_nothing_else_is_served(server: RunningServer) -> None:
    for path in (
        "/web/missing.js",
        "/web/..%2Fapp.py",
        "/web/%2E%2E/app.py",
        "/web/.hidden",
        "/web/",
        "/web/../app.py",
    ):
        status, kind, body = await fetch(server, path)
        assert status == 404, (path, status, body[:200])
        assert kind == "application/json", (path, kind)
        assert '"not_found"' in body, (path, body)


def test_the_client_files_are_in_the_package() -> None:
    for name in CLIENT_FILES:
        assert (WEB_ROOT / name).is_file(), name
    assert "signaling = web/*" in (REPO / "setup.cfg").read_text(encoding="utf-8")
