/* GiftCall service worker: shows the server's pushes (docs/push.md) and opens
 * the call page when one is clicked. Registered by push.js with scope "/". */
'use strict';

const TITLES = {
  call_soon: 'Your call starts in 5 minutes',
  partner_waiting: 'Your partner is waiting',
};

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (err) {
    data = {};
  }
  const callId = Number(data.call_id);
  const title = TITLES[data.kind] || 'GiftCall';
  const body = data.partner_id ? `With ${data.partner_id}. Tap to join.` : 'Tap to open GiftCall.';
  event.waitUntil(self.registration.showNotification(title, {
    body,
    tag: Number.isInteger(callId) ? `call-${callId}` : 'giftcall',
    renotify: true,
    requireInteraction: true,
    data: { url: Number.isInteger(callId) && callId > 0 ? `/#/call/${callId}` : '/' },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = new URL((event.notification.data && event.notification.data.url) || '/', self.location.origin).href;
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const client of open) {
      if (new URL(client.url).origin === self.location.origin) {
        await client.focus();
        return client.navigate(url);
      }
    }
    return self.clients.openWindow(url);
  })());
});

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
