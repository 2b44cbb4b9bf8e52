"""The static web client (``signaling/web``): the page at ``/``, its assets under ``/web/``.

Plain files, no build step; they ship inside the package (``package_data``). The
client's ES modules sit in the same flat folder; every ``.js`` is served as
``text/javascript`` (docs/web-client.md maps the modules).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

#: Where the client's files live, inside the installed package.
WEB_ROOT = Path(__file__).resolve().parent / "web"

#: Revalidate on every load: a new server version must not meet a stale module.
_NO_CACHE = {"Cache-Control": "no-cache"}
#: The client's scripts and ES modules.
_JAVASCRIPT = "text/javascript; charset=utf-8"

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "index.html", headers=_NO_CACHE)


@routes.get("/web/{name}")
async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    # One flat folder: a name with a separator or a dot-file is never served.
    path = WEB_ROOT / name
    if "/" in name or "\\" in name or name.startswith(".") or not _is_file(path):
        raise web.HTTPNotFound(reason="no such file")
    headers = dict(_NO_CACHE)
    if name.endswith(".js"):
        # Browsers run a module only with a JavaScript type (and nosniff is on):
        # never leave it to the host's MIME table (RFC 9239: text/javascript).
        headers["Content-Type"] = _JAVASCRIPT
    if name == "sw.js":
        # The service worker lives with the assets but serves the whole site
        # (the call page is /#/call/<id>): allowed to take scope "/".
        headers["Service-Worker-Allowed"] = "/"
    return web.FileResponse(path, headers=headers)


def _is_file(path: Path) -> bool:
    # A name over the file system's limit raises ENAMETOOLONG: no such file, not a 503.
    try:
        return path.is_file()
    except OSError:
        return False
