"""The web client's files: served at / and /web/, shipped inside the package."""

from __future__ import annotations

import posixpath
import re

import aiohttp

from signaling.web_routes import WEB_ROOT
from tests.support import REPO, RunningServer

CLIENT_FILES = (
    "index.html",
    "main.js",
    "sw.js",
    "style.css",
    "socket.io.min.js",
    "VENDOR.md",
)
#: How a JavaScript file is served: browsers refuse a module with any other type.
JS_TYPES = ("application/javascript", "text/javascript")
#: A module's imports: `import … from './x.js'`, `import './x.js'`, `import('./x.js')`.
IMPORT = re.compile(
    r"""(?:^import\b[^;'"]*?\bfrom\s*|^import\s*|\bimport\(\s*)['"]([^'"]+\.js)['"]""", re.M
)


def entry_modules(page: str) -> list[str]:
    """The paths of the page's `<script type="module" src>` entries."""
    return re.findall(r'<script type="module" src="(/web/[^"]+)"></script>', page)


def module_graph(entries: list[str]) -> set[str]:
    """Every module the entries reach through their static and dynamic imports,
    read from the package's files (`/web/<name>` paths)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        assert path.startswith("/web/") and path.count("/") == 2, path
        source = (WEB_ROOT / path.removeprefix("/web/")).read_text(encoding="utf-8")
        for target in IMPORT.findall(source):
            todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(path), target)))
    return seen


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
        "/web/main.js",
    }, assets
    for asset in assets:
        status, kind, body = await fetch(server, asset)
        assert status == 200, asset
        assert kind in ("text/css", *JS_TYPES), (asset, kind)
        assert body.strip(), asset
    _, _, vendored = await fetch(server, "/web/socket.io.min.js")
    assert vendored.startswith("/*!\n * Socket.IO v4."), vendored[:80]


async def test_every_module_the_page_imports_is_served_as_javascript(
    server: RunningServer,
) -> None:
    _, _, page = await fetch(server, "/")
    # The CSP allows no inline script: every script is a file.
    assert re.findall(r"<script[^>]*>", page) == [
        '<script src="/web/socket.io.min.js">',
        '<script type="module" src="/web/main.js">',
    ]
    modules = module_graph(entry_modules(page))
    assert {"/web/main.js", "/web/api.js", "/web/call.js", "/web/janus.js", "/web/push.js"} <= (
        modules
    ), modules
    for path in sorted(modules):
        status, kind, body = await fetch(server, path)
        assert status == 200 and kind in JS_TYPES, (path, status, kind)
        assert body.strip(), path


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
    page = (WEB_ROOT / "index.html").read_text(encoding="utf-8")
    for path in module_graph(entry_modules(page)):
        assert (WEB_ROOT / path.removeprefix("/web/")).is_file(), path
    assert "signaling = web/*" in (REPO / "setup.cfg").read_text(encoding="utf-8")
