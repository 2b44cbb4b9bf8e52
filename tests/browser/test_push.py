"""The web client's Web Push: it registers its service worker, asks for the
permission only after a click, posts the subscription it gets, and the
service worker shows a notification for a push.

Chromium cannot reach a real push service from here, so ``subscribe()`` itself
cannot succeed: ``PushManager.prototype.subscribe`` is stubbed with a fixed
subscription, and the service worker is handed a push event.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from playwright.async_api import expect as pw_expect

from signaling.keys import STORES
from signaling.push.vapid import VapidKeys
from tests.browser.conftest import ServerFactory, UserFactory, page_url

FIXED = {
    "endpoint": "https://push.example.net/send/fixed-subscription",
    "expirationTime": None,
    "keys": {
        "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1Xbjhaz"
        "Akj7I99e8QcYP7DkM",
        "auth": "tBHItJI5svbpez7KI4CCXg",
    },
}

STUBS = """
(() => {
  const fixed = %s;
  window.__push = { asks: 0, subscribes: [] };
  const ask = Notification.requestPermission.bind(Notification);
  Notification.requestPermission = (...args) => { window.__push.asks += 1; return ask(...args); };
  PushManager.prototype.getSubscription = async () => null;
  PushManager.prototype.subscribe = async function (options) {
    window.__push.subscribes.push({
      userVisibleOnly: options.userVisibleOnly,
      key: Array.from(new Uint8Array(options.applicationServerKey)),
    });
    const unsubscribe = async () => true;
    return { endpoint: fixed.endpoint, options, toJSON: () => fixed, unsubscribe };
  };
})();
"""

#: Run in the service worker: hand it a push and note what it shows. A push
#: event made by a script is not trusted, so its waitUntil would throw: the
#: promise is collected instead.
PUSH_IN_WORKER = """
async (payload) => {
  const shown = [];
  const show = self.registration.showNotification.bind(self.registration);
  self.registration.showNotification = (title, options) => {
    shown.push({ title, body: options.body, tag: options.tag, url: options.data.url });
    return show(title, options);
  };
  const pending = [];
  ExtendableEvent.prototype.waitUntil = function (promise) { pending.push(promise); };
  self.dispatchEvent(new PushEvent('push', { data: JSON.stringify(payload) }));
  await Promise.all(pending);
  return shown;
}
"""


async def test_the_client_subscribes_after_a_click_and_the_worker_shows_pushes(
    web_server: ServerFactory, web_user: UserFactory
) -> None:
    keys = VapidKeys.generate("mailto:ops@giftcall.example")
    server = await web_server(vapid_private_key=keys.private_key, vapid_subject=keys.subject)
    alice = await web_user(server, "alice")
    page, context = alice.page, alice.context
    await context.grant_permissions(["notifications"], origin=page_url(server))
    await context.add_init_script(STUBS % json.dumps(FIXED))
    await page.reload()
    await pw_expect(page.locator("#me")).to_have_text("alice")
    await page.evaluate("navigator.serviceWorker.ready")  # registered on load

    # Nothing is asked before the user asks for it.
    assert await page.evaluate("window.__push") == {"asks": 0, "subscribes": []}
    button = page.locator("#push-enable")
    await button.click()
    await pw_expect(button).to_have_attribute("data-state", "on")

    stubbed: dict[str, Any] = await page.evaluate("window.__push")
    assert stubbed["asks"] == 1
    (subscribed,) = stubbed["subscribes"]
    assert subscribed["userVisibleOnly"] is True
    assert bytes(subscribed["key"]) == _b64url_decode(keys.public_key)
    assert server.app is not None
    (stored,) = await server.app[STORES].push.list_for_user("alice")
    assert (stored.endpoint, stored.p256dh, stored.auth) == (
        FIXED["endpoint"],
        FIXED["keys"]["p256dh"],  # type: ignore[index]
        FIXED["keys"]["auth"],  # type: ignore[index]
    )

    (worker,) = context.service_workers
    assert worker.url.endswith("/web/sw.js")
    payload = {"kind": "call_soon", "call_id": 42, "scheduled_at": "x", "partner_id": "bob"}
    shown = await worker.evaluate(PUSH_IN_WORKER, payload)
    assert shown == [
        {
            "title": "Your call starts in 5 minutes",
            "body": "With bob. Tap to join.",
            "tag": "call-42",
            "url": "/#/call/42",
        }
    ]


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
