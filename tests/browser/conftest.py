"""Fixtures of the browser tests: a real server in process, headless Chromium
from Debian's ``chromium`` package driven by Playwright, and one browser
context per user (separate storage, so two users in one browser).

Chromium is never downloaded: ``.ci/ensure-chromium`` installs Debian's. When
``/usr/bin/chromium`` is missing every test here fails and says so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright
from playwright.async_api import expect as pw_expect

from tests.support import RunningServer, serve_in_process, server_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Keep ICE on this machine: gather loopback too (a sandbox may have no
    # other interface) and never resolve mDNS names (no multicast queries).
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)
#: Playwright's wait for any one expectation, in milliseconds.
STEP_MS = 10_000
#: Where screenshots go: a temporary folder, unless GIFTCALL_SCREENSHOTS names
#: one (``GIFTCALL_SCREENSHOTS=docs/screenshots`` refreshes the docs' pictures),
#: so that a test run does not rewrite tracked files.
SCREENSHOTS = Path(
    os.environ.get("GIFTCALL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "giftcall-screenshots"
)
pw_expect.set_options(timeout=STEP_MS)
VIEWPORT = {"width": 1280, "height": 800}


@dataclass
class WebUser:
    """One user in their own browser context, with the page's errors kept."""

    user_id: str
    base_url: str
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    async def login(self) -> None:
        page = self.page
        await page.goto(self.base_url + "/")
        await page.fill("#login-user", self.user_id)
        await page.click("#login-form button[type=submit]")
        await pw_expect(page.locator("#me")).to_have_text(self.user_id)
        await pw_expect(page.locator("#conn")).to_have_attribute("data-state", "online")

    async def open_call(self, call_id: int) -> None:
        await self.page.evaluate(f"location.hash = '#/call/{call_id}'")
        await pw_expect(self.page.locator("#call-view")).to_be_visible()

    async def expect_call(self, attribute: str, value: str, within_ms: float = STEP_MS) -> None:
        await pw_expect(self.page.locator("#call-view")).to_have_attribute(
            attribute, value, timeout=within_ms
        )

    async def call_data(self) -> dict[str, str]:
        """Every data-* attribute of the call view."""
        return dict(await self.page.eval_on_selector("#call-view", "node => ({...node.dataset})"))


def _record_errors(user: WebUser) -> None:
    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            user.errors.append(f"console: {message.text}")

    def on_page_error(error: Any) -> None:
        user.errors.append(f"uncaught: {error}")

    user.page.on("console", on_console)
    user.page.on("pageerror", on_page_error)


def require_chromium() -> None:
    """Fail (never skip) without Debian's Chromium."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
            "(run .ci/ensure-chromium, or apt-get install -y chromium); "
            "Playwright's own browser downloads are not used here",
            pytrace=False,
        )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


ServerFactory = Callable[..., Awaitable[RunningServer]]

#: A page whose camera and microphone cannot be had (no such device).
NO_MEDIA_DEVICES = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));
"""


class UserFactory(Protocol):
    def __call__(
        self, server: RunningServer, user_id: str, *, camera: bool = True
    ) -> Awaitable[WebUser]: ...


@pytest.fixture
async def web_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """``await web_server(countdown_s=1, limit_s=4)``: a dev-mode server
    (dev login on) with these settings, stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:
        started = 0

        async def start(**overrides: Any) -> RunningServer:
            nonlocal started
            started += 1
            folder = tmp_path / f"server{started}"
            folder.mkdir()
            settings = server_settings(folder, dev=True, **overrides)
            return await stack.enter_async_context(serve_in_process(settings))

        yield start


def page_url(server: RunningServer) -> str:
    """The server's address by the name ``localhost``: a secure context, so
    the page may use camera and microphone."""
    return f"http://localhost:{server.settings.port}"


@pytest.fixture
async def web_user(browser: Browser) -> AsyncIterator[UserFactory]:
    """``await web_user(server, "alice")``: a logged-in page of its own context.
    After the test, no page may have thrown or logged an error."""
    users: list[WebUser] = []

    async def make(server: RunningServer, user_id: str, *, camera: bool = True) -> WebUser:
        context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        context.set_default_timeout(STEP_MS)
        if not camera:
            await context.add_init_script(NO_MEDIA_DEVICES)
        page = await context.new_page()
        user = WebUser(user_id, page_url(server), context, page)
        _record_errors(user)
        users.append(user)
        await user.login()
        return user

    yield make
    errors = {u.user_id: u.errors for u in users if u.errors}
    for user in users:
        await user.context.close()
    assert not errors, errors


async def screenshot(page: Page, name: str) -> Path:
    """Save the page as ``<SCREENSHOTS>/<name>.png`` (for the docs)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (one local mkdir)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path
